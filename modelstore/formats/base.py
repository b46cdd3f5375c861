"""What a backend is: one class per format family, declared once, driven by the pipeline.

A backend declares its name, suffixes, how dangerous a naive load of its files is
(``risk``), the extra that installs its framework, how to recognise its files and objects
(with a ``priority`` for objects several backends can save), its typed options, and which
files make up a model (``companions``). The pipeline (:mod:`modelstore.pipeline`) owns format
choice, atomic writes, checksums, sidecars, confinement and the trust gate; a backend only
reads and writes its own bytes. Plugin authors import these names from
:mod:`modelstore.backends`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._info import ScanReport, TensorInfo
from ..errors import MissingDependencyError, UnsupportedModelError
from .carried import ATTR, attach, attached, check_meta, one_pass, pass_cached
from .values import describe_inputs, feature_matrix, is_instance_of, labels_from_scores

if TYPE_CHECKING:
    from ..storage.hashing import PendingDigest

Risk = Literal["safe", "restricted", "pickle"]


@dataclass(frozen=True)
class NoOptions:
    """Options of a backend that takes none: any keyword is refused with this list."""


@dataclass(frozen=True)
class Exported:
    """What a backend's ``export_onnx`` wrote: the exporter, its version, the opset, a
    ``reference(x) -> list of arrays`` giving the original model's outputs in the exported
    graph's output order (for the parity check), and facts to record."""

    exporter: str
    exporter_version: str
    opset: int | None
    reference: Callable[[Any], list[Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadRequest:
    """Everything ``load`` was asked, plus the metadata read from the file (if any)."""

    model: Any = None
    device: str | None = None
    trust: bool | list[str] = False
    strict: bool = True
    meta: dict[str, Any] | None = None
    #: the backend's ``LoadOptions`` instance (typed; unknown keywords never reach a backend)
    options: Any = field(default_factory=NoOptions)
    #: check payload checksums the backend reads itself (shards); False when verify=False
    verify: bool = True
    #: the main file was pinned by sha256=: companions must match digests it records
    pinned: bool = False
    #: ``load(config=)``: constructor arguments for ``model=``, over any recorded config
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class PredictRequest:
    batch_size: int | None = None
    device: str | None = None
    output: str = "raw"
    labels: list[Any] | None = None


_PLAIN_REQUEST = PredictRequest()


@dataclass
class Inspection:
    """What a backend reads from a file's headers; the front door adds the rest."""

    framework: str | None
    tensors: list[TensorInfo] = field(default_factory=list)
    num_params: int | None = None
    meta: dict[str, Any] | None = None  # modelstore metadata embedded in the file
    extra_metadata: dict[str, Any] = field(default_factory=dict)  # foreign metadata
    executes_code: bool = False
    globals: list[str] = field(default_factory=list)
    labels: list[Any] | None = None  # class names found in the file (e.g. classes_)
    size_bytes: int | None = None  # for models of several files: all of them (else the file's)


class Backend:
    """Base class of every backend. Subclasses set the class attributes and override
    the methods they support; the defaults say clearly that an operation is unsupported."""

    name: ClassVar[str] = ""
    framework: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    risk: ClassVar[Risk] = "safe"
    extra: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    #: True: metadata and checksum live inside the file; False: in ``PATH.modelstore.json``.
    embeds_metadata: ClassVar[bool] = False
    #: True: ``save``/``load`` take ``dtype=`` and cast floating-point tensors (torch weights).
    casts: ClassVar[bool] = False
    #: True: loading reads this one file and nothing beside it, under any name, so the
    #: pipeline can hand every step (metadata, checksum, scan, load) the same opened file.
    reads_one_file: ClassVar[bool] = False
    #: For objects several backends can save, the highest priority saves it when neither the
    #: suffix nor ``format=`` decides (built-ins use 0; a plugin above 0 becomes the default).
    priority: ClassVar[int] = 0
    #: Typed options of ``save``/``load`` (frozen dataclasses); unknown keywords are refused
    #: by the pipeline with the valid names, before the backend is called.
    SaveOptions: ClassVar[type] = NoOptions
    LoadOptions: ClassVar[type] = NoOptions
    #: True: ``save`` to this format converts another framework's object (ONNX export); the
    #: pipeline then asks the object's own backend to ``export_onnx`` and this one to finish.
    exports_to: ClassVar[bool] = False

    # -- availability ------------------------------------------------------------------
    def missing(self) -> list[str]:
        """Modules this backend needs that are not installed (imports nothing)."""
        return [m for m in self.requires if not _installed(m)]

    def require(self, path: Path | None = None, what: str = "") -> None:
        missing = self.missing()
        if missing:
            target = f"{path}: " if path else ""
            hint = (
                f'pip install "modelstore-safe[{self.extra}]"'
                if self.extra
                else f"pip install {' '.join(missing)}"
            )
            msg = (
                f"{target}{what or 'this'} needs {', '.join(missing)}, which is not installed; "
                f"run: {hint}"
            )
            raise MissingDependencyError(msg, name=missing[0])

    # -- recognition -------------------------------------------------------------------
    def sniff(self, path: Path, head: bytes) -> bool:
        """Whether the file's first bytes (and cheap structure) look like this format."""
        return False

    def accepts(self, path: Path, head: bytes) -> bool:
        """Whether a file whose suffix names this backend is handled by it (default: sniff).
        Broader than sniff for formats whose loader would read more than their own layout."""
        return self.sniff(path, head)

    def can_save(self, obj: Any) -> bool:
        """Whether this backend can save ``obj``; must not import a framework."""
        return False

    def can_predict(self, obj: Any) -> bool:
        return False

    def save_hint(self, obj: Any) -> str:
        """Why ``obj`` cannot be saved in this format, and what to do instead."""
        return "use a suffix its framework supports, or pass format="

    def object_hint(self, obj: Any) -> str | None:
        """What to save instead of ``obj``, for objects of this framework no backend saves
        (an optimizer), or None."""
        return None

    def pickle_advice(self, obj: Any) -> str:
        """For a ``risk = "pickle"`` backend: what the loaded ``obj`` could be kept as instead
        (the tail of the ``PickleWarning`` a load emits)."""
        return "prefer a format that stores no code (safetensors, ONNX) for files you share"

    # -- operations --------------------------------------------------------------------
    def describe(self, obj: Any) -> dict[str, Any]:
        """Framework facts about ``obj`` to record in metadata (class path, versions)."""
        return {"framework": self.framework}

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | PendingDigest | None:
        """Write ``obj`` to ``tmp``, a fresh temp file beside ``target`` that the pipeline
        fsyncs and renames over ``target`` afterwards (a crash leaves ``target`` whole; never
        write ``target`` itself). ``options`` is this backend's ``SaveOptions``. Embedding
        backends store ``meta`` (and its checksum) in the file and may add entries to
        ``meta`` first (e.g. ``"cast"``). May return the file's sha256 if computed while
        writing, or a :class:`~modelstore.storage.hashing.PendingDigest` still computing it
        (off the save's critical path); a sidecar backend may set ``meta["checksum"]``
        likewise (no re-read)."""
        raise UnsupportedModelError(f"the {self.name} backend cannot save models")

    def write_files(
        self, obj: Any, target: Path, meta: dict[str, Any], options: Any, overwrite: bool
    ) -> Path | None:
        """For models of several files (shards, when the options ask for them): write them
        all atomically and return the main file's path; None (the default) means "one file:
        the pipeline writes it through :meth:`write`"."""
        return None

    # -- files that make up a model ------------------------------------------------------
    def companions(self, path: Path) -> list[str]:
        """Plain names of files beside ``path`` that its load reads (shards, external data),
        data first. The pipeline confines, fetches, copies (pins) and signs exactly these
        plus ``path`` and its sidecar. Names a file does not list are never read."""
        return []

    def optional_companions(self, path: Path) -> list[str]:
        """Plain names of files that belong with ``path`` when they exist (a Hugging Face
        folder's ``config.json``): a fetch of a remote model asks for these too, since
        :meth:`companions` can only see what is already on this disk."""
        return []

    def entry_file(self, names: list[str]) -> str | None:
        """The main file of a folder holding ``names`` (a checkpoint folder), or None."""
        return None

    def alternatives(self, name: str) -> list[str]:
        """Other names a ``save`` to ``name`` may have written the model under (a sharded
        save to ``NAME.safetensors`` writes ``NAME.safetensors.index.json``)."""
        return []

    def single_file(self, path: Path) -> bool:
        """Whether loading ``path`` reads that file alone (see ``reads_one_file``)."""
        return self.reads_one_file

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """Embedded modelstore metadata (including ``checksum``), or None."""
        return None

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        """Check an embedded checksum; raise IntegrityError on mismatch."""

    def intact(self, path: Path) -> dict[str, Any] | None:
        """(sidecar formats) When the sidecar's checksum does not match ``path``: the metadata
        the file carries itself ({} for none) if the file's own checks show it whole (the
        sidecar is stale: another tool rewrote the file), else None (the file is damaged).
        The default cannot tell, so a mismatch stays an IntegrityError."""
        return None

    def scan(self, path: Path) -> ScanReport:
        return ScanReport(str(path), self.name, "safe")

    def load(self, path: Path, request: LoadRequest) -> Any:
        raise UnsupportedModelError(f"the {self.name} backend cannot load models")

    def inspect(self, path: Path) -> Inspection:
        return Inspection(framework=self.framework)

    def inspect_remote(
        self, name: str, size: int, read: Callable[[int, int], bytes]
    ) -> Inspection | None:
        """Describe a remote file of ``size`` bytes from byte ranges (``read(start, end)``)
        alone, or None (the default) to have the pipeline fetch it whole first."""
        return None

    def scan_remote(
        self, name: str, size: int, read: Callable[[int, int], bytes]
    ) -> ScanReport | None:
        """Like :meth:`inspect_remote`, for ``scan``."""
        return None

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        raise UnsupportedModelError(f"the {self.name} backend cannot run models")

    def predict_raw(self, model: Any, inputs: Any) -> Any:
        """``predict`` with the plain request (raw outputs, one batch, the model's device): the
        common call, per request when serving. A backend may run it on a shorter path."""
        return self.predict(model, inputs, _PLAIN_REQUEST)

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Exported:
        """Write ``model`` as ONNX to ``path``; return what was done as :class:`Exported`."""
        raise UnsupportedModelError(f"the {self.name} backend has no ONNX exporter")

    def finish_export(
        self,
        tmp: Path,
        target: Path,
        exported: Exported,
        sample: Any,
        meta: dict[str, Any],
        check: dict[str, Any] | None,
    ) -> list[Path]:
        """(``exports_to`` backends) check and complete an export written to ``tmp``; return
        extra files written beside ``target`` (removed again if the export fails)."""
        raise UnsupportedModelError(f"the {self.name} backend is not an export target")

    def after_commit(self, target: Path) -> None:
        """Called once ``target`` is in place (e.g. remove data files the old one used)."""

    def signature(self, sample_input: Any) -> dict[str, Any] | None:
        return describe_inputs(sample_input)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.suffixes}>"


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = [
    "ATTR",
    "Backend",
    "Exported",
    "Inspection",
    "LoadRequest",
    "NoOptions",
    "PredictRequest",
    "Risk",
    "attach",
    "attached",
    "check_meta",
    "describe_inputs",
    "feature_matrix",
    "is_instance_of",
    "labels_from_scores",
    "one_pass",
    "pass_cached",
]

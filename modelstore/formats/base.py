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

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from .._info import ScanReport, TensorInfo
from ..errors import ArgumentError, FormatError, MissingDependencyError, UnsupportedModelError

Risk = Literal["safe", "restricted", "pickle"]

#: The attribute a loaded (or saved) object carries its modelstore metadata in, so labels and
#: signature travel with the object instead of living in a process-wide table.
ATTR = "__modelstore_meta__"


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


@dataclass
class PredictRequest:
    batch_size: int | None = None
    device: str | None = None
    output: str = "raw"
    labels: list[Any] | None = None


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
    ) -> str | None:
        """Write ``obj`` to ``tmp``, a fresh temp file beside ``target`` that the pipeline
        fsyncs and renames over ``target`` afterwards (a crash leaves ``target`` whole; never
        write ``target`` itself). ``options`` is this backend's ``SaveOptions``. Embedding
        backends store ``meta`` (and its checksum) in the file and may add entries to
        ``meta`` first (e.g. ``"cast"``). May return the file's sha256 if computed while
        writing; a sidecar backend may set ``meta["checksum"]`` likewise (no re-read)."""
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


def is_instance_of(obj: Any, module: str, qualname: str) -> bool:
    """``isinstance(obj, module.qualname)`` without importing ``module``: if it was never
    imported, ``obj`` cannot be an instance of a class it defines."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: Any = mod
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(obj, cls)


def describe_inputs(sample: Any) -> dict[str, Any] | None:
    """An input signature from a sample (anything with ``shape`` and ``dtype``), batch
    dimension recorded as None. Duck-typed so it imports no framework."""
    if sample is None:
        return None
    samples = (
        sample
        if isinstance(sample, (list, tuple)) and sample and hasattr(sample[0], "shape")
        else [sample]
    )
    inputs = []
    for i, s in enumerate(samples):
        shape = getattr(s, "shape", None)
        dtype = getattr(s, "dtype", None)
        if shape is None:
            return None
        dims: list[int | None] = [int(d) for d in shape]
        if dims:
            dims[0] = None
        inputs.append(
            {"name": f"input_{i}", "shape": dims, "dtype": str(dtype).replace("torch.", "")}
        )
    return {"inputs": inputs}


def labels_from_scores(scores: Any, labels: list[Any] | None) -> list[Any]:
    """Arg-max over the last axis, mapped through ``labels`` when there are any."""
    import numpy as np

    idx = np.asarray(scores).argmax(axis=-1)
    flat = idx.reshape(-1).tolist()
    if labels:
        if max(flat, default=0) >= len(labels):
            msg = f"the model predicts class {max(flat)} but only {len(labels)} labels were saved"
            raise UnsupportedModelError(msg)
        return [labels[i] for i in flat]
    return [int(i) for i in flat]


# -- modelstore's metadata: validated as hostile input, carried by the object -----------------

_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "metadata": dict,
    "labels": list,
    "signature": dict,
    "tied": dict,
    "model_class": str,
    "checksum": str,
    "framework": str,
    "framework_version": (str, type(None)),
    "format": str,
    "modelstore": dict,
    "cast": dict,
    "checksum_covers": str,
}


def check_meta(path: Path | str, meta: dict[str, Any] | None, where: str) -> None:
    """FormatError unless every field of ``meta`` (read from ``where``) has its type: it
    comes from the file, so it is as untrusted as the rest of it."""
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: the modelstore metadata in {where} is not a JSON object")
    for key, kind in _META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            msg = f"{path}: the modelstore metadata in {where} has a malformed {key!r} ({type(meta[key]).__name__})"
            raise FormatError(msg)
    sig = meta.get("signature")
    if sig is not None and not isinstance(sig.get("inputs"), list):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'signature'")
    tied = meta.get("tied") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'tied' map")


def attach(obj: Any, meta: dict[str, Any] | None) -> None:
    """Let ``obj`` carry ``meta`` (labels, signature) as :data:`ATTR`; with None, remove
    whatever the object carried (a loaded file may have set it). Objects that take no
    attributes (dicts, tensors) carry nothing."""
    try:
        if meta:
            object.__setattr__(obj, ATTR, meta)
        elif ATTR in getattr(obj, "__dict__", {}):
            object.__delattr__(obj, ATTR)
    except (AttributeError, TypeError):
        pass


def attached(obj: Any) -> dict[str, Any]:
    """The metadata ``obj`` carries (from its own ``__dict__``), or ``{}``."""
    try:
        meta = vars(obj).get(ATTR)
    except TypeError:
        return {}
    return meta if isinstance(meta, dict) else {}


# -- one pipeline pass --------------------------------------------------------------------

_PASS: ContextVar[dict[Any, Any] | None] = ContextVar("modelstore_pass", default=None)


@contextlib.contextmanager
def one_pass() -> Iterator[None]:
    """The steps of one read of one file (metadata, checksum, scan, load or inspect) share
    what they parse (:func:`pass_cached`); the next pass, or a retry, starts afresh."""
    token = _PASS.set({})
    try:
        yield
    finally:
        _PASS.reset(token)


def pass_cached(key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per pass for ``key`` (which must name the file's identity, not only
    its path); outside a pass, every time."""
    cache = _PASS.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def feature_matrix(inputs: Any) -> Any:
    """``inputs`` as a 2-D numeric numpy array (rows x features), or ArgumentError."""
    import numpy as np

    if inputs is None:
        raise ArgumentError("predict needs inputs, got None")
    try:
        x = np.asarray(inputs)
    except ValueError as e:
        raise ArgumentError(f"predict inputs must be rectangular: {e}") from None
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise ArgumentError(
            f"predict inputs must be a 2-D array of numbers (rows x features), got "
            f"{x.dtype} with shape {x.shape}"
        )
    return x

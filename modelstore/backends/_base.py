"""What a backend is: one class per format family, declared once, driven by the front door.

A backend declares its name, suffixes, how dangerous a naive load of its files is
(``risk``), the extra that installs its framework, and how to recognise its files and
objects. The front door (``modelstore._api``) owns format choice, atomic writes, checksums,
sidecars and the trust gate; a backend only reads and writes its own bytes.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from .._info import ScanReport, TensorInfo
from ..errors import MissingDependencyError, UnsupportedModelError

Risk = Literal["safe", "restricted", "pickle"]


@dataclass
class LoadRequest:
    """Everything ``load`` was asked, plus the metadata read from the file (if any)."""

    model: Any = None
    device: str | None = None
    trust: bool | list[str] = False
    strict: bool = True
    meta: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


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
    #: True: loading reads this one file and nothing beside it, under any name, so the front
    #: door can hand every step (metadata, checksum, scan, load) the same opened file.
    reads_one_file: ClassVar[bool] = False

    # -- availability ------------------------------------------------------------------
    def missing(self) -> list[str]:
        """Modules this backend needs that are not installed (imports nothing)."""
        return [m for m in self.requires if not _installed(m)]

    def require(self, path: Path | None = None, what: str = "") -> None:
        missing = self.missing()
        if missing:
            target = f"{path}: " if path else ""
            hint = f'pip install "modelstore[{self.extra}]"' if self.extra else f"pip install {' '.join(missing)}"
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

    # -- operations --------------------------------------------------------------------
    def describe(self, obj: Any) -> dict[str, Any]:
        """Framework facts about ``obj`` to record in metadata (class path, versions)."""
        return {"framework": self.framework}

    def write(self, obj: Any, tmp: Path, meta: dict[str, Any], options: dict[str, Any],
              target: Path) -> str | None:
        """Write ``obj`` to ``tmp`` (a temp file beside ``target``, renamed over it after).
        Embedding backends store ``meta`` and its checksum in the file. May return the
        file's sha256 if it was computed while writing."""
        raise UnsupportedModelError(f"the {self.name} backend cannot save models")

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """Embedded modelstore metadata (including ``checksum``), or None."""
        return None

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        """Check an embedded checksum; raise IntegrityError on mismatch."""

    def scan(self, path: Path) -> ScanReport:
        return ScanReport(str(path), self.name, "safe")

    def load(self, path: Path, request: LoadRequest) -> Any:
        raise UnsupportedModelError(f"the {self.name} backend cannot load models")

    def inspect(self, path: Path) -> Inspection:
        return Inspection(framework=self.framework)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        raise UnsupportedModelError(f"the {self.name} backend cannot run models")

    def export_onnx(self, model: Any, path: Path, sample_input: Any, opset: int | None,
                    dynamic_batch: bool) -> Any:
        """Write ``model`` as ONNX to ``path``; return a ``_onnx_export.Exported``."""
        raise UnsupportedModelError(f"the {self.name} backend has no ONNX exporter")

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
    samples = sample if isinstance(sample, (list, tuple)) and sample and hasattr(sample[0], "shape") else [sample]
    inputs = []
    for i, s in enumerate(samples):
        shape = getattr(s, "shape", None)
        dtype = getattr(s, "dtype", None)
        if shape is None:
            return None
        dims: list[int | None] = [int(d) for d in shape]
        if dims:
            dims[0] = None
        inputs.append({"name": f"input_{i}", "shape": dims, "dtype": str(dtype).replace("torch.", "")})
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

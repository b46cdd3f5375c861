"""Plain data returned by ``inspect``, ``save`` and ``scan``: no framework objects inside."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def printable(text: object) -> str:
    """``text`` with every character that is not printable (newlines, ESC and other control
    characters, bidirectional overrides, undecodable bytes) shown as its escape: names and
    findings in human reports come from the file, and must not forge lines or drive the
    terminal."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in s)


Verdict = Literal["safe", "unsafe", "unknown"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor: its name, shape, dtype (e.g. ``"float32"``) and size in bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class _Computed:
    """A dataclass field holding a str, or a zero-argument callable that computes it: read
    once, on first access (``ms.save`` hands over the sha256 its background thread is still
    computing, so the save returns as soon as the file is durable)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return ""  # the field's default
        value = obj.__dict__[self.slot]
        if not isinstance(value, str):
            value = value()
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        # dataclass __init__ sets fields with object.__setattr__, which lands here; a user's
        # assignment is refused by the frozen dataclass before it gets here
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class ModelInfo:
    """What modelstore knows about a model file, read without running code from it.

    ``executes_code`` says whether a naive load (``pickle.load``, ``torch.load`` with
    ``weights_only=False``) would call anything beyond modelstore's data allow-list.
    ``globals`` lists every ``module.Name`` a pickle stream references. ``files`` lists
    every file of a folder given as the model (a ``save_pretrained`` folder).
    """

    path: str
    format: str
    framework: str | None
    size_bytes: int
    #: the whole file's sha256 (computed on first read when a save has just written the file)
    sha256: str = _Computed()  # type: ignore[assignment]
    tensors: list[TensorInfo] = field(default_factory=list)
    num_params: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: list[Any] | None = None
    signature: dict[str, Any] | None = None
    executes_code: bool = False
    globals: list[str] = field(default_factory=list)
    #: for a model given as a folder: every file in it (name -> bytes); ``size_bytes`` is their total
    files: dict[str, int] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:  # pickled with the digest, never a thread
        state = dict(self.__dict__)
        state["_sha256"] = self.sha256
        return state

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


@dataclass(frozen=True)
class Finding:
    """One reason behind a scan verdict: the global or entry, how bad, and why."""

    subject: str
    severity: Severity
    reason: str


@dataclass(frozen=True)
class ScanReport:
    """A security verdict for one file: ``"safe"``, ``"unsafe"`` or ``"unknown"``."""

    path: str
    format: str
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)

    @property
    def untrusted(self) -> list[str]:
        """The globals (``module.Name``) that made the verdict unsafe."""
        return [f.subject for f in self.findings if f.severity == "critical"]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

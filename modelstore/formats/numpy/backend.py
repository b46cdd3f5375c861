"""NumPy arrays: ``.npy`` (one array) and ``.npz`` (a zip of named arrays).

``ms.load("x.npy")`` returns the array, ``ms.load("x.npz")`` a dict of arrays, both read with
``allow_pickle=False``: plain arrays never touch pickle. An object array (``dtype=object``)
is stored as a pickle; it is refused by default (:data:`OBJECT_ARRAYS` names it in
``trust=[...]``), and even when trusted that way its pickle is scanned against modelstore's
allow-list and unpickled by the restricted unpickler, never by ``pickle.load``. Only
``trust=True`` hands it to numpy's own loader.

``ms.save(array, "x.npy")`` and ``ms.save({"a": array, ...}, "x.npz")`` write with numpy,
pickle disabled; metadata goes in the sidecar.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from ..._info import Finding, ScanReport, TensorInfo
from ...errors import ArgumentError, FormatError, IntegrityError, UnsupportedModelError
from ...security import STRUCTURE, classify, unreadable
from ..base import Backend, Inspection, LoadRequest, is_instance_of
from .arrays import ArrayFileError, ArrayHeader, headers, pickle_bytes

#: The trust word that lets object arrays be unpickled (through the allow-list).
OBJECT_ARRAYS = "numpy:object-arrays"
OBJECT_REASON = (
    "an object array: numpy stores it as a pickle, and loading it unpickles; pass "
    f"trust=[{OBJECT_ARRAYS!r}] to unpickle it through modelstore's allow-list"
)


class NumpyBackend(Backend):
    """``.npy``/``.npz`` files of plain arrays; no pickle unless the caller trusts it."""

    name = "numpy"
    framework = "numpy"
    suffixes = (".npy", ".npz")
    risk = "restricted"  # plain arrays run nothing; object arrays hold a pickle: scanned
    reads_one_file = True  # checked and loaded through one descriptor (red team: a swap between
    # the archive check and the load inflated a bomb)
    extra = "numpy"
    requires = ("numpy",)

    def sniff(self, path: Path, head: bytes) -> bool:
        if head.startswith(b"\x93NUMPY"):
            return True
        # a zip whose first member is an .npy (np.savez writes "NAME.npy" first)
        if head.startswith(b"PK\x03\x04") and len(head) >= 30:
            n = int.from_bytes(head[26:28], "little")
            return head[30 : 30 + n].endswith(b".npy") if 30 + n <= len(head) else False
        return False

    def accepts(self, path: Path, head: bytes) -> bool:
        if path.name.lower().endswith(".npz"):
            return head.startswith(b"PK\x03\x04")
        return head.startswith(b"\x93NUMPY")

    def can_save(self, obj: Any) -> bool:
        if is_instance_of(obj, "numpy", "ndarray"):
            return not obj.dtype.hasobject
        return (
            isinstance(obj, dict)
            and bool(obj)
            and all(
                isinstance(k, str)
                and is_instance_of(v, "numpy", "ndarray")
                and not v.dtype.hasobject
                for k, v in obj.items()
            )
        )

    def save_hint(self, obj: Any) -> str:
        return (
            "a .npy holds one numeric numpy array and a .npz a dict of them (names -> arrays); "
            "object arrays are not written (they would need pickle)"
        )

    def describe(self, obj: Any) -> dict[str, Any]:
        import numpy as np

        return {"framework": "numpy", "framework_version": np.__version__}

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        import numpy as np

        npz = target.name.lower().endswith(".npz")
        if npz != isinstance(obj, dict):
            raise UnsupportedModelError(f"{target}: {self.save_hint(obj)}")
        with open(tmp, "wb") as f:
            if npz:
                np.savez(f, **obj)
            else:
                np.save(f, obj, allow_pickle=False)
        return None

    # -- reading --------------------------------------------------------------------------
    def _headers(self, path: Path) -> list[ArrayHeader]:
        try:
            return headers(path)
        except ArrayFileError as e:
            if e.kind == "damaged":
                raise IntegrityError(f"{path}: {e}; the file is damaged or truncated") from None
            raise FormatError(f"{path}: {e}") from None

    def scan(self, path: Path) -> ScanReport:
        try:
            found = headers(path)
        except ArrayFileError as e:
            if e.kind == "suspicious":
                return ScanReport(
                    str(path), self.name, "unsafe", [Finding(STRUCTURE, "critical", str(e))]
                )
            return unreadable(path, self.name, e.kind, str(e), subject="archive")
        objects = [h for h in found if h.is_object]
        if not objects:
            return ScanReport(str(path), self.name, "safe")
        from ...security.pickle_scan import analyse
        from ...security.policy import GENERAL

        streams = [
            (h.name, analyse(pickle_bytes(path, h), lookup=GENERAL.entry, where=f"{path}:{h.name}"))
            for h in objects
        ]
        report = classify(path, self.name, streams, GENERAL.entry)
        findings = [Finding(OBJECT_ARRAYS, "critical", OBJECT_REASON)] + list(report.findings)
        return ScanReport(str(path), self.name, "unsafe", findings, report.globals)

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.model is not None:
            raise ArgumentError(f"{path}: model= is for weights files; a .npy/.npz holds arrays")
        found = self._headers(path)
        if found and not found[0].in_zip:
            return self._array(path, found[0], request.trust)
        return {_key(h.name): self._array(path, h, request.trust) for h in found}

    def _array(self, path: Path, header: ArrayHeader, trust: Any) -> Any:
        """One array: plain ones with pickle off; object arrays through the restricted
        unpickler (trusted by name), or numpy's own pickle only with trust=True."""
        import numpy as np

        if header.is_object and trust is not True:
            return _restricted(path, header, trust)
        try:
            if not header.in_zip:
                return np.load(path, allow_pickle=trust is True)
            with zipfile.ZipFile(path) as zf, zf.open(header.name) as f:
                return np.lib.format.read_array(f, allow_pickle=trust is True)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
            raise IntegrityError(
                f"{path}: numpy could not read {header.name} ({str(e)[:200]})"
            ) from None

    def inspect(self, path: Path) -> Inspection:
        found = self._headers(path)
        tensors = [
            TensorInfo(
                _key(h.name), h.shape, str(h.dtype), h.nbytes if not h.is_object else h.stored
            )
            for h in found
        ]
        objects = [t.name for t, h in zip(tensors, found) if h.is_object]
        extra: dict[str, Any] = {"arrays": len(found)}
        if objects:
            extra["object_arrays"] = objects
        return Inspection(
            framework="numpy",
            tensors=tensors,
            num_params=sum(t.numel for t in tensors),
            extra_metadata=extra,
            executes_code=bool(objects),
            globals=[OBJECT_ARRAYS] if objects else [],
        )


def _key(member: str) -> str:
    return member[:-4] if member.endswith(".npy") else member


def _restricted(path: Path, header: ArrayHeader, trust: Any) -> Any:
    """An object array the caller trusted by name: its pickle through the restricted
    unpickler under modelstore's allow-list (plus the caller's other trust names)."""
    import numpy as np

    from ...security.pickle_load import restricted_load
    from ...security.pickle_stream import PickleStreamError, Source

    data = pickle_bytes(path, header)
    trusted = [t for t in (trust or []) if t != OBJECT_ARRAYS]
    try:
        value = restricted_load(
            Source(io.BytesIO(data), len(data)), f"{path}:{header.name}", trusted=trusted
        )
    except PickleStreamError as e:
        raise IntegrityError(
            f"{path}: the object array {header.name} cannot be read ({e})"
        ) from None
    if not isinstance(value, np.ndarray) or value.shape != header.shape:
        raise FormatError(
            f"{path}: {header.name} does not hold the {header.shape} array its header declares"
        )
    return value


__all__ = ["NumpyBackend", "OBJECT_ARRAYS"]

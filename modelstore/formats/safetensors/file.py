"""The safetensors file itself: header parsing and validation, memory-mapped reads (writes are in
:mod:`.write`).

safetensors: the default format for PyTorch weights. Safe by construction (a JSON header
and raw bytes, nothing to execute), memory-mapped on load.

modelstore writes the file itself (the layout is 8 bytes of header length, a JSON header,
the tensor bytes) so it can embed its metadata and a checksum of header and payload in the
header's ``__metadata__`` map. Files from the ``safetensors`` package load the same way, and
``safetensors.torch.load_file`` reads modelstore's files.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..._gc import MAX_BYTES as PAUSE_BYTES
from ..._gc import paused
from ..._info import Finding, ScanReport, TensorInfo
from ...errors import FormatError, IntegrityError
from ...security import unreadable
from ...security.jsonsafe import loads
from ...storage.hashing import format_checksum, new_checksum, update_from_file
from ..base import Inspection, pass_cached

#: safetensors' own limit on the header, applied before reading it.
MAX_HEADER = 100 << 20
META_KEY = "modelstore"
CHECKSUM_KEY = "modelstore.checksum"

DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
    "C64": ("complex64", 8),
}
# Not read: F4 / F6_* (sub-byte, packed) — a file using them is refused as malformed, by name.


class Header:
    """A parsed, validated safetensors header."""

    def __init__(self, path: Path, raw: dict[str, Any], data_start: int, file_size: int) -> None:
        self.path = path
        self.raw = raw
        self.data_start = data_start
        self.file_size = file_size
        self.metadata: dict[str, str] = raw.get("__metadata__") or {}
        self.entries = {k: v for k, v in raw.items() if k != "__metadata__"}

    def modelstore_meta(self) -> dict[str, Any] | None:
        text = self.metadata.get(META_KEY)
        if text is None:
            return None
        meta = loads(text, where=f"{self.path}: the modelstore metadata in the header")
        if not isinstance(meta, dict):
            raise FormatError(
                f"{self.path}: the modelstore metadata in the header is not a JSON object"
            )
        if CHECKSUM_KEY in self.metadata:
            meta["checksum"] = self.metadata[CHECKSUM_KEY]
        return meta

    def canonical_without_checksum(self) -> bytes:
        raw = dict(self.raw)
        if "__metadata__" in raw:
            raw["__metadata__"] = {
                k: v for k, v in raw["__metadata__"].items() if k != CHECKSUM_KEY
            }
        return canonical(raw)

    def tensors(self) -> list[TensorInfo]:
        # a record per entry, the collector paused for a header of up to 4 MiB (see ..._gc)
        return paused(self.data_start <= PAUSE_BYTES, self._tensors)

    def _tensors(self) -> list[TensorInfo]:
        out = []
        for name, e in self.entries.items():
            dtype = DTYPES[e["dtype"]][0]
            b, end = e["data_offsets"]
            out.append(TensorInfo(name, tuple(e["shape"]), dtype, end - b))
        return out


def checksum_of(h: Header, file: BinaryIO | None = None) -> str:
    """The checksum modelstore records in a header: the canonical header without it, then
    the tensor bytes (read from ``file`` when given: a confined, already opened shard)."""
    hasher = new_checksum()
    hasher.update(h.canonical_without_checksum())
    update_from_file(hasher, h.path, h.data_start, file=file)
    return format_checksum(hasher)


def canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def read_header(path: Path, file: BinaryIO | None = None) -> Header:
    """Parse and validate the header; raises FormatError / IntegrityError on bad files.
    ``file``: an already opened (confined) file to read instead of opening ``path``.
    Within one pipeline pass (``formats.base.one_pass``) a file is parsed once: the key is
    the path and the file's identity (device, inode, size, modification time)."""
    with contextlib.ExitStack() as stack:
        f = file if file is not None else stack.enter_context(open(path, "rb"))
        st = os.fstat(f.fileno())
        key = (
            "safetensors-header",
            os.fspath(path),
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        )
        header: Header = pass_cached(key, lambda: _parse(path, f, st.st_size))
        return header


def _parse(path: Path, f: BinaryIO, size: int) -> Header:
    def read(start: int, end: int) -> bytes:
        f.seek(start)
        return f.read(end - start)

    return header_from_reader(path, size, read)


def header_from_reader(path: Any, size: int, read: Callable[[int, int], bytes]) -> Header:
    """Parse the header with two reads, ``read(start, end)``: a local file or range
    requests to object storage (``path`` only names the file in messages)."""
    head = read(0, 8) if size >= 8 else b""
    if len(head) < 8:
        raise FormatError(f"{path}: {size} bytes is too short for a safetensors file")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        raise FormatError(f"{path}: not a safetensors file: it declares a {n}-byte header")
    if n > size - 8:
        if read(8, 9) == b"{":
            msg = f"{path}: truncated: the header declares {n} bytes but the file has only {size - 8} after the length"
            raise IntegrityError(msg)
        raise FormatError(
            f"{path}: not a safetensors file (header length {n} exceeds the file size {size})"
        )
    blob = read(8, 8 + n)
    # a dict per tensor, the collector paused for a header of up to 4 MiB (see ..._gc)
    return paused(n <= PAUSE_BYTES, _decode, path, blob, 8 + n, size)


def _decode(path: Any, blob: bytes, data_start: int, size: int) -> Header:
    # bounded: no RecursionError on deep nesting, no inf/NaN, no huge numbers (also remotely);
    # _validate checks the type of every field, so it refuses nesting without a depth walk
    raw = loads(blob, where=f"{path}: the safetensors header", max_bytes=MAX_HEADER, max_depth=None)
    if not isinstance(raw, dict):
        raise FormatError(
            f"{path}: the safetensors header is not a JSON object; the file is corrupt"
        )
    header = Header(path, raw, data_start, size)
    _validate(header)
    return header


#: The most dimensions a tensor may have (numpy's, torch's own limit is below).
MAX_DIMS = 64


def _validate(h: Header) -> None:
    path = h.path
    meta = h.raw.get("__metadata__")
    if meta is not None and (
        not isinstance(meta, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    ):
        raise FormatError(f"{path}: the header's __metadata__ must map strings to strings")
    spans = []
    for name, e in h.entries.items():
        bad = f"{path}: tensor {name!r} has a malformed header entry"
        if not isinstance(e, dict) or e.get("dtype") not in DTYPES:
            raise FormatError(f"{bad} (dtype {e.get('dtype') if isinstance(e, dict) else e!r})")
        if len(e) > 3 and any(
            isinstance(v, (dict, list)) for k, v in e.items() if k not in ("shape", "data_offsets")
        ):
            raise FormatError(f"{bad} (an unexpected nested field)")
        shape, offs = e.get("shape"), e.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**62 for d in shape)):
            raise FormatError(f"{bad} (shape {_short(shape)})")
        if len(shape) > MAX_DIMS:  # numpy's limit (red team: stats raised numpy's ValueError)
            raise FormatError(f"{bad} ({len(shape):,} dimensions; at most {MAX_DIMS})")
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(type(o) is int and 0 <= o < 2**62 for o in offs)
        ):
            raise FormatError(f"{bad} (data_offsets {_short(offs)})")
        numel = 1
        for d in shape:
            numel *= d
            if numel >= 2**62:  # stop here: 200,000 factors near 2**61 took minutes (red team)
                break
        if numel >= 2**62 or offs[1] - offs[0] != numel * DTYPES[e["dtype"]][1]:
            what = f"shape {_short(shape)} of {e['dtype']} does not fill offsets {offs}"
            raise FormatError(f"{bad}: {what}")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for b, end, name in spans:
        if b != pos:
            raise FormatError(
                f"{path}: tensor {name!r} starts at {b}, expected {pos}: the data region has gaps or overlaps"
            )
        pos = end
    available = h.file_size - h.data_start
    if pos > available:
        msg = f"{path}: truncated: the header describes {pos} bytes of tensors but the file holds {available}"
        raise IntegrityError(msg)
    if pos < available:
        raise FormatError(f"{path}: {available - pos} unexpected bytes after the last tensor")


def _short(value: Any) -> str:
    """A field the file wrote, for a message: at most 80 characters of it."""
    text = repr(value[:20]) if isinstance(value, list) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def scan_header(path: Any, read: Callable[[], Header]) -> ScanReport:
    """The verdict for a safetensors file: safe if its header parses (``read`` parses it,
    from a local file or with range requests)."""
    try:
        read()
    except (FormatError, IntegrityError) as e:
        kind = "damaged" if isinstance(e, IntegrityError) else "format"
        return unreadable(path, "safetensors", kind, str(e), subject="header")
    return ScanReport(
        str(path),
        "safetensors",
        "safe",
        [Finding("header", "info", "tensors and string metadata only; nothing to execute")],
    )


def inspection_of(h: Header) -> Inspection:
    """What ``inspect`` reports from a parsed header."""
    meta = h.modelstore_meta()
    framework = (meta or {}).get("framework") or {
        "pt": "torch",
        "tf": "tensorflow",
        "np": "numpy",
        "flax": "flax",
    }.get(h.metadata.get("format", ""))
    tensors = h.tensors()
    # "format" (pt/tf/np) is reported as the framework; the rest is the writer's metadata
    extra = {k: v for k, v in h.metadata.items() if k not in (META_KEY, CHECKSUM_KEY, "format")}
    return Inspection(
        framework=framework,
        tensors=tensors,
        num_params=sum(t.numel for t in tensors),
        meta=meta,
        extra_metadata=extra,
    )


def load_tensors(path: Path, file: BinaryIO | None = None) -> dict[str, Any]:
    """Memory-map the file (or the already opened, confined ``file``) and return
    zero-copy tensors over it."""
    import torch

    h = read_header(path, file)
    out: dict[str, Any] = {}
    if not h.entries:
        return out
    if file is not None:
        mm = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    else:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    # a tensor per entry, the collector paused for a header of up to 4 MiB (see ..._gc)
    return paused(h.data_start <= PAUSE_BYTES, _views, torch, h, mm, out)


def _views(torch: Any, h: Header, mm: mmap.mmap, out: dict[str, Any]) -> dict[str, Any]:
    for name, e in h.entries.items():
        dtype = _torch_dtype(DTYPES[e["dtype"]][0])
        b, end = e["data_offsets"]
        shape = e["shape"]
        if end == b:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        itemsize = DTYPES[e["dtype"]][1]
        t = torch.frombuffer(mm, dtype=dtype, count=(end - b) // itemsize, offset=h.data_start + b)
        out[name] = t.reshape(shape)
    return out

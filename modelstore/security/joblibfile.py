"""Read pickle and joblib files statically: compression, raw numpy buffers, nested pickles.

``joblib.dump`` writes a pickle in which each numpy array is a ``NumpyArrayWrapper`` whose
raw bytes follow its BUILD opcode in the stream (object arrays: a whole nested pickle).
Plain opcode walkers stop there; this reader skips (or, for small arrays, keeps) the bytes
and carries on, so a normal scikit-learn model scans cleanly. The whole stream may be
zlib/gzip/bz2/lzma/xz-compressed. Nothing is imported or unpickled.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .pickle_scan import Call, PickleReport, analyse, mapping_items

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
#: Arrays up to this size are kept (to show ``classes_`` in inspect); larger ones are skipped.
KEEP_BYTES = 64 << 10
#: A compressed stream that inflates beyond this is reported as unknown (a decompression bomb).
MAX_INFLATED = 64 << 30

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"ZF", "zlib-legacy"),
]


class PickleFileError(Exception):
    """The file cannot be read as a (possibly compressed) pickle."""


def compression_of(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


def looks_like_pickle(head: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO; joblib files may be compressed."""
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or compression_of(head) is not None


class _Buffered:
    """A read-only file interface over a source of chunks, cheap for many tiny reads
    (the opcode walker reads a byte at a time): an offset into the current chunk, no copies
    of the remainder."""

    def __init__(self) -> None:
        self._buf = b""
        self._off = 0
        self._pos = 0

    def _more(self) -> bytes:
        raise NotImplementedError

    def _chunk(self) -> bytes:
        data = self._more()
        self._inflated = getattr(self, "_inflated", 0) + len(data)
        if self._inflated > MAX_INFLATED:
            raise PickleFileError(f"decompresses to more than {MAX_INFLATED} bytes")
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            chunk = self.read(min(n, 16 << 20))
            if not chunk:
                raise PickleFileError("the stream ends inside an array's data")
            n -= len(chunk)

    def read(self, n: int = -1) -> bytes:
        if 0 <= n <= len(self._buf) - self._off:
            out = self._buf[self._off : self._off + n]
            self._off += n
            self._pos += n
            return out
        parts = [self._buf[self._off :]]
        have = len(parts[0])
        self._buf, self._off = b"", 0
        while n < 0 or have < n:
            chunk = self._chunk()
            if not chunk:
                break
            if n >= 0 and have + len(chunk) > n:
                take = n - have
                parts.append(chunk[:take])
                self._buf, self._off = chunk, take
                have = n
                break
            parts.append(chunk)
            have += len(chunk)
        self._pos += have
        return b"".join(parts)

    def readline(self) -> bytes:
        parts = []
        while True:
            i = self._buf.find(b"\n", self._off)
            if i >= 0:
                parts.append(self.read(i + 1 - self._off))
                return b"".join(parts)
            rest = self.read(len(self._buf) - self._off)
            if rest:
                parts.append(rest)
            chunk = self._chunk()
            if not chunk:
                return b"".join(parts)
            self._buf, self._off = chunk, 0

    def tell(self) -> int:
        return self._pos


class _ZlibReader(_Buffered):
    """joblib's zlib files are one raw zlib stream."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self._f = f
        self._d = zlib.decompressobj()
        self._done = False

    def _more(self) -> bytes:
        while not self._done:
            chunk = self._f.read(1 << 20)
            if not chunk:
                self._done = True
                return self._d.flush()
            out = self._d.decompress(chunk)
            if out:
                return out
        return b""


class _FileReader(_Buffered):
    """Any binary file (plain, or a gzip/bz2/lzma decompressor) read in 1 MiB chunks."""

    def __init__(self, f: Any) -> None:
        super().__init__()
        self._f = f

    def _more(self) -> bytes:
        data: bytes = self._f.read(1 << 20)
        return data


@dataclass
class ScannedPickle:
    report: PickleReport
    compression: str | None
    arrays: int


def scan_file(path: Path) -> ScannedPickle:
    """Analyse a pickle / joblib file; raises PickleFileError for unreadable compression."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0)
        comp = compression_of(head)
        if comp in ("lz4", "zlib-legacy"):
            raise PickleFileError(f"{comp} compression is not supported by the scanner")
        stream: Any = f  # uncompressed: the file itself (C-level reads, seek to skip arrays)
        if comp == "gzip":
            stream = _FileReader(gzip.GzipFile(fileobj=f))
        elif comp == "bz2":
            stream = _FileReader(bz2.BZ2File(f))
        elif comp in ("xz", "lzma"):
            stream = _FileReader(lzma.LZMAFile(f))
        elif comp == "zlib":
            stream = _ZlibReader(f)
        counter = [0]

        def hook(target: Any, s: BinaryIO, report: PickleReport) -> None:
            if isinstance(target, Call) and target.func_name == WRAPPER:
                counter[0] += 1
                _read_wrapped_array(target, s, report, hook)

        try:
            report = analyse(stream, on_build=hook)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, PickleFileError) as e:
            report = PickleReport(error=f"cannot decompress or read the stream: {e}")
    return ScannedPickle(report, comp, counter[0])


# -- numpy arrays inside joblib files -----------------------------------------------------


_DTYPE = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)$")


def dtype_info(dtype: Any) -> tuple[str, int] | None:
    """(numpy dtype string such as '<f8', itemsize) from a symbolic ``numpy.dtype(...)``."""
    if not isinstance(dtype, Call) or dtype.func_name not in ("numpy.dtype", "numpy.core.multiarray.dtype"):
        return None
    args = dtype.args if isinstance(dtype.args, tuple) else ()
    if not args or not isinstance(args[0], str):
        return None
    m = _DTYPE.match(args[0])
    if not m:
        return None
    kind, digits = m.group(1), m.group(2)
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    order = state[1] if len(state) > 1 and isinstance(state[1], str) else "|"
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    if kind in ("U", "S", "V") and elsize > 0:
        size = elsize
    elif digits:
        size = int(digits) * (4 if kind == "U" else 1)
    else:
        return None
    if kind == "V" and _has_object_field(state):
        return f"|O{size}", size  # joblib pickles arrays with object fields inline
    return f"{order}{kind}{size if kind != 'U' else size // 4}", size


def _has_object_field(state: tuple[Any, ...], depth: int = 0) -> bool:
    """Whether a structured dtype's fields (state[4]: name -> (dtype, offset)) hold objects."""
    fields = mapping_items(state[4]) if len(state) > 4 else None
    if not fields or depth > 8:
        return False
    for _, spec in fields:
        sub = spec[0] if isinstance(spec, tuple) and spec else None
        if not isinstance(sub, Call):
            return True  # cannot tell: treat as objects, which is the stricter reading
        args = sub.args if isinstance(sub.args, tuple) else ()
        if args and isinstance(args[0], str) and args[0].lstrip("<>|=").startswith("O"):
            return True
        if isinstance(sub.state, tuple) and _has_object_field(sub.state, depth + 1):
            return True
    return False


def wrapper_fields(target: Call) -> tuple[tuple[int, ...], str, int, bool] | None:
    """(shape, dtype string, itemsize, has alignment padding) of a NumpyArrayWrapper."""
    state = dict((k, v) for k, v in mapping_items(target.state) or [] if isinstance(k, str))
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    info = dtype_info(state.get("dtype"))
    if info is None:
        return None
    padded = state.get("numpy_array_alignment_bytes") is not None and "numpy_array_alignment_bytes" in state
    return shape, info[0], info[1], padded


def _read_wrapped_array(target: Call, stream: BinaryIO, report: PickleReport, hook: Any) -> None:
    fields = wrapper_fields(target)
    if fields is None:
        raise PickleFileError("a NumpyArrayWrapper whose shape or dtype cannot be read")
    shape, dtype, itemsize, padded = fields
    count = 1
    for d in shape:
        count *= d
    if dtype.lstrip("<>|=").startswith("O"):
        # object arrays are a whole pickle of their own, inline
        inner = analyse(stream, on_build=hook, depth=1)
        for g in inner.globals:
            report.add(g)
        if inner.error:
            raise PickleFileError(f"object array pickle: {inner.error}")
        target.payload = inner.result
        return
    if padded:
        pad = stream.read(1)
        if len(pad) != 1:
            raise PickleFileError("the stream ends before an array's padding")
        _skip(stream, pad[0])
    nbytes = count * itemsize
    if nbytes <= KEEP_BYTES:
        data = stream.read(nbytes)
        if len(data) != nbytes:
            raise PickleFileError("the stream ends inside an array's data")
        target.payload = data
    else:
        _skip(stream, nbytes)


def _skip(stream: BinaryIO, n: int) -> None:
    if n <= 0:
        return
    if isinstance(stream, _Buffered):
        stream.skip(n)
        return
    pos = stream.tell()
    end = os.fstat(stream.fileno()).st_size
    if pos + n > end:
        raise PickleFileError(f"an array claims {n} bytes but only {end - pos} remain (truncated?)")
    stream.seek(pos + n)


def array_value(target: Any, limit: int = 1000) -> list[Any] | None:
    """The values of a small wrapped array (numbers or strings), decoded without numpy."""
    if not isinstance(target, Call) or target.func_name != WRAPPER or target.payload is None:
        return None
    data = target.payload
    fields = wrapper_fields(target)
    if fields is None:
        return None
    shape, dtype, itemsize, _ = fields
    if len(shape) != 1 or shape[0] > limit:
        return None
    if not isinstance(data, (bytes, bytearray)):
        inner = data  # object array: the nested pickle's symbolic result
        return _object_array_values(inner)
    kind = dtype.lstrip("<>|=")[0]
    big = dtype.startswith(">")
    import struct

    codes = {("i", 8): "q", ("i", 4): "i", ("i", 2): "h", ("i", 1): "b", ("u", 8): "Q", ("u", 4): "I",
             ("u", 2): "H", ("u", 1): "B", ("f", 8): "d", ("f", 4): "f", ("b", 1): "?"}
    if kind == "U":
        width = itemsize // 4
        text = data.decode("utf-32-be" if big else "utf-32-le", errors="replace")
        return [text[i * width : (i + 1) * width].rstrip("\x00") for i in range(shape[0])]
    code = codes.get((kind, itemsize))
    if code is None:
        return None
    return list(struct.unpack(f"{'>' if big else '<'}{shape[0]}{code}", data))


def _object_array_values(result: Any) -> list[Any] | None:
    # numpy.core.multiarray._reconstruct(...) + BUILD state (version, shape, dtype, fortran, list)
    if isinstance(result, Call) and isinstance(result.state, tuple) and len(result.state) == 5:
        values = result.state[4]
        if isinstance(values, list) and all(isinstance(v, (str, int, float, bool)) for v in values):
            return values
    return None


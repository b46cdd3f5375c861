"""Where a pickle stream's bytes come from: a file, plain or compressed, read within bounds.

Every read is bounded by the bytes really present (a 20-byte file cannot make a reader
allocate 3 GiB for a length field that claims it), and compressed streams inflate within a
ratio and an absolute cap (:class:`Limits`), as joblib would decompress them. Used by
:mod:`.pickle_stream`'s reader, which the scanner and the loaders share.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


class PickleStreamError(Exception):
    """The stream is malformed, truncated or breaks a reading rule (never a refusal of a
    global: that is an UnsafeModelError). ``kind``: "damaged" or "suspicious"."""

    def __init__(self, message: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.kind = kind


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else default


@dataclass(frozen=True)
class Limits:
    """Bounds on what reading one file may cost. Each can be raised by an environment
    variable (named in the error that reports it): the file cannot change them."""

    #: a compressed stream may inflate to this many times its compressed size ...
    inflate_ratio: int = 2000
    #: ... but always to at least this many bytes (red team: 256 MiB let a 235-byte bz2 file
    #: of one-byte opcodes keep scan and load busy for 100 s and 2 GiB; the walk holds a
    #: reference per opcode) ...
    inflate_floor: int = 16 << 20
    #: ... and never beyond this many.
    inflate_cap: int = 64 << 30
    #: The opcodes of a compressed stream (not joblib's raw array bytes) may inflate to this
    #: many times the file's size, or to the floor below if more (red team: a 633-byte bz2
    #: file of two-byte opcodes each making a set held 1.9 GiB and took load 30 s; array
    #: data, read apart, is what compresses well in a real model).
    structure_ratio: int = 64
    structure_floor: int = 1 << 20

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            inflate_ratio=_env_int("MODELSTORE_MAX_INFLATE_RATIO", cls.inflate_ratio),
            inflate_floor=_env_int("MODELSTORE_MIN_INFLATE_BYTES", cls.inflate_floor),
            inflate_cap=_env_int("MODELSTORE_MAX_INFLATE_BYTES", cls.inflate_cap),
            structure_ratio=_env_int("MODELSTORE_MAX_PICKLE_RATIO", cls.structure_ratio),
        )


# -- sources: the bytes of a file, plain or compressed, read within bounds ---------------------

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"ZF", "zlib-legacy"),
]


def compression_of(head: bytes) -> str | None:
    """The compression joblib would detect from a file's first bytes, if any."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


class Source:
    """A read-only byte stream with bounded reads: ``read(n)`` never allocates more than what
    is really there, whatever ``n`` a length field claimed."""

    CHUNK = 16 << 20
    MAX_LINE = 1 << 20  # protocol 0 lines are short (a repr of one value); bounded anyway

    def __init__(self, f: BinaryIO, size: int | None, compression: str | None = None) -> None:
        self._f = f
        self._pos = 0
        self.size = size  # known only when uncompressed
        self.compression = compression

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = (self.size - self._pos) if self.size is not None else (1 << 62)
        if self.size is not None:
            n = min(n, self.size - self._pos)
        if n <= self.CHUNK:
            data: bytes = self._f.read(n)
        else:
            parts, have = [], 0
            while have < n:
                part = self._f.read(min(self.CHUNK, n - have))
                if not part:
                    break
                parts.append(part)
                have += len(part)
            data = b"".join(parts)
        self._pos += len(data)
        return data

    def read_raw(self, n: int) -> bytes:
        """``read`` for joblib's raw array bytes (not opcodes)."""
        return self.read(n)

    def readinto(self, buf: Any) -> int:
        """Fill the writable buffer ``buf`` (sized by the caller from bytes known to be
        there); returns how many bytes were read, fewer only at the end of the stream."""
        view = memoryview(buf).cast("B")
        have = 0
        while have < len(view):
            got = self._f.readinto(view[have:])  # type: ignore[attr-defined]
            if not got:
                break
            have += got
        self._pos += have
        return have

    def readline(self) -> bytes:
        line: bytes = self._f.readline(self.MAX_LINE + 1)
        self._pos += len(line)
        if len(line) > self.MAX_LINE:  # never cut short: the rest would be read as opcodes
            raise PickleStreamError(
                f"a protocol-0 line longer than {self.MAX_LINE} bytes at byte "
                f"{self._pos - len(line)} (crafted: real pickles write short lines)"
            )
        return line

    def tell(self) -> int:
        return self._pos

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self._pos

    def at_end(self) -> bool:
        if self.size is not None:
            return self._pos >= self.size
        more = self._f.read(1)
        if more:
            self._pos += 1
            return False
        return True


class MemorySource(Source):
    """A :class:`Source` over bytes already in memory (a zip record): ``read`` is the
    buffer's own (bounded by what is there by construction), one call per opcode less."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        super().__init__(self._buf, len(data))
        self.read = self._buf.read  # type: ignore[method-assign,assignment]

    def readline(self) -> bytes:
        line: bytes = self._buf.readline(self.MAX_LINE + 1)
        if len(line) > self.MAX_LINE:
            raise PickleStreamError(
                f"a protocol-0 line longer than {self.MAX_LINE} bytes at byte "
                f"{self.tell() - len(line)} (crafted: real pickles write short lines)"
            )
        return line

    def tell(self) -> int:
        return self._buf.tell()

    def remaining(self) -> int | None:
        return len(self._buf.getbuffer()) - self._buf.tell()

    def at_end(self) -> bool:
        return self.remaining() == 0


class _Inflating(io.RawIOBase):
    """A decompressor's output, counted: past the budget the read fails (a bomb)."""

    def __init__(self, inner: Any, budget: int, name: str) -> None:
        self._inner = inner
        self._budget = budget
        self._out = 0
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n: int = self._inner.readinto(buf)
        self._out += n
        if self._out > self._budget:
            var = "MODELSTORE_MAX_INFLATE_RATIO / MODELSTORE_MIN_INFLATE_BYTES / MODELSTORE_MAX_INFLATE_BYTES"
            raise PickleStreamError(
                f"the {self._name} stream inflates to more than {self._budget} bytes, beyond the "
                f"decompression limit for a file of this size (a decompression bomb?); if the file "
                f"is genuine, raise the limit with the environment variables {var}",
                "suspicious",
            )
        return n


class _ZlibRaw(io.RawIOBase):
    """joblib's zlib files: raw zlib streams, one after another (as joblib reads them)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._d = zlib.decompressobj()
        self._tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while True:
            if self._d.eof:
                rest = self._d.unused_data or self._f.read(1 << 20)
                if not rest:
                    return 0
                self._d, self._tail = zlib.decompressobj(), rest
            data = self._tail or self._f.read(1 << 20)
            if not data:
                raise EOFError("the zlib stream ends before its end marker (truncated?)")
            out = self._d.decompress(data, len(buf))
            self._tail = self._d.unconsumed_tail
            if out:
                buf[: len(out)] = out
                return len(out)


def open_source(path: Path, f: BinaryIO, limits: Limits) -> Source:
    """A :class:`Source` over ``f`` (opened on ``path``), decompressing as joblib would."""
    head = f.read(8)
    f.seek(0)
    comp = compression_of(head)
    size = os.fstat(f.fileno()).st_size
    if comp is None:
        return Source(f, size)
    if comp in ("lz4", "zlib-legacy"):
        raise PickleStreamError(
            f"{comp} compression is not supported (joblib < 0.10 or lz4)", "suspicious"
        )
    budget = min(limits.inflate_cap, max(limits.inflate_floor, limits.inflate_ratio * size))
    raw: Any
    if comp == "gzip":
        raw = gzip.GzipFile(fileobj=f, mode="rb")
    elif comp == "bz2":
        raw = bz2.BZ2File(f, mode="rb")
    elif comp in ("xz", "lzma"):
        raw = lzma.LZMAFile(f, mode="rb")  # noqa: SIM115 - owned by the Source it is wrapped in
    else:
        raw = _ZlibRaw(f)
    stream = io.BufferedReader(_Inflating(raw, budget, comp), 1 << 20)
    opcodes = max(limits.structure_floor, limits.structure_ratio * size)
    return _Inflated(stream, comp, opcodes, limits.structure_ratio)


class _Inflated(Source):
    """A decompressed :class:`Source` whose opcode bytes (all but joblib's raw array bytes)
    are bounded: what the walk builds grows with them, up to ~100 bytes of objects per byte."""

    def __init__(self, f: BinaryIO, compression: str, opcodes: int, ratio: int) -> None:
        super().__init__(f, None, compression)
        self._left = opcodes
        self._opcodes = opcodes
        self._ratio = ratio

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        self._count(len(data))
        return data

    def readline(self) -> bytes:
        line = super().readline()
        self._count(len(line))
        return line

    def read_raw(self, n: int) -> bytes:
        return super().read(n)

    def _count(self, n: int) -> None:
        self._left -= n
        if self._left < 0:
            raise PickleStreamError(
                f"the {self.compression} stream's pickle opcodes inflate past "
                f"{self._opcodes:,} bytes, {self._ratio}x the file's size or 1 MiB (array "
                f"data aside; a decompression bomb of objects?); if the file is genuine, raise "
                f"the limit with the environment variable MODELSTORE_MAX_PICKLE_RATIO",
                "suspicious",
            )


DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error, lzma.LZMAError)

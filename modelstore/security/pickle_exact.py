"""The pickle opcodes that carry data, read exactly (part of :mod:`.pickle_stream`'s reader).

CPython's pure-Python unpickler reads every byte through its unframer, which refuses a read
that runs past the end of a FRAME: that check is what keeps an opcode from straddling a
frame end, where two readers disagree on where the next opcode starts. Our reader reads
straight from the frame's buffer instead (one C call, not a Python call per read), so the
opcodes whose data the stdlib takes as it comes (strings, bytes, long integers, one-byte
arguments) are replaced here by versions that check they got all of it; a short read is
refused through the reader's ``_cut`` (past a frame's end: crafted; past the file's end:
truncated). Fixed-size arguments fail in ``struct.unpack`` when short, which the reader's
loop maps to the same refusal.
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections.abc import Callable
from typing import Any

from .pickle_source import PickleStreamError


class ExactReads:
    """Mixin for :class:`~.pickle_stream.StreamReader`: the opcodes with data."""

    read: Callable[[int], bytes]
    append: Callable[[Any], None]
    memo: dict[int, Any]
    stack: list[Any]

    _decode_string: Callable[[bytes], Any]  # the stdlib unpickler's

    def _cut(self) -> PickleStreamError:
        """The refusal for a short read (the reader's own, which knows where it reads from)."""
        raise NotImplementedError

    def _data(self, n: int) -> bytes:
        data: bytes = self.read(n)
        if len(data) != n:
            raise self._cut()
        return data

    def _byte(self) -> int:
        b: bytes = self.read(1)
        if not b:
            raise self._cut()
        return b[0]

    def load_short_binunicode(self) -> None:
        n = self.read(1)
        if n:
            data = self.read(n[0])
            if len(data) == n[0]:
                self.append(str(data, "utf-8", "surrogatepass"))
                return
        raise self._cut()

    def load_binunicode(self) -> None:
        (n,) = struct.unpack("<I", self.read(4))
        self.append(str(self._data(n), "utf-8", "surrogatepass"))

    def load_binunicode8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > sys.maxsize:
            raise PickleStreamError(f"BINUNICODE8 of {n} bytes", "suspicious")
        self.append(str(self._data(n), "utf-8", "surrogatepass"))

    def load_short_binbytes(self) -> None:
        n = self.read(1)
        if n:
            data = self.read(n[0])
            if len(data) == n[0]:
                self.append(data)
                return
        raise self._cut()

    def load_binbytes(self) -> None:
        (n,) = struct.unpack("<I", self.read(4))
        self.append(self._data(n))

    def load_binbytes8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > sys.maxsize:
            raise PickleStreamError(f"BINBYTES8 of {n} bytes", "suspicious")
        self.append(self._data(n))

    def load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        # bounded by what is there (the stdlib allocates bytearray(n) first, then reads)
        self.append(bytearray(self._data(n)))

    def load_short_binstring(self) -> None:
        self.append(self._decode_string(self._data(self._byte())))

    def load_binstring(self) -> None:
        (n,) = struct.unpack("<i", self.read(4))
        if n < 0:
            raise PickleStreamError("BINSTRING with a negative length")
        self.append(self._decode_string(self._data(n)))

    def load_long1(self) -> None:
        self.append(pickle.decode_long(self._data(self._byte())))

    def load_long4(self) -> None:
        (n,) = struct.unpack("<i", self.read(4))
        if n < 0:
            raise PickleStreamError("LONG4 with a negative length")
        self.append(pickle.decode_long(self._data(n)))

    def load_binint1(self) -> None:
        b = self.read(1)
        if not b:
            raise self._cut()
        self.append(b[0])

    def load_binget(self) -> None:
        b = self.read(1)
        if not b:
            raise self._cut()
        self.append(self.memo[b[0]])

    def load_binput(self) -> None:
        b = self.read(1)
        if not b:
            raise self._cut()
        self.memo[b[0]] = self.stack[-1]


P = pickle
EXACT_DISPATCH: dict[int, Callable[[Any], None]] = {
    op[0]: load
    for op, load in (
        (P.SHORT_BINUNICODE, ExactReads.load_short_binunicode),
        (P.BINUNICODE, ExactReads.load_binunicode),
        (P.BINUNICODE8, ExactReads.load_binunicode8),
        (P.SHORT_BINBYTES, ExactReads.load_short_binbytes),
        (P.BINBYTES, ExactReads.load_binbytes),
        (P.BINBYTES8, ExactReads.load_binbytes8),
        (P.BYTEARRAY8, ExactReads.load_bytearray8),
        (P.SHORT_BINSTRING, ExactReads.load_short_binstring),
        (P.BINSTRING, ExactReads.load_binstring),
        (P.LONG1, ExactReads.load_long1),
        (P.LONG4, ExactReads.load_long4),
        (P.BININT1, ExactReads.load_binint1),
        (P.BINGET, ExactReads.load_binget),
        (P.BINPUT, ExactReads.load_binput),
    )
}

"""The joblib file format written by CPython's C pickler (issue 19: saves at the raw save's speed).

``joblib.dump`` runs the pure-Python pickler so that it can stop after each numpy array's
wrapper and write the array's bytes into the file right there. This module writes the same
format with the C pickler, faster than ``joblib.dump`` (docs/performance.md, fifth round):

- the pickler's ``persistent_id`` sees every object; each array (the exact types joblib
  wraps) is answered with the persistent id ``(wrapper, token)``: joblib's own
  ``NumpyArrayWrapper`` for the array (pickled by the same pickler, memo and all, so its
  classes and dtype are written once, as joblib writes them) and a one-use random 64-bit
  token. The stream then holds ``<wrapper> ... BUILD LONG1 <token> TUPLE2 MEMOIZE BINPERSID``;
- the stream comes out as whole frames and unframed large payloads (how the C pickler
  writes a file); each frame is searched for the next tokens in order, and each
  ``LONG1 <token> TUPLE2 MEMOIZE BINPERSID`` is cut out: the frame is closed right after the
  wrapper's ``BUILD``, the array's alignment padding and bytes follow outside any frame (as
  joblib writes them), and the rest of the frame goes on in a new one that starts with the
  ``MEMOIZE`` (so every later memo index is where the pickler put it; the slot now holds the
  array);
- a token not found where the pickler put it, the tokens' random tag anywhere else, or a
  byte sequence this reader does not expect outside a frame stops the save
  (:class:`Fallback`) and the caller writes the file with joblib's own pickler instead.

The result is a joblib file that ``joblib.load`` (also with ``mmap_mode``) and modelstore's
gated loader read as any other; it is not byte-identical to ``joblib.dump``'s (frame
boundaries differ, and one memo slot per array).

What ``inspect`` would read back (globals, arrays and their paths, the states of objects)
is recorded on the way (:mod:`.fastrecord`).
"""

from __future__ import annotations

import functools
import os
import pickle
import struct
from pathlib import Path
from typing import Any

from ...storage.hashing import format_checksum
from . import writer
from .fastrecord import Recorder, walk
from .record import Recorded, array_info
from .writer import HashingFile

_FRAME = 0x95
#: array bytes are copied out of the model this many at a time
_CHUNK = 16 << 20
_BUILD = ord("b")
_MEMOIZE = b"\x94"
#: what follows the token: TUPLE2 (the persistent id), MEMOIZE (its memo slot), BINPERSID
_AFTER = b"\x86" + _MEMOIZE + b"Q"


@functools.cache
def _opcode_sizes() -> dict[int, tuple[int, int]]:
    """opcode -> (fixed argument bytes, bytes of a length that many payload bytes follow);
    built on the first save (importing the backend for a load need not build it)."""
    import pickletools

    lengths = {
        pickletools.TAKEN_FROM_ARGUMENT1: 1,
        pickletools.TAKEN_FROM_ARGUMENT4: 4,
        pickletools.TAKEN_FROM_ARGUMENT4U: 4,
        pickletools.TAKEN_FROM_ARGUMENT8U: 8,
    }
    out: dict[int, tuple[int, int]] = {}
    for op in pickletools.opcodes:
        n = op.arg.n if op.arg is not None else 0
        if n >= 0:
            out[ord(op.code)] = (n, 0)
        elif n in lengths:
            out[ord(op.code)] = (0, lengths[n])
    out.pop(_FRAME, None)
    return out


class Fallback(Exception):
    """The stream is not one this writer can place arrays in: use joblib's own pickler."""


#: arrays one save can place (the token's low 3 bytes)
_MAX_ARRAYS = 1 << 24


def _token_base() -> tuple[int, bytes]:
    """A random 40-bit tag, shifted past the array index: each token is 8 bytes in LONG1
    (>= 2**55, < 2**63), and every marker ends in the same 8 bytes (the tag, TUPLE2,
    MEMOIZE, BINPERSID), which must not overlap themselves so that counting them counts
    every occurrence."""
    while True:
        tag = (int.from_bytes(os.urandom(5), "little") & ((1 << 39) - 1)) | (1 << 31)
        tail = tag.to_bytes(5, "little") + _AFTER
        if not any(tail[:k] == tail[-k:] for k in range(1, len(tail))):
            return tag << 24, tail


def _marker(base: int, i: int) -> bytes:
    return b"\x8a\x08" + (base + i).to_bytes(8, "little") + _AFTER


class _Arrays:
    """Each array the pickler meets, with its joblib wrapper and what its bytes were then.

    The bytes are written when the frame holding the array's token reaches the file, up to
    a frame (64 KiB of stream) or the end of the dump later: a ``__getstate__`` running in
    between could change the array. So each array's bytes are fingerprinted (xxh3) when the
    pickler meets it and again as they are written, in pieces of at most 16 MiB that the
    hashing file copies as it takes them (the model's own memory is never handed to the
    sha256 thread, which may still be reading after the save returns); a difference stops
    the fast save. Object arrays are pickled when met, as joblib would write them."""

    def __init__(self, out: HashingFile, recorder: Recorder) -> None:
        import numpy as np
        import xxhash
        from joblib.numpy_pickle import NumpyPickler

        self.np = np
        self.xxhash = xxhash
        self.types = (np.ndarray, np.matrix, np.memmap)
        self.create = NumpyPickler._create_array_wrapper
        self.file_handle = out  # what joblib's wrapper code reads as the pickler's file
        self.buffered = False
        self.base, self.tail = _token_base()
        self.seen: list[Any] = []  # the arrays as met, in stream order
        #: (wrapper, C-ordered bytes view or pickled object array, fingerprint or None)
        self.pending: list[tuple[Any, Any, int | None]] = []
        self.recorder = recorder

    def persistent_id(self, obj: Any) -> tuple[Any, int] | None:
        if type(obj) not in self.types:
            return None
        if len(self.pending) >= _MAX_ARRAYS:
            raise Fallback("more arrays than one save's tokens can tell apart")
        self.seen.append(obj)
        np = self.np
        # a memmap (a model loaded with mmap_mode) is recorded as the ndarray it holds:
        # joblib.load hands back an ndarray for both, and the gate refuses the memmap class
        # (it opens files) even as a plain value
        array = np.asarray(obj) if type(obj) is np.memmap else obj
        wrapper = self.create(self, array)
        if wrapper.safe_get_numpy_array_alignment_bytes() is None:
            raise Fallback("an array wrapper without alignment")
        if array.dtype.itemsize == 0 and not array.dtype.hasobject:
            # joblib.dump fails on these (its buffer size divides by the item size), and
            # joblib.load of a file holding one fails the same way: say it as joblib does
            raise Fallback("an array of zero-size items")
        if array.dtype.hasobject:  # joblib pickles it after the wrapper, where the walk cannot see
            self.recorder.rec.exact = False
            self.pending.append((wrapper, pickle.dumps(array, protocol=5), None))
        else:
            flat = array.T if wrapper.order == "F" else array
            if not flat.flags.c_contiguous:
                flat = np.ascontiguousarray(flat)  # a copy now: nothing can change it
                data, mark = np.asarray(flat).reshape(-1).view(np.uint8), None
            elif flat.size == 0:
                data, mark = np.empty(0, np.uint8), None
            else:
                data = np.asarray(flat).reshape(-1).view(np.uint8)  # np.matrix stays 2-D
                mark = self.xxhash.xxh3_64_intdigest(data)
            self.pending.append((wrapper, data, mark))
        return wrapper, self.base + len(self.pending) - 1

    def write(self, index: int) -> None:
        """The array's padding and bytes, as joblib's ``write_array`` writes them."""
        wrapper, data, mark = self.pending[index]
        self.pending[index] = (None, None, None)  # written: let go of it
        out = self.file_handle
        if isinstance(data, bytes):  # an object array, pickled when it was met
            out.write(data)
            return
        align = wrapper.numpy_array_alignment_bytes
        pad = align - ((out.tell() + 1) % align)
        out.write(bytes([pad]) + b"\xff" * pad)
        check = self.xxhash.xxh3_64() if mark is not None else None
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            chunk = view[start : start + _CHUNK]
            if check is not None:
                check.update(chunk)
            out.write(chunk)  # copied there, before anything else runs: the bytes just checked
        if check is not None and check.intdigest() != mark:
            raise Fallback("an array changed while the model was being pickled")


class _Sink:
    """The file object the C pickler writes to: frames are searched for the array tokens,
    split around them, and everything goes on to ``out``."""

    def __init__(self, out: HashingFile, arrays: _Arrays) -> None:
        self.out = out
        self.arrays = arrays
        self.buf = bytearray()
        self.skip = 0  # bytes of an unframed payload still to pass through
        self.next = 0
        self.built = False  # what went out last was a frame ending with a BUILD

    def write(self, data: Any) -> int:
        n = len(data)
        if self.skip:
            take = min(self.skip, n)
            self.out.write(data[:take])
            self.skip -= take
            data = data[take:]
        if len(data):
            self.buf += data
            self._process()
        return n

    def _process(self) -> None:
        buf = self.buf
        p = 0
        while p < len(buf):
            op = buf[p]
            if op == _FRAME:
                if p + 9 > len(buf):
                    break
                (n,) = struct.unpack_from("<Q", buf, p + 1)
                if p + 9 + n > len(buf):
                    break
                self._frame(bytes(buf[p + 9 : p + 9 + n]))
                p += 9 + n
                continue
            # outside a frame: PROTO, a large payload the pickler streamed past its frames,
            # or a frame under 4 bytes that it wrote unframed; passed through as they are
            size = _opcode_sizes().get(op)
            if size is None:
                raise Fallback(f"unexpected opcode {op:#x} outside a frame")
            fixed, width = size
            if p + 1 + fixed + width > len(buf):
                break
            n = int.from_bytes(buf[p + 1 + fixed : p + 1 + fixed + width], "little")
            head = 1 + fixed + width
            self.built = False
            self.out.write(bytes(buf[p : p + head]))
            p += head
            take = min(n, len(buf) - p)
            self.out.write(bytes(buf[p : p + take]))
            p += take
            self.skip = n - take
        del buf[:p]

    def _emit(self, content: bytes) -> None:
        if content:
            self.out.write(b"\x95" + struct.pack("<Q", len(content)) + content)
            self.built = content[-1] == _BUILD

    def _frame(self, content: bytes) -> None:
        arrays = self.arrays
        start, first, head = 0, self.next, b""
        while self.next < len(arrays.pending):
            marker = _marker(arrays.base, self.next)
            k = content.find(marker, start)
            if k < 0:
                break
            # right after the wrapper's BUILD: in this frame, or ending the frame before
            after_build = content[k - 1] == _BUILD if k else start == 0 and self.built
            if not after_build:
                raise Fallback("an array token not right after its wrapper")
            self._emit(head + content[start:k])  # ends with the wrapper's BUILD
            arrays.write(self.next)
            start = k + len(marker)
            head = _MEMOIZE  # the memo slot the persistent id took: it holds the array now
            self.next += 1
        if content.count(arrays.tail) != self.next - first:
            # the tag turns up where no array was placed: model bytes that happen to hold
            # it, or a token the search did not meet where the pickler put it
            raise Fallback("an array token where no array was placed")
        self._emit(head + content[start:])

    def finish(self) -> None:
        if self.buf or self.skip or self.next != len(self.arrays.pending):
            raise Fallback("not every array token was found in the stream")


def dump(obj: Any, out: HashingFile, protocol: int) -> Recorded:
    """Pickle ``obj`` into ``out`` as a joblib file; the record of what was written."""
    rec = Recorded()
    recorder = Recorder(rec, protocol)
    arrays = _Arrays(out, recorder)
    sink = _Sink(out, arrays)

    class Marking(pickle.Pickler):
        persistent_id = staticmethod(arrays.persistent_id)
        reducer_override = staticmethod(recorder.override)

    try:
        Marking(sink, protocol=protocol).dump(obj)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as e:
        raise Fallback(str(e)) from e  # joblib's own pickler says it the way users know
    sink.finish()
    if id(obj) in recorder.reduced:
        rec.root = rec.objects[id(obj)]
    elif type(obj) in arrays.types:
        rec.exact = False  # the scan describes a wrapper at the root; not worth copying
    if rec.exact:
        try:
            found = walk(obj, recorder.reduced, arrays.types)
        except RecursionError:
            found = None
        if found is None or len(found) != len(arrays.seen):
            rec.exact = False
        else:
            for (array, path), seen in zip(found, arrays.seen):
                if array is not seen:
                    rec.exact = False
                    break
                if path is not None:
                    rec.arrays.append(array_info(array, path))
    return rec


def save(obj: Any, path: Path, protocol: int | None) -> writer.Dumped | None:
    """An uncompressed ``joblib.dump(obj, path, protocol=protocol)`` written, hashed and
    described in one pass: by the C pickler here, else by joblib's own pickler
    (:func:`.writer.dump`, which also words any error the way joblib users know it); None
    when neither can (a protocol below 4, a joblib without the pieces used: call joblib)."""
    if protocol is not None and protocol < 4:
        return None
    try:
        with open(path, "wb") as raw, HashingFile(raw) as out:
            rec = dump(obj, out, protocol if protocol is not None else pickle.DEFAULT_PROTOCOL)
    except (Fallback, ImportError, AttributeError):
        dumped = writer.dump(obj, path, protocol)
        if dumped is not None:
            # the structures that end up here are the odd ones, where joblib's recorder is
            # known to name some paths differently from the scan: inspect reads the file
            dumped.recorded = None
        return dumped
    return writer.Dumped(
        format_checksum(out.xxh), out.sha256(), out.size, rec if rec.exact else None
    )

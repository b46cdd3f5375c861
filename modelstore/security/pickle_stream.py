"""One way to read a pickle stream, shared by the scanner and the loader.

``scan`` and ``load`` must read exactly the same bytes with exactly the same rules, or an
attacker hides an opcode from one of them (a ``BINBYTES`` that overruns its ``FRAME``, a
second pickle after ``STOP``, array bytes joblib reads from the raw file while the opcode
walker reads them as opcodes). So both are subclasses of :class:`StreamReader`, which is
CPython's own pure-Python unpickler (``pickle._Unpickler``: its framing, its opcode readers,
its memo) with the opcodes that import, call or mutate routed to a handful of methods the
subclasses implement, and these rules added:

- every read is bounded by the bytes really present (a 20-byte file cannot make us allocate
  3 GiB for a ``BYTEARRAY8`` that claims it), and compressed streams inflate within a ratio
  and an absolute cap (:mod:`.pickle_source`);
- an opcode may not straddle a frame end, frames may not nest (stdlib rules, kept), raw data
  (joblib's array bytes) may only start where no frame is open;
- extension codes, persistent ids and out-of-band buffers are refused;
- dict keys and set members are limited to types whose hashes an attacker cannot collide
  at will (no O(n^2) dict from a small file);
- data after ``STOP`` is refused by the callers (:func:`expect_end`).
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, Callable

from ..errors import ModelstoreError
from .pickle_exact import EXACT_DISPATCH, ExactReads
from .pickle_keys import check_keys, safe_key
from .pickle_source import (
    DECOMPRESS_ERRORS,
    Limits,
    MemorySource,
    PickleStreamError,
    Source,
    compression_of,
    open_source,
)

__all__ = [
    "DECOMPRESS_ERRORS",
    "Limits",
    "MemorySource",
    "PickleStreamError",
    "Source",
    "StreamReader",
    "check_keys",
    "compression_of",
    "expect_end",
    "open_source",
    "safe_key",
]

P = pickle  # opcode constants
#: The longest "module" + "name" of a global (real ones: under 200; red team: a 2 MiB one).
MAX_GLOBAL_NAME = 1024
_U16 = struct.Struct("<H").unpack
_I32 = struct.Struct("<i").unpack


# -- the reader -------------------------------------------------------------------------------


class StreamReader(ExactReads, pickle._Unpickler):  # type: ignore[name-defined,misc]
    """CPython's pure-Python unpickler with the import/call/mutate opcodes routed to
    :meth:`on_global`, :meth:`on_call`, :meth:`on_new`, :meth:`on_build`, :meth:`on_setitems`,
    :meth:`on_appends`, :meth:`on_additems`, and the reading rules above."""

    #: Opcodes the loop reads itself, without its dispatch table (the data of a vocabulary or a
    #: state dict: strings, memo entries, small ints): a subclass may not route them elsewhere.
    INLINE = (0x68, 0x4B, 0x8C, 0x94, 0x4D, 0x4A)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        changed = [op for op in cls.INLINE if cls.dispatch.get(op) is not StreamReader.dispatch[op]]
        if changed:
            raise TypeError(f"{cls.__name__} overrides opcodes the loop reads inline: {changed}")

    def __init__(self, source: Source, where: str) -> None:
        super().__init__(source, fix_imports=True, encoding="ASCII", errors="strict")
        self.source = source
        self.where = where

    # ---- the loop

    def load(self) -> Any:  # noqa: C901 - CPython's loop, kept recognisable
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        # ``read`` is always a plain read of where the bytes come from now: the file, or the
        # current frame's buffer (load_frame). The opcodes that take data check they got all
        # of it (``_cut``), which is what the stdlib's unframer checked on every read; the
        # loop goes on in the file when a frame is used up (``_next_key``).
        self.read = self._file_read
        self.readinto = self._unframer.readinto
        self.readline = self._file_readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        dispatch = self.dispatch
        try:
            while True:
                key = self.read(1) or self._next_key()
                op = key[0]
                # INLINE: what their handlers in the table do, without the call
                if op == 0x68 or op == 0x4B:  # BINGET, BININT1: a one-byte argument
                    n = self.read(1)
                    if not n:
                        raise self._cut()
                    self.append(self.memo[n[0]] if op == 0x68 else n[0])
                    continue
                if op == 0x8C:  # SHORT_BINUNICODE
                    n = self.read(1)
                    if n:
                        data = self.read(n[0])
                        if len(data) == n[0]:
                            self.append(str(data, "utf-8", "surrogatepass"))
                            continue
                    raise self._cut()
                if op == 0x94:  # MEMOIZE
                    memo = self.memo
                    memo[len(memo)] = self.stack[-1]
                    continue
                if op == 0x4D:  # BININT2
                    self.append(_U16(self.read(2))[0])
                    continue
                if op == 0x4A:  # BININT
                    self.append(_I32(self.read(4))[0])
                    continue
                handler = dispatch.get(op)
                if handler is None:
                    raise PickleStreamError(
                        f"unknown opcode {key!r} at byte {self.source.tell() - 1}"
                    )
                handler(self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value
        except (PickleStreamError, ModelstoreError):
            raise
        except pickle.PickleError as e:  # UnpicklingError, and Cython's checksum mismatches
            # an opcode straddling a frame end, or a frame inside a frame, is how a stream makes
            # two readers disagree on where the next opcode starts (gh-154848): crafted, not damage
            kind = "suspicious" if "frame" in str(e) else "damaged"
            raise PickleStreamError(f"malformed pickle: {e}", kind) from None
        except DECOMPRESS_ERRORS as e:
            raise PickleStreamError(f"cannot decompress or read the stream: {e}") from None
        except struct.error:  # a fixed-size argument cut short
            raise self._cut() from None
        except (
            IndexError,
            KeyError,
            ValueError,
            TypeError,
            AttributeError,
            UnicodeDecodeError,
            OverflowError,
            MemoryError,
            RecursionError,
        ) as e:
            raise PickleStreamError(
                f"malformed pickle ({type(e).__name__}: {str(e)[:200]})"
            ) from None

    def _next_key(self) -> bytes:
        """The current frame is used up: the next opcode comes from the file."""
        if self.read is not self._file_read:
            self._unframer.current_frame = None
            self.read = self._file_read
            key: bytes = self.read(1)
            if key:
                return key
        raise PickleStreamError("the stream ends before its STOP opcode (truncated?)")

    def _cut(self) -> PickleStreamError:
        """An opcode's argument or data is shorter than it says: past the end of its frame
        (where two readers disagree on what comes next: crafted), or of the file."""
        if self.read is not self._file_read:
            return PickleStreamError(
                "an opcode's data runs past the end of its frame (pickle exhausted before end "
                "of frame)",
                "suspicious",
            )
        return PickleStreamError("the stream ends inside an opcode's data (truncated?)")

    def expect_frame_end(self) -> None:
        """After a pickle inline in a joblib file: its STOP may not leave bytes of its frame
        unread (a reader that continues after STOP in the file, as joblib < 1.5 did with the
        C unpickler, would run them as opcodes of the outer pickle)."""
        if self.frame_open():
            raise PickleStreamError(
                "bytes follow an inline pickle's STOP inside its frame", "suspicious"
            )

    def frame_open(self) -> bool:
        """Whether unread bytes of a FRAME remain (raw reads may not start inside one)."""
        frame = self._unframer.current_frame  # only load_frame sets one, with _frame_len
        return frame is not None and frame.tell() < self._frame_len

    def raw_read(self, n: int) -> bytes:
        """Bytes that follow the opcodes in the file itself (joblib's array data)."""
        if self.frame_open():
            raise PickleStreamError("raw array data starts inside a pickle frame", "suspicious")
        data = self.source.read_raw(n)
        if len(data) != n:
            raise PickleStreamError(f"the stream ends inside {n} bytes of array data (truncated?)")
        return data

    def raw_readinto(self, buf: Any) -> None:
        """:meth:`raw_read` into a writable buffer of exactly the bytes wanted."""
        if self.frame_open():
            raise PickleStreamError("raw array data starts inside a pickle frame", "suspicious")
        n = memoryview(buf).nbytes
        if self.source.readinto(buf) != n:
            raise PickleStreamError(f"the stream ends inside {n} bytes of array data (truncated?)")

    # ---- hooks for subclasses

    def on_global(self, module: str, name: str) -> Any:
        raise NotImplementedError

    def on_call(self, func: Any, args: Any) -> Any:
        raise NotImplementedError

    def on_new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        raise NotImplementedError

    def on_build(self, target: Any, state: Any) -> Any:
        """Apply ``state``; return what replaces the target on the stack (usually itself)."""
        raise NotImplementedError

    def on_setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        raise NotImplementedError

    def on_appends(self, target: Any, items: list[Any]) -> None:
        raise NotImplementedError

    def on_additems(self, target: Any, items: list[Any]) -> None:
        raise NotImplementedError

    def on_dict(self, pairs: list[tuple[Any, Any]]) -> Any:
        check_keys((k for k, _ in pairs), self.where)
        return dict(pairs)

    def on_frozenset(self, items: list[Any]) -> Any:
        check_keys(items, self.where)
        return frozenset(items)

    # ---- opcodes

    def find_class(self, module: str, name: str) -> Any:
        if len(module) + len(name) > MAX_GLOBAL_NAME:  # a name is hashed and joined per use
            raise PickleStreamError(
                f"a global named by {len(module) + len(name)} characters", "suspicious"
            )
        return self.on_global(*self.mapped(module, name))

    def mapped(self, module: str, name: str) -> tuple[str, str]:
        """Python 2 names as the stdlib unpickler maps them (protocols 0-2)."""
        import _compat_pickle

        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                return _compat_pickle.NAME_MAPPING[(module, name)]  # type: ignore[no-any-return]
            if module in _compat_pickle.IMPORT_MAPPING:
                return _compat_pickle.IMPORT_MAPPING[module], name
        return module, name

    def _bad(self, what: str) -> None:
        raise PickleStreamError(what, "suspicious")

    def load_ext(self) -> None:
        self._bad("the stream uses a copyreg extension code, which names a global indirectly")

    def load_persid(self) -> None:
        self._bad("the stream uses a persistent id, which this kind of file never holds")

    def load_buffer(self) -> None:
        self._bad("the stream uses an out-of-band buffer, which a file cannot supply")

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        stack[-1] = self.on_call(stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.on_new(cls, args, None))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.on_new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        # INST and OBJ: with arguments (or a non-class) a call, else an empty instance
        if args:
            self.append(self.on_call(klass, tuple(args)))
        else:
            self.append(self.on_new(klass, (), None))

    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        stack[-1] = self.on_build(stack[-1], state)

    def load_setitem(self) -> None:
        stack = self.stack
        value = stack.pop()
        key = stack.pop()
        self.on_setitems(stack[-1], [(key, value)])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:  # both stdlib readers refuse it; zip would drop the last item
            raise PickleStreamError("SETITEMS with an odd number of items")
        self.on_setitems(self.stack[-1], list(zip(items[::2], items[1::2])))

    def load_append(self) -> None:
        value = self.stack.pop()
        self.on_appends(self.stack[-1], [value])

    def load_appends(self) -> None:
        items = self.pop_mark()
        self.on_appends(self.stack[-1], items)

    def load_additems(self) -> None:
        items = self.pop_mark()
        self.on_additems(self.stack[-1], items)

    def load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise PickleStreamError("DICT with an odd number of items")
        self.append(self.on_dict(list(zip(items[::2], items[1::2]))))

    def load_frozenset(self) -> None:
        items = self.pop_mark()  # rebinds self.append: take it after
        self.append(self.on_frozenset(items))

    def load_frame(self) -> None:
        """A FRAME as the stdlib reads it, except that a frame cut short by the end of the
        file is damage (truncation), not a crafted stream: it is told apart here, before an
        opcode later runs past the short frame's end."""
        (size,) = struct.unpack("<Q", self.read(8))
        frame = self._unframer.current_frame
        if frame is not None and frame.read() != b"":
            raise PickleStreamError(
                "a new frame begins before the current frame ends", "suspicious"
            )
        data = self._file_read(size)
        if len(data) < size:
            raise PickleStreamError("the stream ends inside a frame (truncated?)")
        frame = self._unframer.current_frame = io.BytesIO(data)
        self._frame_len = len(data)
        self.read = frame.read
        self.readline = self._unframer.readline  # text opcodes: the stdlib's checked reads

    def load_proto(self) -> None:
        proto = self.read(1)
        if not proto or proto[0] > pickle.HIGHEST_PROTOCOL:
            raise PickleStreamError(f"unsupported pickle protocol {proto!r}")
        self.proto = proto[0]

    dispatch: dict[int, Callable[[Any], None]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    for _op in (P.EXT1, P.EXT2, P.EXT4):
        dispatch[_op[0]] = load_ext
    for _op in (P.PERSID, P.BINPERSID):
        dispatch[_op[0]] = load_persid
    for _op in (P.NEXT_BUFFER, P.READONLY_BUFFER):
        dispatch[_op[0]] = load_buffer
    dispatch[P.REDUCE[0]] = load_reduce
    dispatch[P.NEWOBJ[0]] = load_newobj
    dispatch[P.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[P.BUILD[0]] = load_build
    dispatch[P.SETITEM[0]] = load_setitem
    dispatch[P.SETITEMS[0]] = load_setitems
    dispatch[P.APPEND[0]] = load_append
    dispatch[P.APPENDS[0]] = load_appends
    dispatch[P.ADDITEMS[0]] = load_additems
    dispatch[P.DICT[0]] = load_dict
    dispatch[P.FROZENSET[0]] = load_frozenset
    dispatch[P.PROTO[0]] = load_proto
    dispatch[P.FRAME[0]] = load_frame
    dispatch.update(EXACT_DISPATCH)
    del _op


def expect_end(reader: StreamReader) -> None:
    """Refuse bytes after the pickle's STOP: a second pickle there is what another reader
    (a legacy torch.load, a careless ``pickle.load`` loop) would run next."""
    if reader.frame_open() or not reader.source.at_end():
        raise PickleStreamError(
            "data follows the pickle's STOP opcode (a second pickle?)", "suspicious"
        )

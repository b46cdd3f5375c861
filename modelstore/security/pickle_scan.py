"""A static pickle reader: walks opcodes and builds an inert picture of the stream.

Nothing is imported, called or constructed. ``GLOBAL``/``STACK_GLOBAL``/``INST`` become
:class:`Global` records, ``REDUCE``/``NEWOBJ``/``OBJ`` become :class:`Call` records, and
persistent ids become :class:`PersId`. The result serves two readers: the security scan
(every global referenced, classified against an allow-list) and ``inspect`` (tensor records
of a torch state dict, read from the symbolic tree).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

#: A pickle stream longer than this many opcodes is reported as unknown, not walked further.
MAX_OPS = 5_000_000
#: Nested pickles (``pickle.loads(b"...")`` inside a pickle) are followed this deep.
MAX_DEPTH = 4
#: Calls whose bytes argument is itself a pickle the reader follows.
NESTED_LOADERS = frozenset({"pickle.loads", "_pickle.loads", "pickle._loads", "dill.loads",
                            "cloudpickle.loads", "joblib.load"})


class PickleParseError(Exception):
    """The stream is not a pickle this reader can follow (malformed or unsupported)."""


@dataclass(eq=False)
class Global:
    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """``func(*args)`` as the unpickler would have called it, plus later mutations."""

    func: Any
    args: Any
    kwargs: Any = None
    state: Any = None
    items: list[tuple[Any, Any]] = field(default_factory=list)
    appends: list[Any] = field(default_factory=list)
    payload: Any = None  # data a file format stores beside the pickle (joblib's raw arrays)

    @property
    def func_name(self) -> str | None:
        return self.func.qualname if isinstance(self.func, Global) else None


@dataclass(eq=False)
class PersId:
    pid: Any


@dataclass(eq=False)
class SymDict:
    items: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class SymSet:
    items: list[Any] = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False)
class Opaque:
    """A value the reader does not model (out-of-band buffer, extension code)."""

    what: str


@dataclass
class PickleReport:
    """Globals referenced (in order of first use), the symbolic result, and any failure."""

    globals: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    ext_codes: list[int] = field(default_factory=list)
    end: int = 0
    nested: int = 0

    def add(self, qualname: str) -> None:
        if qualname not in self.globals:
            self.globals.append(qualname)


#: Called after each BUILD with (the object built, the stream, the report); may read the
#: stream (joblib stores raw array bytes right after a NumpyArrayWrapper's BUILD).
BuildHook = Callable[[Any, BinaryIO, PickleReport], None]


class _Mark:
    pass


_MARK = _Mark()


def analyse(data: bytes | BinaryIO, *, start: int = 0, on_build: BuildHook | None = None,
            depth: int = 0) -> PickleReport:
    """Walk one pickle stream from ``start`` (bytes) or the current position (a binary file);
    never raises on bad input. A file is left positioned just after the STOP opcode."""
    report = PickleReport()

    def note(g: Global) -> Global:
        # the unpickler maps Python 2 names (``__builtin__.set``) to their Python 3 homes
        key = (g.module, g.name)
        if key in _compat_pickle.NAME_MAPPING:
            g.module, g.name = _compat_pickle.NAME_MAPPING[key]
        elif g.module in _compat_pickle.IMPORT_MAPPING:
            g.module = _compat_pickle.IMPORT_MAPPING[g.module]
        report.add(g.qualname)
        return g

    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        nonlocal stack
        items = stack
        if not metastack:
            raise PickleParseError("MARK expected but the stack has none")
        stack = metastack.pop()
        return items

    def pop() -> Any:
        if not stack:
            raise PickleParseError("stack underflow")
        v = stack.pop()
        if v is _MARK:
            raise PickleParseError("unexpected MARK")
        return v

    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            f: BinaryIO = io.BytesIO(data)
            f.seek(start)
        else:
            f = data
        ops = pickletools.genops(f)
        count = 0
        for op, arg, pos in ops:
            count += 1
            if count > MAX_OPS:
                raise PickleParseError(f"more than {MAX_OPS} opcodes")
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                report.result = pop()
                report.end = (pos or 0) + 1
                return report
            if name == "MARK":
                metastack.append(stack)
                stack = []
            elif name == "POP":
                if stack and stack[-1] is _MARK:
                    stack.pop()
                else:
                    pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                if not stack:
                    raise PickleParseError("DUP on empty stack")
                stack.append(stack[-1])
            elif name in _PUSH_ARG:
                stack.append(arg)
            elif name == "NONE":
                stack.append(None)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                if name == "NEXT_BUFFER":
                    stack.append(Opaque("out-of-band buffer"))
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_DICT":
                stack.append(SymDict())
            elif name == "EMPTY_SET":
                stack.append(SymSet())
            elif name == "LIST":
                items = pop_mark()  # rebinds ``stack``: evaluate before appending
                stack.append(list(items))
            elif name == "TUPLE":
                items = pop_mark()
                stack.append(tuple(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [pop() for _ in range(n)][::-1]
                stack.append(tuple(items))
            elif name == "DICT":
                items = pop_mark()
                stack.append(SymDict(list(zip(items[::2], items[1::2]))))
            elif name == "FROZENSET":
                items = pop_mark()
                stack.append(SymSet(items, frozen=True))
            elif name == "APPEND":
                v = pop()
                _append(stack[-1] if stack else None, [v])
            elif name == "APPENDS":
                items = pop_mark()
                _append(stack[-1] if stack else None, items)
            elif name == "SETITEM":
                v = pop()
                k = pop()
                _setitems(stack[-1] if stack else None, [(k, v)])
            elif name == "SETITEMS":
                items = pop_mark()
                _setitems(stack[-1] if stack else None, list(zip(items[::2], items[1::2])))
            elif name == "ADDITEMS":
                items = pop_mark()
                target = stack[-1] if stack else None
                if not isinstance(target, SymSet):
                    raise PickleParseError("ADDITEMS on a non-set")
                target.items.extend(items)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise PickleParseError("PUT on empty stack")
                memo[int(arg)] = stack[-1]  # type: ignore[arg-type]
            elif name == "MEMOIZE":
                if not stack:
                    raise PickleParseError("MEMOIZE on empty stack")
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                key = int(arg)  # type: ignore[arg-type]
                if key not in memo:
                    raise PickleParseError(f"memo key {key} read before it was written")
                stack.append(memo[key])
            elif name == "GLOBAL":
                module, _, qual = str(arg).partition(" ")
                stack.append(note(Global(module, qual)))
            elif name == "STACK_GLOBAL":
                qual = pop()
                module = pop()
                if not isinstance(module, str) or not isinstance(qual, str):
                    # names computed at run time: the reader cannot tell what they are
                    g = Global("<computed>", "<computed>")
                    stack.append(note(g))
                else:
                    stack.append(note(Global(module, qual)))
            elif name == "INST":
                module, _, qual = str(arg).partition(" ")
                args = tuple(pop_mark())
                stack.append(Call(note(Global(module, qual)), args))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise PickleParseError("OBJ without a class")
                stack.append(Call(items[0], tuple(items[1:])))
            elif name == "REDUCE":
                args = pop()
                func = pop()
                call = Call(func, args)
                if call.func_name in NESTED_LOADERS:
                    _follow_nested(call, report, on_build, depth)
                stack.append(call)
            elif name == "NEWOBJ":
                args = pop()
                cls = pop()
                stack.append(Call(cls, args))
            elif name == "NEWOBJ_EX":
                kwargs = pop()
                args = pop()
                cls = pop()
                stack.append(Call(cls, args, kwargs))
            elif name == "BUILD":
                state = pop()
                if not stack:
                    raise PickleParseError("BUILD on empty stack")
                target = stack[-1]
                if isinstance(target, Call):
                    target.state = state
                    if on_build is not None:
                        on_build(target, f, report)
                else:
                    # BUILD on a plain value calls its __setstate__: a gadget in itself
                    stack[-1] = Call(Global("<build>", type(target).__name__), (target,), state=state)
            elif name == "PERSID":
                stack.append(PersId(arg))
            elif name == "BINPERSID":
                stack.append(PersId(pop()))
            elif name in ("EXT1", "EXT2", "EXT4"):
                report.ext_codes.append(int(arg))  # type: ignore[arg-type]
                stack.append(note(Global("<copyreg-extension>", str(arg))))
            else:
                raise PickleParseError(f"unsupported opcode {name}")
        raise PickleParseError("the stream ended without a STOP opcode")
    except PickleParseError as e:
        report.error = str(e)
    except (ValueError, IndexError, TypeError, KeyError, OverflowError, MemoryError,
            RecursionError, UnicodeDecodeError) as e:
        report.error = f"malformed pickle: {e}"
    return report


def _follow_nested(call: Call, report: PickleReport, on_build: BuildHook | None, depth: int) -> None:
    """Scan the bytes handed to ``pickle.loads`` inside a pickle, and merge what it uses."""
    args = call.args if isinstance(call.args, tuple) else ()
    data = _as_bytes(args[0]) if args else None
    if data is None:
        return
    if depth >= MAX_DEPTH:
        report.add("<nested-pickle-too-deep>.loads")
        return
    inner = analyse(data, on_build=on_build, depth=depth + 1)
    report.nested += 1 + inner.nested
    for g in inner.globals:
        report.add(g)
    if inner.error:
        report.add("<unreadable-nested-pickle>.loads")


def _as_bytes(value: Any) -> bytes | None:
    """Bytes as a pickle spells them: a literal, or protocol 2's ``_codecs.encode(s, 'latin1')``."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Call) and value.func_name == "_codecs.encode" and isinstance(value.args, tuple):
        if len(value.args) == 2 and isinstance(value.args[0], str) and value.args[1] == "latin1":
            return value.args[0].encode("latin1")
    return None


_PUSH_ARG = frozenset(
    """INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING
    BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 UNICODE BINUNICODE SHORT_BINUNICODE
    BINUNICODE8 FLOAT BINFLOAT""".split()
)


def _append(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items)
    elif isinstance(target, Call):
        target.appends.extend(items)
    else:
        raise PickleParseError("APPEND on a value that is not a list")


def _setitems(target: Any, pairs: list[tuple[Any, Any]]) -> None:
    if isinstance(target, SymDict):
        target.items.extend(pairs)
    elif isinstance(target, Call):
        target.items.extend(pairs)
    else:
        raise PickleParseError("SETITEM on a value that is not a dict")


def mapping_items(value: Any) -> list[tuple[Any, Any]] | None:
    """The key/value pairs of a symbolic dict or OrderedDict, else None."""
    if isinstance(value, SymDict):
        return value.items
    if isinstance(value, Call) and value.func_name in ("collections.OrderedDict", "builtins.dict"):
        return value.items
    return None

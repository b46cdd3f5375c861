"""The static scanner: the loader's own reader, with every import, call and mutation recorded
instead of performed.

:class:`SymbolicUnpickler` is a :class:`~.pickle_stream.StreamReader`, so it reads exactly what
the restricted loader reads (same framing, same opcode readers, same raw-data rules). Globals
become :class:`Global` records, calls and new instances :class:`Call` records, persistent ids
:class:`PersId`. The result serves two readers: the security verdict (every global against the
allow-list, every use against the entry's kind, every mutation of something the stream did not
create) and ``inspect`` (tensor records of a torch state dict, an estimator's parameters).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._gc import HOLDING, hold
from .._gc import MAX_PICKLE_BYTES as PAUSE_BYTES
from .allowlist import CALL, CONSTRUCT, Entry
from .pickle_keys import HASHING as _HASHING
from .pickle_keys import ITERATING as _ITERATING
from .pickle_keys import plain_keys, safe_key
from .pickle_stream import MemorySource, PickleStreamError, Source, StreamReader


@dataclass(eq=False)
class Global:
    module: str
    name: str
    entry: Entry | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """``func(*args)`` (or an empty instance of ``func`` when ``new``), plus later mutations."""

    func: Any
    args: Any
    kwargs: Any = None
    state: Any = None
    items: list[tuple[Any, Any]] = field(default_factory=list)
    appends: list[Any] = field(default_factory=list)
    payload: Any = None  # data a file format stores beside the pickle (joblib's raw arrays)
    new: bool = False
    built: bool = False
    #: the entries ``state`` had when BUILD applied it (a dict state; -1 otherwise)
    state_size: int = -1

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


@dataclass
class PickleReport:
    """Globals referenced (in order of first use), the symbolic result, what breaks the
    loader's rules (``misuse``: each a reason), and a failure to read the stream at all."""

    globals: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    suspicious: bool = False
    misuse: list[str] = field(default_factory=list)
    end: int = 0
    #: (module, name) exactly as the stream spelled each global (the name may hold dots)
    pairs: list[tuple[str, str]] = field(default_factory=list)

    #: every persistent id the stream makes (torch's storage records), in order
    persistent: list[PersId] = field(default_factory=list)

    #: the names in ``globals``, for the membership test (a list's is O(n): a stream of
    #: 190,000 distinct globals took minutes to scan)
    _seen: set[str] = field(default_factory=set)

    def add(self, module: str, name: str) -> None:
        qualname = f"{module}.{name}"
        if qualname not in self._seen:
            self._seen.add(qualname)
            self.globals.append(qualname)
            self.pairs.append((module, name))

    def flag(self, reason: str) -> None:
        if reason not in self.misuse and len(self.misuse) < 50:
            self.misuse.append(reason)


#: ``(reader, call)`` after a BUILD on a Call: joblib reads array bytes right after its wrapper.
BuildHook = Callable[["SymbolicUnpickler", Call], Any]
#: ``qualname -> Entry | None``: the allow-list the verdict is judged against.
Lookup = Callable[[str, str], "Entry | None"]


_COPYREG_NEW = frozenset(
    {
        "copyreg.__newobj__",
        "copyreg._reconstructor",
        "copyreg.__newobj_ex__",
        "copy_reg.__newobj__",
        "copy_reg._reconstructor",
    }
)


def _name(v: Any) -> str:
    return v.qualname if isinstance(v, Global) else type(v).__name__


class SymbolicUnpickler(StreamReader):
    """Read a stream the way the loader does, without importing or calling anything."""

    def __init__(
        self,
        source: Source,
        where: str,
        report: PickleReport,
        lookup: Lookup,
        on_build: BuildHook | None = None,
        persistent_ids: bool = False,
    ) -> None:
        super().__init__(source, where)
        self.report = report
        self.lookup = lookup
        self.hook = on_build
        if persistent_ids:  # torch's data.pkl names its storages by persistent id
            self.dispatch = dict(self.dispatch)
            self.dispatch[ord("Q")] = SymbolicUnpickler._binpersid
            self.dispatch[ord("P")] = SymbolicUnpickler._persid

    def _binpersid(self) -> None:
        pid = self.stack[-1] = PersId(self.stack[-1])
        self.report.persistent.append(pid)

    def _persid(self) -> None:
        pid = PersId(self.readline()[:-1].decode("ascii", "replace"))
        self.report.persistent.append(pid)
        self.append(pid)

    # ---- what the loader would import

    def on_global(self, module: str, name: str) -> Any:
        g = Global(module, name, self.lookup(module, name))
        self.report.add(module, name)
        return g

    # ---- what the loader would call

    def on_call(self, func: Any, args: Any) -> Any:
        if (
            isinstance(func, Global)
            and func.qualname in _COPYREG_NEW
            and isinstance(args, tuple)
            and args
            and isinstance(args[0], Global)
        ):
            # copyreg's helpers create an empty instance of their first argument, as NEWOBJ
            # does: the result is that class's instance (a joblib wrapper reads raw bytes next)
            if func.qualname.endswith("__newobj_ex__"):
                rest, kwargs = (args[1], args[2]) if len(args) == 3 else ((), None)
            elif func.qualname.endswith("_reconstructor"):
                rest, kwargs = (() if len(args) == 3 and args[2] is None else args[1:]), None
            else:
                rest, kwargs = args[1:], None
            return self.on_new(args[0], rest, kwargs)
        if not isinstance(func, Global):
            self.report.flag(f"calls a {_name(func)} the stream built, not an allowed function")
        elif func.entry is not None and func.entry.kind != CALL:
            self.report.flag(f"calls {func.qualname}, which may only be {func.entry.kind}ed")
        elif func.qualname in _ITERATING and isinstance(args, tuple) and args:
            self._iterated(func.qualname, args[0])
        return Call(func, args)

    def _iterated(self, qualname: str, src: Any) -> None:
        """What a container built from ``src`` iterates must be written out in the stream
        (red team E: ``set``, ``Counter``, ``bytearray`` or ``torch.Size`` of an expanded
        tensor view iterated 2**22 elements, a tensor each: 1.9 KB, 3 GiB, 14 s), and what it
        hashes must be safe keys (:meth:`_hashed`)."""
        if isinstance(src, (list, tuple, str, bytes, SymDict, SymSet)) or (
            isinstance(src, Call) and src.func_name == "_codecs.encode"
        ):
            if qualname in _HASHING:
                self._hashed(qualname, src)
            return
        self.report.flag(f"{qualname}() of a {_name(src)}, which the loader would iterate")

    def _hashed(self, qualname: str, src: Any) -> None:
        """The keys a container built from ``src`` hashes: a set's or Counter's items, a
        dict's first halves of pairs (red team: ``Counter``, ``set`` and ``OrderedDict`` of
        40,000 int pairs with one hash, 808 KB, took ``torch.load`` and ``ms.load`` 40 s)."""
        if isinstance(src, SymSet):
            src = src.items
        if not isinstance(src, (list, tuple)):
            return  # (a dict's keys were checked where it was built; strings hash safely)
        if _HASHING[qualname] == "items":
            self._keys(src)
        elif all(isinstance(p, tuple) and len(p) == 2 for p in src):
            self._keys(p[0] for p in src)
        else:
            self.report.flag(f"{qualname}() of items that are not key-value pairs")

    def on_new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if not isinstance(cls, Global):
            self.report.flag(f"creates an instance of a {_name(cls)}, not an allowed class")
        elif cls.entry is not None and cls.entry.kind != CONSTRUCT:
            self.report.flag(
                f"creates an instance of {cls.qualname}, which may not be instantiated"
            )
        elif args or kwargs:
            self.report.flag(f"passes arguments to {cls.qualname}.__new__")
        return Call(cls, args, kwargs, new=True)

    # ---- what the loader would mutate

    def _own(self, target: Any, op: str) -> bool:
        if isinstance(target, Global):
            self.report.flag(
                f"{op} on {target.qualname}, an object the file did not create "
                "(it would change it for every model in the process)"
            )
            return False
        return True

    def on_build(self, target: Any, state: Any) -> Any:
        if not self._own(target, "BUILD"):
            return target
        if not isinstance(target, Call):
            self.report.flag(f"BUILD on a plain {type(target).__name__}")
            return target
        if target.built:
            self.report.flag(f"sets the state of {target.func_name or 'an object'} twice")
        target.built = True
        target.state = state
        # how much of a dict state BUILD applies: entries the stream adds to that dict later
        # (through the memo) do not reach the object (red team: a _metadata set afterwards).
        # A count, not a copy: one dict built into 100,000 calls made copies quadratic
        target.state_size = len(state.items) if type(state) is SymDict else -1
        if self.hook is not None:
            replaced = self.hook(self, target)
            if replaced is not None:
                return replaced
        return target

    def on_setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if self._own(target, "SETITEM"):
            self._keys(k for k, _ in pairs)
            if isinstance(target, (SymDict, Call)):
                target.items.extend(pairs)
            else:
                self.report.flag(f"SETITEM on a {type(target).__name__}")

    def on_appends(self, target: Any, items: list[Any]) -> None:
        if self._own(target, "APPEND"):
            if isinstance(target, list):
                target.extend(items)
            elif isinstance(target, Call):
                target.appends.extend(items)
            else:
                self.report.flag(f"APPEND on a {type(target).__name__}")

    def on_additems(self, target: Any, items: list[Any]) -> None:
        if self._own(target, "ADDITEMS"):
            self._keys(items)
            if isinstance(target, SymSet):
                target.items.extend(items)
            elif isinstance(target, Call):
                target.appends.extend(items)
            else:
                self.report.flag(f"ADDITEMS on a {type(target).__name__}")

    def on_dict(self, pairs: list[tuple[Any, Any]]) -> Any:
        self._keys(k for k, _ in pairs)
        return SymDict(pairs)

    def on_frozenset(self, items: list[Any]) -> Any:
        self._keys(items)
        return SymSet(items, frozen=True)

    def _keys(self, keys: Any) -> None:
        keys = list(keys)
        if plain_keys(keys):
            return
        for k in keys:
            if isinstance(k, Call):
                if k.func_name not in (
                    "numpy._core.multiarray.scalar",
                    "numpy.core.multiarray.scalar",
                ):
                    self.report.flag(
                        f"a dict key built by {k.func_name or 'a call'}, whose hash cannot be checked"
                    )
            elif isinstance(k, (Global, SymDict, SymSet, PersId)) or not safe_key(k):
                self.report.flag(
                    f"a dict key or set member of type {type(k).__name__} whose hash the file controls"
                )

    def load_empty_dictionary(self) -> None:
        self.append(SymDict())

    def load_empty_set(self) -> None:
        self.append(SymSet())

    dispatch = dict(StreamReader.dispatch)
    dispatch[ord("}")] = load_empty_dictionary
    dispatch[0x8F] = load_empty_set  # EMPTY_SET

    def nested(self) -> SymbolicUnpickler:
        return SymbolicUnpickler(self.source, self.where, self.report, self.lookup, self.hook)


def analyse_source(
    source: Source,
    where: str,
    lookup: Lookup,
    *,
    on_build: BuildHook | None = None,
    persistent_ids: bool = False,
    expect_end: bool = True,
) -> PickleReport:
    """Walk one pickle stream; never raises on bad input (the report says what went wrong)."""
    from .pickle_stream import DECOMPRESS_ERRORS
    from .pickle_stream import expect_end as check_end

    report = PickleReport()
    reader = SymbolicUnpickler(source, where, report, lookup, on_build, persistent_ids)
    left = source.remaining()
    held: list[bool] = []
    try:
        hold(left is not None and left <= PAUSE_BYTES, held)  # the collector: see .._gc
        report.result = reader.load()
        report.end = source.tell()
        if expect_end:
            check_end(reader)
    except PickleStreamError as e:
        report.error = str(e)
        report.suspicious = e.kind == "suspicious"
    except DECOMPRESS_ERRORS as e:
        report.error = f"cannot decompress or read the stream: {e}"
    except (
        Exception
    ) as e:  # a refusal raised while reading (unsafe keys) or anything else: fail closed
        report.error = f"{type(e).__name__}: {str(e)[:200]}"
        report.suspicious = True
    finally:
        if held:
            del HOLDING[-1:]  # then the call, nothing in between (see .._gc)
            gc.enable()
    return report


def analyse(
    data: bytes,
    *,
    lookup: Lookup | None = None,
    persistent_ids: bool = False,
    expect_end: bool = True,
    where: str = "<bytes>",
) -> PickleReport:
    """:func:`analyse_source` over bytes in memory (a torch zip record, a test stream); the
    reader reads the buffer directly (one Python call per opcode less)."""
    return analyse_source(
        MemorySource(data),
        where,
        lookup or _nothing,
        persistent_ids=persistent_ids,
        expect_end=expect_end,
    )


def _nothing(module: str, name: str) -> Entry | None:
    return None


def mapping_items(value: Any) -> list[tuple[Any, Any]] | None:
    """The key/value pairs of a symbolic dict or OrderedDict, else None."""
    if isinstance(value, SymDict):
        return value.items
    if isinstance(value, Call) and value.func_name in ("collections.OrderedDict", "builtins.dict"):
        return value.items
    return None

"""The restricted unpickler: the one check a gated pickle load goes through, in one pass.

Built on :class:`~.pickle_stream.StreamReader` (the same reader ``scan`` uses). Its rules:

- **Globals** are looked up exactly in the allow-list (:mod:`.allowlist`), their modules
  imported only from the standard library or installed packages (:mod:`.origin`); what the
  stream gets is the listed object itself. Anything else is refused, unless the caller's
  ``trust=[...]`` names it exactly.
- **Calls** (``REDUCE``, ``INST``/``OBJ`` with arguments) only of ``call`` entries, each
  through its validator, which checks the arguments and returns a fresh object.
- **New instances** (``NEWOBJ``, ``copyreg.__newobj__``/``_reconstructor``) only of
  ``construct`` classes, created empty.
- **Mutation** (``BUILD``, ``SETITEM(S)``, ``APPEND(S)``, ``ADDITEMS``) only of objects this
  stream created, each ``BUILD`` at most once, through the state validator of the object's
  type. Nothing a lookup returned (a class, a function, a module's object) is ever mutated:
  one file cannot change how other models in the process behave.
- **Reconstructed objects of a risky kind** (dtypes, arrays, trees, neighbour trees, sparse
  matrices, random states, ...) are validated before the load returns; objects that need
  their state (a tree with no nodes) are refused if they never got it.
- **Estimators whose compiled code trusts their fitted state** are checked when the load ends,
  once every attribute is final (:mod:`.check_sklearn_fitted`): widths, counts and indices
  that must agree across attributes. A reference function of the scikit-learn allow-list may
  sit only at the attribute where scikit-learn keeps it (:mod:`.check_sklearn_places`).
- **Code the caller trusts** (``trust=[...]``) may run in the middle of the stream and use what
  is built so far, so before it runs nothing may lack its required state and every check
  registered so far must pass (:meth:`LoadState.before_trusted`).
- **Data is copied once**: an array, or the bytes or list an array is made from, may be copied
  into one object only (:meth:`LoadState.claim`), since the file stores it once.
"""

from __future__ import annotations

import operator
import types
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnsafeModelError
from . import allowlist
from .allowlist import CALL, CONSTRUCT, VALUE, Entry
from .pickle_keys import PLAIN_KEYS, check_keys
from .pickle_stream import Limits, PickleStreamError, Source, StreamReader, expect_end
from .policy import GENERAL, Policy, refusal
from .validators import build_validator, call_validator

TRUSTED = "trusted"
_OBJECT_NEW: Any = object.__new__
#: How many end-of-load checks one load may run early, before trusted code (see
#: :meth:`LoadState.before_trusted`): a file calling a trusted class thousands of times among
#: thousands of estimators would otherwise make the load quadratic.
EARLY_CHECKS = 1_000_000
#: What the allow-list's constructors may copy in one load (see :meth:`LoadState.charge`)
COPY_FACTOR = 32
COPY_FLOOR = 64 << 20
_first = operator.itemgetter(0)
_NOT_MUTABLE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.GetSetDescriptorType,
)


@dataclass
class LoadState:
    """What one load knows, shared by the nested readers of one file (joblib object arrays)."""

    where: str
    policy: Policy
    trusted: frozenset[str]
    limits: Limits
    #: id -> entry of every object a lookup returned (kept alive by the entries' modules)
    external: dict[int, Entry] = field(default_factory=dict)
    #: id -> object created by the stream that may still receive its one BUILD
    buildable: dict[int, Any] = field(default_factory=dict)
    #: id -> object that must have received its BUILD by the end of the load
    required: dict[int, Any] = field(default_factory=dict)
    #: ids of objects whose state is final (built, or used by another object)
    sealed: set[int] = field(default_factory=set)
    finals: list[Callable[[], None]] = field(default_factory=list)
    #: id -> the owner of data an object copied (see :meth:`claim`), held so ids stay unique
    copied: dict[int, Any] = field(default_factory=dict)
    #: end-of-load checks run so far for trusted code running mid-stream (see :meth:`before_trusted`)
    early_checks: int = 0
    #: bytes the allow-list's constructors copied (see :meth:`charge`), and the stream's position
    copies: int = 0
    position: Callable[[], int] = field(default=lambda: 0)
    #: kind -> (check, objects): end-of-load checks that see every object of a kind at once
    batches: dict[str, tuple[Callable[[LoadState, list[Any]], None], list[Any]]] = field(
        default_factory=dict
    )

    # ---- used by validators

    def refuse(self, what: str) -> UnsafeModelError:
        return UnsafeModelError(
            f"{self.where}: refusing to load: {what}. Nothing from the file was "
            "executed; the file is damaged or crafted",
            [],
        )

    def entry_of(self, obj: Any) -> Entry | None:
        return self.external.get(id(obj))

    def is_value(self, obj: Any, target: str) -> bool:
        """Whether ``obj`` is the allow-listed object whose home is ``target`` ("module:name")."""
        entry = self.external.get(id(obj))
        return entry is not None and ":".join(entry.target) == target

    def expect_build(self, obj: Any, *, required: bool = False) -> Any:
        self.buildable[id(obj)] = obj
        if required:
            self.required[id(obj)] = obj
        return obj

    def seal(self, obj: Any) -> None:
        """``obj`` is now used by something: its state may not change any more."""
        self.buildable.pop(id(obj), None)
        self.sealed.add(id(obj))

    def complete(self, obj: Any, what: str) -> None:
        """Refuse ``obj`` if it still lacks a required state; else seal it (as :meth:`seal`,
        inline: arrays and dtypes are completed once per use)."""
        key = id(obj)
        if key in self.required:
            raise self.refuse(f"{what} is used before its state was set")
        self.buildable.pop(key, None)
        self.sealed.add(key)

    def final(self, check: Callable[[], None]) -> None:
        self.finals.append(check)

    def claim(self, data: Any, what: str) -> None:
        """``data`` (an array, or the bytes or list an array is made from) is copied into one
        object. Its owner (followed through ``.base`` and memoryviews: arrays over one memo-
        shared bytes object have one owner) may not be copied again, since the file stores it
        once: a 1 MB buffer shared by thousands of trees through the memo would fill memory."""
        owner = data
        while getattr(owner, "base", None) is not None:
            owner = owner.base
        if isinstance(owner, memoryview):
            owner = owner.obj
        if id(owner) in self.copied:
            raise self.refuse(
                f"{what} made from data the file already used for another object (each object "
                "copies it: a small file could fill memory; no real model shares it)"
            )
        self.copied[id(owner)] = owner

    def charge(self, nbytes: int, what: str) -> None:
        """An allowed constructor copies ``nbytes`` of what the stream built (``list(x)``,
        ``bytes(x)``, ...). Through the memo one stored object can be copied thousands of
        times (1.9 MB made 15 GB), so all copies together may not exceed COPY_FACTOR times the
        stream read so far, plus COPY_FLOOR: a real pickle copies each container about once."""
        self.copies += nbytes
        if self.copies > COPY_FLOOR + COPY_FACTOR * self.position():
            raise self.refuse(
                f"{what} copies more than {COPY_FACTOR} times the bytes the stream has stored so "
                "far, all copies together (one object copied over and over through the memo)"
            )

    def before_trusted(self) -> None:
        """Code the caller trusts is about to run in the middle of the stream, and may use
        anything built so far: nothing may still lack its required state, and every check
        registered so far must pass now (all run again when the load ends, since the stream
        may still change lists and dicts). Refused past EARLY_CHECKS check runs in one load."""
        if self.required:
            obj = next(iter(self.required.values()))
            raise self.refuse(
                f"trusted code would run while a {type(obj).__qualname__} still lacks its state"
            )
        self.early_checks += len(self.finals) + sum(len(o) for _, o in self.batches.values())
        if self.early_checks > EARLY_CHECKS:
            raise self.refuse(
                f"the stream runs trusted code so often among checked objects that checking "
                f"before each run would take over {EARLY_CHECKS:,} checks; load it with "
                "trust=True only if you trust the whole file"
            )
        for batch_check, objs in self.batches.values():
            batch_check(self, objs)
        for check in self.finals:
            check()

    def batch(self, kind: str, check: Callable[[LoadState, list[Any]], None], obj: Any) -> None:
        """Have ``check`` see ``obj`` when the load ends, with every other object of ``kind``
        (before the other end-of-load checks, which may rely on it)."""
        self.batches.setdefault(kind, (check, []))[1].append(obj)

    def finish(self, root: Any = None) -> None:
        """End of the load: every required state set, every end-of-load check passed, and
        reference functions only where their models keep them (walked from ``root``)."""
        if self.required:
            obj = next(iter(self.required.values()))
            raise self.refuse(f"a {type(obj).__qualname__} never received its state")
        for batch_check, objs in self.batches.values():
            batch_check(self, objs)
        for check in self.finals:
            check()
        if any(e.module.startswith("sklearn.") for e in self.external.values()):
            from .check_sklearn_places import check_placements

            check_placements(self, root)


class RestrictedUnpickler(StreamReader):
    """Load one pickle stream with the rules in this module's docstring."""

    def __init__(self, source: Source, state: LoadState) -> None:
        super().__init__(source, state.where)
        self.state = state

    # ---- globals

    def on_global(self, module: str, name: str) -> Any:
        st = self.state
        entry = st.policy.entry(module, name)
        if entry is None:
            key = f"{module}.{name}"
            if key in st.trusted:
                obj = st.policy.resolve_trusted(module, name, st.where)
                entry = Entry(module, name, TRUSTED, "named in the caller's trust=[...]")
            else:
                raise refusal(st.where, [(module, name)])
        else:
            obj = st.policy.resolve(entry, st.where)
        st.external[id(obj)] = entry
        return obj

    # ---- calls and new instances

    def on_call(self, func: Any, args: Any) -> Any:
        st = self.state
        entry = st.external.get(id(func))
        if entry is None:
            raise st.refuse(
                f"the stream calls a {type(func).__name__} it built itself, not an allowed function"
            )
        if not isinstance(args, tuple):
            raise PickleStreamError("REDUCE arguments are not a tuple")
        kind = entry.kind
        if kind == CALL:  # the usual case first (the kinds are distinct)
            result = call_validator(entry)(st, func, args)
        elif kind == TRUSTED:
            st.before_trusted()
            result = func(*args)
        elif kind == CONSTRUCT:
            raise st.refuse(
                f"{entry.key} is only ever created empty and filled by its state, "
                "but the stream calls it with arguments"
            )
        else:
            raise st.refuse(f"{entry.key} may only be referred to, but the stream calls it")
        if id(result) in st.external or isinstance(result, _NOT_MUTABLE):
            raise st.refuse(f"{entry.key} returned a shared object ({type(result).__name__})")
        return result

    def on_new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        st = self.state
        entry = st.external.get(id(cls))
        if entry is None or not isinstance(cls, type):
            raise st.refuse(
                f"the stream creates an instance of a {type(cls).__name__} that is not an allowed class"
            )
        if entry.kind == TRUSTED:
            if cls.__new__ is not _OBJECT_NEW:  # the class's own code runs
                st.before_trusted()
            obj = cls.__new__(cls, *args, **(kwargs or {}))
        elif entry.kind != CONSTRUCT:
            raise st.refuse(f"{entry.key} may not be instantiated by the stream")
        elif args or kwargs:
            raise st.refuse(
                f"{entry.key} is created with arguments to __new__, which it never needs"
            )
        else:
            obj = cls.__new__(cls)
        return st.expect_build(obj)

    # ---- mutation of the stream's own objects

    def _own(self, target: Any, op: str) -> None:
        if id(target) in self.state.external or isinstance(target, _NOT_MUTABLE):
            what = getattr(target, "__qualname__", type(target).__qualname__)
            raise self.state.refuse(
                f"{op} on {what}, an object the file did not create (it would "
                "change it for every model in this process)"
            )

    def _trusted_code(self, target: Any) -> None:
        """A container subclass's own method is about to run: the stdlib's allowed ones
        (``OrderedDict``, ``defaultdict``) are safe; a trusted class's is the caller's code,
        which may use anything built so far."""
        entry = self.state.external.get(id(type(target)))
        if entry is not None and entry.kind == TRUSTED:
            self.state.before_trusted()

    def on_build(self, target: Any, state: Any) -> Any:
        st = self.state
        key = id(target)
        if key in st.external or isinstance(target, _NOT_MUTABLE):
            self._own(target, "BUILD")  # refuses
        if key not in st.buildable:
            built = "a second time" if key in st.sealed else "on an object that takes no state"
            raise st.refuse(f"the stream sets the state of a {type(target).__qualname__} {built}")
        del st.buildable[key]
        st.required.pop(key, None)
        if st.trusted and getattr(type(target), "__setstate__", None) is not None:
            entry = st.external.get(id(type(target)))
            if entry is not None and entry.kind == TRUSTED:  # its own __setstate__ runs
                st.before_trusted()
        result = build_validator(type(target))(self, target, state)
        st.sealed.add(key)
        return result

    def on_setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if type(target) is dict and id(target) not in self.state.external:
            # the usual case, what the general path below does for it: a plain dict is no
            # _NOT_MUTABLE type, and plain keys are what check_keys passes without a look
            keys = list(map(_first, pairs))
            if not set(map(type, keys)) <= PLAIN_KEYS:
                check_keys(keys, self.where)
            target.update(pairs)  # in order, as SETITEM by SETITEM
            return
        self._own(target, "SETITEM")
        if not isinstance(target, dict):
            raise self.state.refuse(
                f"SETITEM on a {type(target).__qualname__}, which is not a dict"
            )
        check_keys(map(_first, pairs), self.where)
        if type(target) is not dict and type(target).__setitem__ is not dict.__setitem__:
            self._trusted_code(target)
        if type(target) is dict:
            target.update(pairs)  # in order, as SETITEM by SETITEM
        else:  # a subclass's own __setitem__ (OrderedDict's, Counter's) as the stdlib calls it
            for k, v in pairs:
                target[k] = v

    def on_appends(self, target: Any, items: list[Any]) -> None:
        self._own(target, "APPEND")
        if type(target) is deque:  # deque's reduce fills it by APPENDS (its own C extend)
            target.extend(items)
            return
        if not isinstance(target, list):
            raise self.state.refuse(f"APPEND on a {type(target).__qualname__}, which is not a list")
        if type(target) is not list and type(target).extend is not list.extend:
            self._trusted_code(target)
        target.extend(items)

    def on_additems(self, target: Any, items: list[Any]) -> None:
        self._own(target, "ADDITEMS")
        if not isinstance(target, set):
            raise self.state.refuse(
                f"ADDITEMS on a {type(target).__qualname__}, which is not a set"
            )
        check_keys(items, self.where)
        target.update(items)

    def nested(self) -> RestrictedUnpickler:
        """A reader for a pickle that follows inline in the same file (joblib object arrays)."""
        return RestrictedUnpickler(self.source, self.state)


def restricted_load(
    source: Source,
    where: str,
    *,
    trusted: Collection[str] = (),
    policy: Policy = GENERAL,
    limits: Limits | None = None,
) -> Any:
    """Load the one pickle in ``source`` under the allow-list ``policy`` plus ``trusted``
    (exact ``"module.name"`` strings from the caller). Raises UnsafeModelError for anything
    refused, PickleStreamError for a malformed stream."""
    state = LoadState(where, policy, frozenset(trusted), limits or Limits.from_env())
    reader = RestrictedUnpickler(source, state)
    state.position = source.tell
    obj = reader.load()
    expect_end(reader)
    state.finish(obj)
    return obj


__all__ = ["LoadState", "RestrictedUnpickler", "restricted_load", "TRUSTED", "VALUE", "allowlist"]

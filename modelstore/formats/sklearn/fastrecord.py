"""What ``inspect`` will read back, recorded while :mod:`.fastdump` writes a joblib file.

Globals (in order of first use) and the state of every object come from the C pickler's
``reducer_override``, which is called once per object it reduces, in stream order: it does
what the pickler would (copyreg's dispatch table, else ``__reduce_ex__``) and records the
result. Array paths come from :func:`walk`, which goes over what was reduced the way the
pickler did (memo included) and must meet the arrays in exactly the order the pickler's
``persistent_id`` did, else the description is dropped and ``inspect`` scans the file.
"""

from __future__ import annotations

import copyreg
import pickle
import types
from typing import Any

from .record import _NEWOBJ, Recorded, _global_name, reduced_name

#: types the C pickler writes itself, with nothing below them for the walk
_LEAVES = (type(None), bool, int, float, str, bytes, bytearray, pickle.PickleBuffer)
#: dict keys the scan names a path after (a str or int subclass is a call in the stream)
_KEYS = (str, int, bool)
#: types whose pickling is ``type(None)``-style: saved as a call of ``builtins.type``
_SPECIAL_TYPES = (type(None), type(NotImplemented), type(...))


class Recorder:
    """Globals in order of first use and the reduction of every object, from the hooks."""

    def __init__(self, rec: Recorded, protocol: int) -> None:
        self.rec = rec
        self.protocol = protocol
        #: id(obj) -> (obj, reduce value as pickled); obj kept alive so ids stay unique
        self.reduced: dict[int, tuple[Any, Any]] = {}
        self._names: dict[Any, str | None] = {}

    def override(self, obj: Any) -> Any:
        """``reducer_override``: what the C pickler would do, recorded on the way."""
        t = type(obj)
        reduce = None
        if t is not type and t is not types.FunctionType:
            reduce = copyreg.dispatch_table.get(t)  # the pickler asks after those two only
        if reduce is None and (isinstance(obj, type) or t is types.FunctionType):
            self.rec.globals["builtins.type" if obj in _SPECIAL_TYPES else _global_name(obj)] = None
            return NotImplemented
        rv = reduce(obj) if reduce is not None else obj.__reduce_ex__(self.protocol)
        if isinstance(rv, str):
            self.rec.globals[_global_name(obj, rv)] = None
            return rv
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
            return rv  # the pickler raises its own error for it
        func, args, state, listitems, dictitems = (*rv, None, None, None)[:5]
        if state is not None and (listitems is not None or dictitems is not None):
            self.rec.exact = False  # written items-then-state, walked state-then-items
        if len(rv) == 6 and rv[5] is not None:
            self.rec.exact = False  # the state goes to a setter call, where the scan does not look
        if listitems is not None:
            listitems = list(listitems)
        if dictitems is not None:
            dictitems = list(dictitems)
        made = func if getattr(func, "__name__", "") not in _NEWOBJ or not args else args[0]
        name: str | None
        try:
            name = self._names[made]
        except (KeyError, TypeError):
            name = reduced_name(func, args)
            try:
                self._names[made] = name
            except TypeError:
                pass
        self.rec.objects[id(obj)] = (name, state)
        rv = (
            func,
            args,
            state,
            None if listitems is None else iter(listitems),
            None if dictitems is None else iter(dictitems),
            *rv[5:],
        )
        self.reduced[id(obj)] = (obj, (func, args, state, listitems, dictitems))
        return rv


class _Unlike(Exception):
    """The walk cannot name the paths the scan would: describe by scanning instead."""


def walk(root: Any, reduced: dict[int, tuple[Any, Any]], arrays: tuple[type, ...]) -> Any:
    """Every array in the order the pickler met it, with the path ``inspect``'s walker gives
    it (None where that walker does not go: dict keys, call arguments, set members); None when
    the scan would name paths this walk cannot (see :class:`_Unlike`)."""
    found: list[tuple[Any, list[Any] | None]] = []
    memo: set[int] = set()
    holding: set[int] = set()  # memoised objects with an array below them (memo hits included)
    unwalked: set[int] = set()  # of those, the ones met first where the scan's walker does not go
    made: list[Any] = []  # tuples made here stay alive: their ids are in memo
    leaves = _LEAVES

    def items(pairs: Any, keys: list[Any] | None) -> bool:
        held = False
        for k, v in pairs:
            if type(k) not in leaves:
                held = visit(k, None) or held
            if type(v) not in leaves:
                walked = keys is not None and type(k) in _KEYS
                held = visit(v, [*keys, k] if walked else None) or held  # type: ignore[misc]
        return held

    def visit(obj: Any, keys: list[Any] | None) -> bool:
        """Whether an array is below ``obj`` (through memo references too)."""
        t = type(obj)
        if t in arrays:
            found.append((obj, keys))
            return True
        if t in leaves:
            return False
        i = id(obj)
        if i in memo:
            if keys is not None and i in unwalked:
                # arrays met first in a call argument or key, then where the scan walks: the
                # scan follows the memo reference and names paths there; this walk does not
                raise _Unlike
            return i in holding
        held = visit_new(obj, t, i, keys)
        if held:
            holding.add(i)
            if keys is None:
                unwalked.add(i)
        return held

    def visit_new(obj: Any, t: type, i: int, keys: list[Any] | None) -> bool:
        if t is dict or t is list or t is set:
            memo.add(i)  # memoised before its items
            pairs = obj.items() if t is dict else enumerate(obj) if t is list else None
            return (
                items(pairs, keys) if pairs is not None else items(((None, v) for v in obj), None)
            )
        if t is tuple or t is frozenset:
            pairs = enumerate(obj) if t is tuple else ((None, v) for v in obj)
            held = items(pairs, keys if t is tuple else None)
            if i in memo:
                raise _Unlike  # recursive: the pickler drops this copy and fetches the memoised one
            if obj:
                memo.add(i)  # memoised after its items
            return held
        entry = reduced.get(i)
        if entry is None:
            return False  # a global, or an object the pickler wrote by name
        func, args, state, listitems, dictitems = entry[1]
        name = getattr(func, "__name__", "")
        if name == "__newobj__" and args:
            made.append(tuple(args[1:]))  # the pickler saves this slice as a new tuple
            held = visit(args[0], None) | visit(made[-1], None)
        elif name == "__newobj_ex__" and len(args) == 3:
            held = visit(args[0], None) | visit(args[1], None) | visit(args[2], None)
        else:
            held = visit(func, None) | visit(args, None)
        if i in memo:
            raise _Unlike  # inside its own arguments: the pickler drops this copy too
        memo.add(i)
        if listitems:
            held = items(enumerate(listitems), keys) or held
        if dictitems:
            held = items(dictitems, keys) or held
        if state is not None:
            held = visit(state, keys) or held
        return held

    try:
        visit(root, [])
    except _Unlike:
        return None
    return found

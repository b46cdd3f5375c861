"""Which entries of a Keras ``DTypePolicyMap`` may apply to a layer, from the config alone.

Keras looks a layer's dtype policy up by ``layer.path``: an entry whose key equals the path,
else the one key that ``re.fullmatch``es it, else the map's default. The path is the layer's
name, or its name under scopes that differ with the format and the nesting (a loaded
``.keras`` gives ``s1``, the same model as ``.h5`` ``topseq/s1``), so here every scope is
possible: :func:`may_resolve` tells whether an accepted key (:func:`.kerasregex.key_problem`)
equals or may fullmatch ``name`` or ``<anything>/name``, and :func:`covers_every_path`
whether a key leaves the default no path. :mod:`.kerasquant` charges a layer the costliest
entry that may apply.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, NamedTuple

from .kerasregex import _REPEATS, key_problem

try:  # Python 3.11+ (``re``'s own parser and compiler: a key is parsed, never compiled whole;
    # only its one-character sets are, to test characters against them)
    _c: Any = importlib.import_module("re._constants")
    _parser: Any = importlib.import_module("re._parser")
    _compiler: Any = importlib.import_module("re._compiler")
except ImportError:  # pragma: no cover - Python 3.10
    _c = importlib.import_module("sre_constants")
    _parser = importlib.import_module("sre_parse")
    _compiler = importlib.import_module("sre_compile")

#: Character tests one analysis of a key against a layer name may take (attacker-sized keys
#: and names only come near it; past it the caller refuses).
ANALYSIS_STEPS = 200_000
#: Character tests the analysis of one config's policy maps may take in all (~0.5 s here).
MAP_BUDGET = 2_000_000
_NO_LIMIT = _c.MAXREPEAT
#: The test of ``.``.
ANY = object()


class KeyShape(NamedTuple):
    """An accepted key (:func:`key_problem`) as Keras' matcher sees it: one-character tests,
    then at most one repeated test ``lo`` to ``hi`` times (``hi`` None: no limit). A test is
    the character itself or a compiled one-character pattern."""

    fixed: tuple[Any, ...]
    tail: Any
    lo: int
    hi: int | None


def key_shape(key: str) -> KeyShape | None:
    """``key`` as :class:`KeyShape`, or None for a key not in the accepted form."""
    return None if key_problem(key) else _shape(key)


@functools.lru_cache(maxsize=1024)
def _shape(key: str) -> KeyShape:
    parsed = _parser.parse(key)
    tests: list[Any] = []
    tail: Any = None
    lo: int = 0
    hi: int | None = 0  # (no repetition: nothing more)
    for op, av in parsed:
        if op in _REPEATS:
            lo, top, body = av
            hi = None if top == _NO_LIMIT else top
            tail = _test(parsed, body[0])
        else:
            tests.append(_test(parsed, (op, av)))
    return KeyShape(tuple(tests), tail, lo, hi)


def _test(parsed: Any, item: tuple[Any, Any]) -> Any:
    """The character (a literal), :data:`ANY` (``.``: any but a newline) or a :class:`_Set`
    (the rest: a set, or any character but one)."""
    op, av = item
    if op == _c.LITERAL:
        return chr(av)
    if op == _c.ANY:
        return ANY
    pattern = _compiler.compile(_parser.SubPattern(parsed.state, [item]), parsed.state.flags)
    return _Set(pattern, op != _c.IN or _some(av))


class _Set(NamedTuple):
    pattern: Any
    some: bool  # whether any character may pass (False: none can)


def _ok(test: Any, ch: str) -> bool:
    if type(test) is str:
        return test == ch
    return ch != "\n" if test is ANY else test.pattern.fullmatch(ch) is not None


def _some(items: list[tuple[Any, Any]]) -> bool:
    """Whether a character set may match a character: one that is not negated and lists
    anything does; a negated one does unless it names a category and its opposite or every
    code point (an empty set counted as matching is the stricter mistake here)."""
    if not items or items[0][0] != _c.NEGATE:
        return bool(items)
    cats = {av for op, av in items if op == _c.CATEGORY}
    ranges = [av for op, av in items if op == _c.RANGE]
    full = any(lo == 0 and hi >= 0x10FFFF for lo, hi in ranges)
    return not full and not any(a in cats and b in cats for a, b in _OPPOSITES)


_OPPOSITES = [
    (getattr(_c, f"CATEGORY_{a}"), getattr(_c, f"CATEGORY_NOT_{a}"))
    for a in ("DIGIT", "SPACE", "WORD")
]


def may_resolve(key: str, name: str) -> bool | None:
    """Whether Keras can resolve the policy-map ``key`` for a layer named ``name``, whose path
    is ``name`` or ``<scopes>/name`` (``name_scope`` refuses a ``/`` in a name; the scopes are
    not followed here): the key equals such a path, or fullmatches one. None where the key is
    not in the accepted form or the analysis would take over :data:`ANALYSIS_STEPS`."""
    return _may_resolve(key, name, ANALYSIS_STEPS)[0]


def _may_resolve(key: str, name: str, budget: int) -> tuple[bool | None, int]:
    """:func:`may_resolve` within ``budget`` character tests, and the tests it took."""
    steps = 2 * len(name) + len(key) + 1
    if key == name or key.endswith("/" + name):
        return True, steps
    shape = key_shape(key)
    if shape is None or steps > budget:
        return None, steps
    if _fullmatches(shape, name):
        return True, steps
    suffix = "/" + name
    fixed, tail, lo, hi = shape
    m, n = len(fixed), len(suffix)
    r = 0  # trailing characters of the suffix the repeated test passes
    while tail is not None and r < n and _ok(tail, suffix[n - 1 - r]):
        r += 1
    top = 0 if tail is None else min(r, n, n if hi is None else hi)
    for j in range(max(0, n - m), top + 1):  # j: the suffix's characters the repetition takes
        steps += m
        if steps > budget:
            return None, steps
        if j == n:  # all of it; the scopes before take every fixed test and any more repeats
            if all(_any(t) for t in fixed):
                return True, steps
            continue
        if j < lo:
            continue
        k = n - j  # the fixed tests' last k take the suffix's first k characters
        head, end = fixed[: m - k], fixed[m - k :]
        if all(_ok(t, c) for t, c in zip(end, suffix)) and all(_any(t) for t in head):
            return True, steps
    return False, steps


class MapScope:
    """What the policy-map analysis of one config may know and spend: whether a layer name
    anywhere in it holds a newline (``.*`` does not match past one), and at most
    :data:`MAP_BUDGET` character tests in all (past it, every entry counts: the stricter
    charge)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.left = MAP_BUDGET
        self._newline: bool | None = None

    def newline(self) -> bool:
        if self._newline is None:
            self._newline = names_with_newline(self.root)
        return self._newline

    def may_resolve(self, key: Any, name: str) -> bool | None:
        if not isinstance(key, str) or self.left <= 0:
            return None
        found, steps = _may_resolve(key, name, min(self.left, ANALYSIS_STEPS))
        self.left -= steps
        return found


def _any(test: Any) -> bool:
    return type(test) is str or test is ANY or test.some


def _fullmatches(shape: KeyShape, text: str) -> bool:
    fixed, tail, lo, hi = shape
    m, extra = len(fixed), len(text) - len(fixed)
    if extra < lo or (hi is not None and extra > hi) or (tail is None and extra):
        return False
    if not all(_ok(t, c) for t, c in zip(fixed, text)):
        return False
    return all(_ok(tail, c) for c in text[m:])


def covers_every_path(key: Any) -> bool:
    """Whether ``key`` fullmatches every path without a newline: ``.*`` or ``.+``."""
    shape = key_shape(key) if isinstance(key, str) else None
    return (
        shape is not None
        and not shape.fixed
        and shape.tail is ANY
        and shape.lo <= 1
        and shape.hi is None
    )


def names_with_newline(root: Any) -> bool:
    """Whether a layer anywhere in ``root`` has a newline in its name (``.`` does not match it)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            cfg = node.get("config")
            name = cfg.get("name") if isinstance(cfg, dict) else None
            if isinstance(name, str) and "\n" in name:
                return True
            stack.extend(node.values())
    return False

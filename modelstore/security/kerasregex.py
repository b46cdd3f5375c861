"""Regular expressions a Keras file chooses and Keras matches against layer and variable paths.

Three places in a Keras config hold patterns that Keras matches against paths it builds from
the layer names the file also chooses:

- a ``DTypePolicyMap``'s ``policy_map`` keys: ``re.fullmatch(key, layer.path)`` for every key
  on every lookup of a layer's ``compute_dtype``, ``variable_dtype`` or ``quantization_mode``
  (about 10 per layer while the model loads, 6 per layer on every ``predict``);
- an ``OptimizerMap``'s ``optimizer_map`` keys (``MultiOptimizer``): the same, per variable,
  when the optimizer is built, which a compiled model's load does;
- ``Muon(exclude_layers=[...])``: ``re.search(keyword, variable.path)`` per 2-D variable at
  build.

Python's regular expressions backtrack, and compiling one can cost more than matching it. Red
team, pass 17: ``(a|aa)*c`` against a layer named with 30 ``a``s took plain Keras and
``ms.load`` 1.3 s, about 1.6x more per further ``a``; ``(?i).*a{20000}b`` against a 40,000
character name, quadratic, 188 s; 64 keys of 200 character sets spanning Unicode, 25 s of
compiling. So a key is accepted only in the form Keras documents (``"encoder/layer_0/dense"``,
``"encoder/.*"``): characters, ``.`` and small character sets, each matching one character,
then at most one repetition of one such item, at the end (:func:`key_problem`; a ``Muon``
keyword only plain characters, since ``re.search`` tries every start). Such a key fails or
matches in one pass over the path. What all of them cost together, with the longest layer
path the config can give, must stay within :data:`BUDGET` character steps
(:class:`PathPatterns`).
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

from .kerasgraph import INNER, unfolded_calls

try:  # Python 3.11+ (the parser ``re.compile`` itself uses; nothing is compiled here)
    _c: Any = importlib.import_module("re._constants")
    _parser: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _c = importlib.import_module("sre_constants")
    _parser = importlib.import_module("sre_parse")

#: The most distinct patterns one config may hold, all holders together: well within the 512
#: compiled patterns Python's ``re`` keeps (past that, every lookup compiles every key again:
#: red team, pass 18, 0.7 s per lookup for 1,024 keys), characters per key, and keywords one
#: ``Muon`` may list.
MAX_KEYS = 256
MAX_KEY_LENGTH = 1024
MAX_KEYWORDS = 64
#: Code points the character sets of one key may span in all (compiling a set costs as many).
MAX_SET_SPAN = 1024
#: What all the patterns of one config may cost Keras while it loads the model, in character
#: steps (a step is a few nanoseconds; each match is priced :data:`PER_MATCH` steps more).
BUDGET = 500_000_000
PER_MATCH = 200
#: Lookups of one pattern holder, at most, per layer and per call of a layer in the config
#: (a layer looks its dtype up ~10 times while built, ~4 per call, and a shared layer is
#: called once per inbound node; an optimizer map once per variable, a few per layer).
LOOKUPS_PER_LAYER = 10
#: The longest string an op's recorded arguments may hold (``Rearrange`` splits its pattern
#: with regular expressions that are quadratic in runs of spaces or brackets: pass 18).
MAX_ARG_STRING = 1024

#: canonical class -> (its config key that holds the patterns, "fullmatch" or "search")
HOLDERS = {
    "keras.dtype_policies.DTypePolicyMap": ("policy_map", "fullmatch"),
    "keras.optimizers.OptimizerMap": ("optimizer_map", "fullmatch"),
    "keras.optimizers.Muon": ("exclude_layers", "search"),
}
_ONE = {_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}


class PathPatterns:
    """The patterns of one config, and what matching them all may cost Keras."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.longest: int | None = None  # the longest layer path the config can give
        self.lookups = 0  # lookups of one holder, at most
        self.steps = 0
        self.seen: set[str] = set()

    def problem(self, target: str, cfg: Any) -> str | None:
        """Why the patterns of this ``target`` node (one of :data:`HOLDERS`) are refused."""
        key, how = HOLDERS[target]
        patterns = cfg.get(key) if isinstance(cfg, dict) else None
        if patterns is None:
            return None
        if how == "search":
            if not isinstance(patterns, list) or len(patterns) > MAX_KEYWORDS:
                return f"{key} must be a list of at most {MAX_KEYWORDS} layer-name keywords"
        elif not isinstance(patterns, dict) or "class_name" in patterns:
            return f"a {key} that is not a plain mapping of layer paths"
        elif len(patterns) > MAX_KEYS:
            return f"a {key} of {len(patterns):,} keys (at most {MAX_KEYS:,} are accepted)"
        if self.steps > BUDGET or len(self.seen) > MAX_KEYS:
            return None  # (already refused: one finding is enough)
        for pattern in patterns:
            why = key_problem(pattern, literal=how == "search")
            if why:
                return f"the {key} pattern {str(pattern)[:80]!r}: {why}"
        self.seen.update(patterns)
        if len(self.seen) > MAX_KEYS:
            return f"over {MAX_KEYS} distinct patterns in the model (its {key} holds {len(patterns):,})"
        if not patterns:
            return None
        if self.longest is None:
            self.longest, self.lookups = longest_path(self.root)
        runs = 1 if how == "search" else 2  # (a search runs over the path once)
        per_lookup = sum(
            len(p) + PER_MATCH + runs * self.longest * _reaches_end(p, how) for p in patterns
        )
        self.steps += self.lookups * per_lookup
        if self.steps > BUDGET:
            return (
                f"its patterns ({len(patterns):,}, with layer paths of up to {self.longest:,} "
                f"characters and up to {self.lookups:,} lookups) would cost Keras over "
                f"{BUDGET:,} steps of matching per load"
            )
        return None


def _reaches_end(pattern: str, how: str) -> int:
    """1 if matching the (accepted) pattern may run over the whole path: a search, or a
    repetition at the end."""
    return 1 if how == "search" or pattern.endswith(("*", "+", "?", "}")) else 0


def key_problem(key: Any, *, literal: bool = False) -> str | None:
    """Why ``key`` is not in the accepted form (characters and small sets, then at most one
    repetition of one of them, at the end; ``literal``: plain characters only), or None."""
    if not isinstance(key, str):
        return "not a string"
    return _problem(key, literal)


@functools.lru_cache(maxsize=4096)
def _problem(key: str, literal: bool) -> str | None:
    if len(key) > MAX_KEY_LENGTH:
        return f"{len(key):,} characters (at most {MAX_KEY_LENGTH:,} are accepted)"
    try:
        parsed = _parser.parse(key)
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        return f"not a regular expression Python reads ({e})"
    if parsed.state.flags & ~(re.UNICODE | re.ASCII):  # (?i), (?s), (?x) ...
        return "an inline flag"
    items = list(parsed)
    span = 0
    for i, (op, av) in enumerate(items):
        if literal and op != _c.LITERAL:
            return "a special character (a keyword is matched anywhere in a path: plain text only)"
        if op in _REPEATS:
            body = list(av[2])  # (min, max, what repeats)
            if i != len(items) - 1:
                return "a repetition that is not the last item (it can backtrack)"
            if len(body) != 1 or body[0][0] not in _ONE:
                return "a repetition of more than one character (it can backtrack)"
            op, av = body[0]
        elif op not in _ONE:
            return f"a construct that is not accepted in a path pattern ({op})"
        if op == _c.IN:
            span += _set_span(av)
            if span > MAX_SET_SPAN:
                return f"character sets spanning over {MAX_SET_SPAN:,} characters"
    return None


def _set_span(items: Any) -> int:
    """Code points a character set's ranges cover (its literals and classes count 1)."""
    return sum(av[1] - av[0] + 1 if op == _c.RANGE else 1 for op, av in items)


def longest_path(root: Any) -> tuple[int, int]:
    """An upper bound of every layer path Keras can make from ``root`` (the longest chain of
    nested layer names, each with its separator), and of the lookups of one pattern holder
    (:data:`LOOKUPS_PER_LAYER` for the model, each layer listed or wrapped, each inbound
    node, and each layer call of the model unfolded: :func:`.kerasgraph.unfolded_calls`)."""
    longest = objects = 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, length = stack.pop()
        if isinstance(node, list):
            stack.extend((item, length) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        cfg = node.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) and "class_name" in node else None
        if isinstance(name, str):
            length += len(name) + 1
            longest = max(longest, length)
        layers = node.get("layers")
        calls = node.get("inbound_nodes")
        objects += len(layers) if isinstance(layers, list) else 0
        objects += len(calls) if isinstance(calls, (list, dict)) else 0
        objects += sum(isinstance(node.get(k), dict) for k in INNER)
        stack.extend((value, length) for value in node.values())
    # a nested model's layers run once per call of it when Keras traces the model (pass 19)
    return longest, LOOKUPS_PER_LAYER * (1 + objects + unfolded_calls(root)[1])


def longest_string(value: Any) -> int:
    """The longest string anywhere in ``value`` (an op's recorded arguments)."""
    longest = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if isinstance(k, str))
        elif isinstance(item, list):
            stack.extend(item)
    return longest

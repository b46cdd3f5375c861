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

import importlib
import re
from typing import Any

try:  # Python 3.11+ (the parser ``re.compile`` itself uses; nothing is compiled here)
    _c: Any = importlib.import_module("re._constants")
    _parser: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _c = importlib.import_module("sre_constants")
    _parser = importlib.import_module("sre_parse")

#: The most keys one map may hold, characters per key, and keywords one ``Muon`` may list.
MAX_KEYS = 1024
MAX_KEY_LENGTH = 1024
MAX_KEYWORDS = 64
#: Code points the character sets of one key may span in all (compiling a set costs as many).
MAX_SET_SPAN = 1024
#: Character steps all the patterns of one config may cost Keras while it loads the model
#: (about 10 lookups per layer; a step is a few nanoseconds).
BUDGET = 200_000_000
LOOKUPS_PER_LAYER = 10

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
        self.steps = 0

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
        for pattern in patterns:
            why = key_problem(pattern, literal=how == "search")
            if why:
                return f"the {key} pattern {str(pattern)[:80]!r}: {why}"
        if not patterns:
            return None
        if self.longest is None:
            self.longest = longest_path(self.root)
        widest = max(len(p) for p in patterns)
        self.steps += LOOKUPS_PER_LAYER * len(patterns) * (widest + 2 * self.longest)
        if self.steps > BUDGET:
            return (
                f"its patterns ({len(patterns):,} of up to {widest:,} characters, with layer "
                f"paths of up to {self.longest:,}) would cost Keras over {BUDGET:,} steps of "
                "matching per load"
            )
        return None


def key_problem(key: Any, *, literal: bool = False) -> str | None:
    """Why ``key`` is not in the accepted form (characters and small sets, then at most one
    repetition of one of them, at the end; ``literal``: plain characters only), or None."""
    if not isinstance(key, str):
        return "not a string"
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


def longest_path(root: Any) -> int:
    """An upper bound of every layer path Keras can make from ``root``: the longest chain of
    nested layer names, each with its separator."""
    longest = 0
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
        stack.extend((value, length) for value in node.values())
    return longest

"""The keys of a Keras ``DTypePolicyMap``: regular expressions the file chooses, matched by Keras.

Keras looks a layer's dtype policy up in a ``DTypePolicyMap`` by the layer's path: an exact key
first, else every key as a regular expression, ``re.fullmatch(key, path)``
(``DTypePolicyMap.__getitem__``), on every lookup of the layer's ``compute_dtype``,
``variable_dtype`` or ``quantization_mode``: while the model is built, loaded and called. The
file chooses both the keys and the layer names the paths are made of, and Python's regular
expressions backtrack: the key ``(a|aa)*c`` against a layer named with 30 ``a``s took plain
Keras 1.3 s to load, and each further ``a`` multiplies that by about 1.6 (red team, pass 17).

So a key is accepted only if matching it cannot backtrack more than linearly in the path's
length (:func:`key_problem`): plain characters, character sets, ``.``, anchors and groups, with
at most one repetition of variable count whose body is one character (``encoder/.*``, the
form Keras documents) and at most one alternation, whose branches repeat nothing. Back
references, look-arounds, possessive and atomic groups and conditionals are refused. A map
may hold at most :data:`MAX_KEYS` keys (Python caches 512 compiled patterns: past that, every
lookup compiles every key again) of at most :data:`MAX_KEY_LENGTH` characters.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

try:  # Python 3.11+ (the parser ``re.compile`` itself uses)
    _c: Any = importlib.import_module("re._constants")
    _parser: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _c = importlib.import_module("sre_constants")
    _parser = importlib.import_module("sre_parse")

#: The most keys one ``DTypePolicyMap`` may hold (a quantised model's map names each quantised
#: layer's path: a few hundred for the largest models Keras Hub ships).
MAX_KEYS = 512
MAX_KEY_LENGTH = 1024

_CHAR = {_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}


def policy_map_problem(cfg: Any) -> str | None:
    """Why Keras could take more than linear time looking layers up in this ``DTypePolicyMap``
    config, or None."""
    if not isinstance(cfg, dict):
        return None
    keys = cfg.get("policy_map")
    if keys is None:
        return None
    if not isinstance(keys, dict) or "class_name" in keys:
        return "a policy_map that is not a plain mapping of layer paths"
    if len(keys) > MAX_KEYS:
        return f"a policy_map of {len(keys):,} keys (at most {MAX_KEYS} are accepted)"
    for key in keys:
        problem = key_problem(key)
        if problem:
            return f"the policy_map key {str(key)[:80]!r}: {problem}"
    return None


def key_problem(key: Any) -> str | None:
    """Why matching ``key`` with ``re.fullmatch`` could backtrack more than linearly, or None."""
    if not isinstance(key, str):
        return "not a string"
    if len(key) > MAX_KEY_LENGTH:
        return f"{len(key):,} characters (at most {MAX_KEY_LENGTH} are accepted)"
    try:
        re.compile(key)
        parsed = _parser.parse(key)
    except (re.error, RecursionError, OverflowError) as e:
        return f"not a regular expression Python compiles ({e})"
    counts = {"repeat": 0, "branch": 0}
    return _walk(list(parsed), counts, inside_branch=False)


def _walk(items: list[tuple[Any, Any]], counts: dict[str, int], inside_branch: bool) -> str | None:
    for op, av in items:
        if op in _CHAR or op == _c.AT:
            continue
        if op == _c.SUBPATTERN:
            problem = _walk(list(av[-1]), counts, inside_branch)
        elif op in _REPEATS:
            low, high, body = av
            body = list(body)
            if len(body) != 1 or body[0][0] not in _CHAR:
                return "a repetition of more than one character (it can backtrack exponentially)"
            if low == high:
                continue  # a fixed count: no choice to go back on
            if inside_branch:
                return "a repetition inside an alternation"
            counts["repeat"] += 1
            if counts["repeat"] > 1:
                return "more than one repetition of variable count (polynomial backtracking)"
            continue
        elif op == _c.BRANCH:
            if inside_branch:
                return "an alternation inside an alternation"
            counts["branch"] += 1
            if counts["branch"] > 1:
                return "more than one alternation"
            problem = None
            for branch in av[1]:
                problem = problem or _walk(list(branch), counts, inside_branch=True)
        else:
            return f"a construct that is not accepted in a policy key ({op})"
        if problem:
            return problem
    return None

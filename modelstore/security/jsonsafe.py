"""The one JSON reader for text that comes from a file or a client: bounded and strict.

``json.loads`` accepts ``Infinity``/``NaN``, turns ``1e999`` into ``inf`` (then ``int()`` raises
``OverflowError``), parses 100,000-digit integers slowly, and raises ``RecursionError`` on deep
nesting. Everything modelstore reads as JSON from a file (sidecars, shard indexes, safetensors
headers, store manifests and aliases, Keras configs, ONNX metadata) or from a request goes
through :func:`loads`, which refuses all of that with a :class:`~modelstore.errors.FormatError`
naming where the text came from.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import FormatError

#: Deepest nesting of arrays and objects accepted (real configs nest a few dozen levels).
MAX_DEPTH = 256
#: Longest float literal accepted (integers are bounded by Python's 4300-digit conversion limit).
MAX_NUMBER_CHARS = 400
#: Largest text accepted, unless the caller says otherwise.
MAX_BYTES = 256 << 20


class JSONLimitError(FormatError):
    """JSON text that is malformed or beyond the reader's bounds."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the non-standard constant {name} (JSON has no infinities or NaN)")


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows a float")
    return value


def depth_of(value: Any) -> int:
    """Deepest nesting of lists and dicts in a parsed value (iterative: no recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        deepest = max(deepest, d)
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


def loads(
    data: bytes | bytearray | str,
    *,
    where: str,
    max_bytes: int = MAX_BYTES,
    max_depth: int | None = MAX_DEPTH,
    native_floats: bool = False,
) -> Any:
    """Parse JSON text read from ``where`` (a file, URI or "the request body").

    Raises :class:`JSONLimitError` (a ``FormatError``) for malformed text, text over
    ``max_bytes``, nesting deeper than ``max_depth``, ``NaN``/``Infinity``, floats that
    overflow, integers of more digits than Python converts (4300), and invalid UTF-8.
    ``max_depth=None`` skips the exact depth walk (the parser's own recursion guard still
    holds): for readers that check the type of every field, so refuse nesting themselves.
    ``native_floats=True`` parses floats in C without the per-number check (a caller that
    bounds number lengths and refuses infinities itself: ``modelstore serve``).
    """
    if len(data) > max_bytes:
        raise JSONLimitError(
            f"{where}: {len(data)} bytes of JSON is more than the {max_bytes} accepted"
        )
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as e:
        raise JSONLimitError(
            f"{where}: the JSON is not valid UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    try:
        value = (_NATIVE if native_floats else _CHECKED).decode(text)
    except RecursionError:
        raise JSONLimitError(
            f"{where}: the JSON nests too deeply; it is damaged or hostile"
        ) from None
    except ValueError as e:  # json.JSONDecodeError is a ValueError, and so are ours above
        raise JSONLimitError(f"{where}: not valid JSON ({str(e)[:200]})") from None
    if max_depth is not None and depth_of(value) > max_depth:
        raise JSONLimitError(
            f"{where}: the JSON nests deeper than {max_depth} levels; it is damaged or hostile"
        )
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN/Infinity, so what we write, we can read back."""
    if not kwargs:
        return _ENCODER.encode(value)
    return json.dumps(value, allow_nan=False, **kwargs)


#: Made once (``json.loads``/``dumps`` with options build a new one per call, ~2 µs each:
#: a served request pays both). Both are stateless between calls, like json's own defaults.
_CHECKED = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_float)
_NATIVE = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(allow_nan=False)

"""Reading one ``POST /predict`` request of ``modelstore serve``: bounded before any work.

Requests come from strangers: the body's JSON, its fields and its arrays are each checked
against :class:`Limits` before anything is converted to numpy; every refusal is a
:class:`ClientError` carrying the 4xx status the server answers with. The body itself is
read under the same cap (:func:`read_body`), and the route and media type are read from the
ASGI scope as Starlette would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .api import OUTPUTS
from .errors import ArgumentError
from .security import jsonsafe

#: JSON nesting accepted by the parser; arrays are bounded more tightly by ``Limits.max_dims``.
JSON_DEPTH = 128
#: Fields a POST /predict body may have.
FIELDS = ("inputs", "output", "batch_size")
#: Named inputs (``{"inputs": {"name": [...]}}``) accepted in one request.
MAX_NAMED_INPUTS = 16
_INT64 = 1 << 63
_SQUARES = 2.0**126  # (2**63) ** 2


@dataclass(frozen=True)
class Limits:
    """What one POST /predict may ask of the server; each refusal names the limit it hit.

    Together they bound a request's memory and CPU: the body's bytes, the values the model
    runs on (``max_values``, rows x features summed over named inputs) and the number of
    model calls (``max_batches``); the defaults keep the worst request to about a second of
    parsing plus the model's own time on a million values.
    """

    max_body_bytes: int = 16 << 20
    max_dims: int = 6
    max_rows: int = 10_000
    max_values: int = 1_000_000
    max_batches: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ArgumentError(
                    f"serve limit {f.name} must be a positive integer, not {value!r}"
                )


class ClientError(Exception):
    """A request the server cannot use: becomes a 4xx answer, never escapes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: Every byte that can be part of a JSON number becomes "#", every other a space: a run of
#: more "#" than jsonsafe accepts in one number is then a substring search (C speed, ~25x
#: faster than a regular expression over a large body).
_NUMBER_BYTES = bytes(35 if chr(i) in "0123456789.eE+-" else 32 for i in range(256))
_LONG_NUMBER = b"#" * (jsonsafe.MAX_NUMBER_CHARS + 1)


def parse_body(body: bytes, limits: Limits) -> dict[str, Any]:
    """The request's JSON object, its fields checked (inputs not yet).

    The per-request cost is kept to the C parser's: floats are parsed natively (a number
    that overflows one, ``1e999``, is refused when the inputs are converted), and the depth
    walk runs only when the body has enough brackets to nest past ``JSON_DEPTH``."""
    # Parsing costs about 0.3 s per million values or lists; a body with more than the limit
    # allows (each value needs a comma or a bracket beside it) is refused before parsing.
    room = 2 * limits.max_values + 1024
    opening = body.count(b"[")
    if body.count(b",") > room or opening > room // 2:
        raise ClientError(
            413, f"the request holds more than the {limits.max_values} values accepted"
        )
    if len(body) > jsonsafe.MAX_NUMBER_CHARS and _LONG_NUMBER in body.translate(_NUMBER_BYTES):
        raise ClientError(
            400,
            "the request body: not valid JSON (a number of over "
            f"{jsonsafe.MAX_NUMBER_CHARS} characters)",
        )
    deep = opening + body.count(b"{") > JSON_DEPTH
    try:
        data = jsonsafe.loads(
            body,
            where="the request body",
            max_bytes=limits.max_body_bytes,
            max_depth=JSON_DEPTH if deep else None,
            native_floats=True,
        )
    except jsonsafe.JSONLimitError as e:
        # JSON has no NaN or Infinity
        unusable = "non-standard constant" in str(e)
        raise ClientError(422 if unusable else 400, str(e)) from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise ClientError(422, 'expected a JSON object {"inputs": [...]}')
    if len(data) == 1:
        return data  # inputs alone: the common request, checked by read_inputs
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        names = [name[:40] for name in unknown[:5]]  # a client's names, shortened
        raise ClientError(422, f"unknown fields {names}; a request has {list(FIELDS)}")
    output = data.get("output", "raw")
    if output not in OUTPUTS:
        raise ClientError(422, f"output must be one of {list(OUTPUTS)}, not {_short(output)}")
    batch_size = data.get("batch_size")
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise ClientError(422, f"batch_size must be a positive integer, not {_short(batch_size)}")
    return data


def _short(value: Any) -> str:
    """A client's value for an error message: scalars shortened, containers by kind only."""
    if isinstance(value, (str, int, float)) or value is None:
        return repr(value)[:40]
    return "an object" if isinstance(value, dict) else "a list"


def shape_of(value: Any, limits: Limits, name: str = "inputs") -> tuple[int, ...]:
    """The shape of a nested list of numbers (or a flat list of strings), level by level.

    Iterative, so nesting costs no recursion, and refused at ``max_dims`` levels, before
    anything is converted to numpy.
    """
    shape: list[int] = []
    level = [value]
    while isinstance(level[0], list):
        if len(shape) == limits.max_dims:
            raise ClientError(422, f"{name} has more than {limits.max_dims} dimensions")
        n = len(level[0])
        if any(not isinstance(v, list) or len(v) != n for v in level):
            raise ClientError(422, f"{name} is not rectangular at dimension {len(shape)}")
        if n == 0:
            raise ClientError(422, f"{name} is empty at dimension {len(shape)}")
        if not shape and n > limits.max_rows:
            raise ClientError(
                413, f"{n} rows is more than the {limits.max_rows} accepted; split the request"
            )
        if len(level) * n > limits.max_values:
            raise ClientError(
                413, f"{name} holds more than {limits.max_values} values; send fewer rows"
            )
        shape.append(n)
        level = [v for row in level for v in row]
    if not shape:
        raise ClientError(422, f"{name} must be an array (a list of rows), not a single value")
    _check_leaves(level, len(shape), name)
    return tuple(shape)


def _check_leaves(leaves: list[Any], dims: int, name: str) -> None:
    kinds = {type(v) for v in leaves}
    if kinds <= {int, float, bool}:
        if int in kinds and any(type(v) is int and not -_INT64 <= v < _INT64 for v in leaves):
            raise ClientError(422, f"{name} holds an integer outside the 64-bit range")
        return
    if kinds == {str} and dims == 1:
        return  # one text per row, for text models
    odd = sorted(_JSON_NAMES.get(t, t.__name__) for t in kinds - {int, float, bool, str})
    found = ", ".join(odd) if odd else "texts inside rows or mixed with numbers"
    raise ClientError(422, f"{name} must hold numbers (or be a flat list of texts); found {found}")


_JSON_NAMES = {dict: "an object", type(None): "null", list: "a list beside numbers"}


def may_hold_texts(body: bytes, data: dict[str, Any]) -> bool:
    """Whether ``body`` has quotes beyond those of the request's keys and output name, so a
    text may sit inside its inputs (a C-speed count; escaped quotes only make it say yes)."""
    raw = data["inputs"]
    strings = len(data) + isinstance(data.get("output"), str)
    strings += len(raw) if isinstance(raw, dict) else 0
    return body.count(b'"') > 2 * strings


def plain_numbers(body: bytes) -> bool:
    """Whether every number in ``body`` is written without an exponent and with fewer than 19
    digits in a row (two C-speed searches and one translation): each is then finite and
    under 10**18 < 2**63 in magnitude, so numpy's array of them needs no check of its
    values. An "e" anywhere (a key, an escape) only makes this say no."""
    return b"e" not in body and b"E" not in body and _DIGIT_RUN not in body.translate(_DIGITS)


_DIGITS = bytes(35 if chr(i) in "0123456789" else 32 for i in range(256))
_DIGIT_RUN = b"#" * 19


def read_inputs(
    data: dict[str, Any], limits: Limits, *, texts: bool = True, plain: bool = False
) -> tuple[Any, int]:
    """The request's inputs as numpy (one array, or a dict for named inputs) and its rows.

    ``texts=False`` (the body holds no text in its inputs: :func:`may_hold_texts`) lets numpy
    convert first; otherwise each input is walked before numpy sees it, since numpy would turn
    one long text among many numbers into a fixed-width array of rows x longest.
    ``plain=True``: the body's numbers are :func:`plain_numbers`, so numpy's arrays of them
    are not searched for infinities or integers past 64 bits."""
    raw = data["inputs"]
    if type(raw) is list:  # one unnamed array: the common request
        a = _array(raw, limits, "inputs", texts, limits.max_body_bytes, plain)
        if a.size > limits.max_values:
            raise ClientError(
                413, f"the inputs hold {a.size} values, more than the {limits.max_values} accepted"
            )
        return a, a.shape[0]
    named = isinstance(raw, dict)
    items = raw if named else {"inputs": raw}
    if named and not 0 < len(items) <= MAX_NAMED_INPUTS:
        raise ClientError(
            422, f"named inputs must be 1 to {MAX_NAMED_INPUTS} arrays, got {len(items)}"
        )
    arrays = {}
    room = limits.max_body_bytes  # characters (rows x longest) all texts together may take
    for key, value in items.items():
        where = f"inputs[{key[:40]!r}]" if named else "inputs"
        a = arrays[key] = _array(value, limits, where, texts, room, plain)
        if a.dtype.kind == "U":
            room -= a.size * (a.itemsize // 4)
    total = sum(a.size for a in arrays.values())
    if total > limits.max_values:
        raise ClientError(
            413, f"the inputs hold {total} values, more than the {limits.max_values} accepted"
        )
    rows = max(a.shape[0] for a in arrays.values())
    return (arrays if named else arrays["inputs"]), rows


def _array(
    value: Any, limits: Limits, where: str, texts: bool, room: int, plain: bool = False
) -> Any:
    """One input as numpy. Without texts about, numpy converts numbers first (the body's size
    already bounds its work: ``parse_body`` counts the values); what comes out must be a
    non-empty array of bools, int64 or finite float64 within ``limits``. Anything else
    (ragged, mixed, integers past 64 bits, nested too deep), and any input when the body may
    hold texts, is walked by :func:`shape_of`, which says what is wrong or, for a flat list of
    texts, lets it through if rows x longest fits in ``room`` characters."""
    import numpy as np

    a = None
    if not texts and isinstance(value, list):
        try:
            a = np.asarray(value)
        except (ValueError, TypeError, OverflowError):  # ragged, or numpy's dimension limit
            a = None
    if a is not None and a.dtype.kind in "bif" and _within(a, limits):
        # numbers written plainly are in range; else a sum of squares under 2**126 (one BLAS
        # call) shows every value finite and under 2**63; otherwise look closer
        if a.dtype.kind == "f" and not plain and not float(np.vdot(a, a)) < _SQUARES:
            top = float(np.abs(a).max())
            if top >= _INT64:  # a JSON integer past 64 bits becomes such a float: walk it
                shape_of(value, limits, where)
            if top == math.inf:  # 1e999 parses as infinity
                raise ClientError(422, f"{where} holds a number that overflows a float")
        return a
    shape = shape_of(value, limits, where)  # raises unless numbers numpy refused, or texts
    if len(shape) == 1 and type(value[0]) is str:
        longest = max(map(len, value))
        if longest * len(value) > room:  # numpy keeps 4 bytes per character
            raise ClientError(
                413,
                f"{where}: {len(value)} texts of up to {longest} characters make too large an "
                "array (with the request's other texts); send fewer or shorter texts",
            )
    a = np.asarray(value)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ClientError(422, f"{where} holds a number that overflows a float")
    return a


def _within(a: Any, limits: Limits) -> bool:
    """Whether numpy's array has a shape :func:`shape_of` would accept."""
    return bool(
        0 < a.ndim <= limits.max_dims
        and a.size > 0
        and a.shape[0] <= limits.max_rows
        and a.size <= limits.max_values
    )


def batch_size_for(data: dict[str, Any], rows: int, limits: Limits) -> int | None:
    """The batch size to pass to predict: None for one batch; refused if it means many calls."""
    batch_size: int | None = data.get("batch_size")
    if batch_size is None or batch_size >= rows:
        return None
    if -(-rows // batch_size) > limits.max_batches:
        least = -(-rows // limits.max_batches)
        msg = (
            f"batch_size {batch_size} splits {rows} rows into more than {limits.max_batches} "
            f"batches; use a batch_size of at least {least}, or none"
        )
        raise ClientError(422, msg)
    return batch_size


# -- the HTTP request around the body ----------------------------------------------------


async def read_body(receive: Any, declared: bytes, cap: int) -> bytes:
    """The request body, refused (413) as soon as it is declared or counted over ``cap``."""
    # a length of more digits than any cap has is over it (int() refuses past 4,300 digits)
    digits = declared.lstrip(b"0")
    if declared.isdigit() and (len(digits) > 20 or int(digits or b"0") > cap):
        raise ClientError(413, f"the request body is over {cap} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError(400, "the client left before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise ClientError(413, f"the request body is over {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def route_path(scope: Any) -> str:
    """The path below the app's root path, as Starlette's router reads it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def json_media(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (``application/json``, ``application/*+json``)."""
    if content_type is None:
        return True  # a bare POST: read as JSON, the only thing this server reads
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )

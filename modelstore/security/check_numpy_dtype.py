"""Shapes and dtypes from numpy pickles: element counts and dimensions bounded, and ``numpy.dtype``
calls and BUILD states checked against what numpy's own constructors make (an object dtype
flagged as holding no objects, fields reaching past the item size are refused). The small
helpers every numpy-facing check shares live here too."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from ..errors import ModelstoreError

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler


#: Largest element count of one array a file may declare (the bytes must be in the file too).
MAX_ELEMENTS = 1 << 44
MAX_DIMS = 32
_CODE = re.compile(r"^[<>|=]?([a-zA-Z?])(\d{1,12})$")


@functools.cache
def _np() -> Any:
    """numpy, imported on first use (once: an import statement costs more than the checks
    that call this per array)."""
    import numpy

    return numpy


def _int(v: Any) -> bool:
    return type(v) is int or (
        hasattr(v, "dtype") and getattr(v, "shape", None) == () and v.dtype.kind in "iu"
    )


def check_shape(st: LoadState, shape: Any, what: str) -> int:
    """A tuple of sane non-negative ints, none above :data:`MAX_ELEMENTS` (red team: one huge
    int repeated as every dimension made the product cost minutes); the element count."""
    if type(shape) is tuple and len(shape) <= MAX_DIMS:  # the usual case, tested directly
        n = 1
        for d in shape:
            if type(d) is not int or not 0 <= d <= MAX_ELEMENTS:
                break  # numpy integers, and refusals: the general path below
            n *= d
        else:
            if n > MAX_ELEMENTS:
                raise st.refuse(f"{what} declares {n} elements")
            return n
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(_int(d) and 0 <= int(d) <= MAX_ELEMENTS for d in shape)
    ):
        raise st.refuse(f"{what} has a malformed shape {_shape_text(shape)}")
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise st.refuse(f"{what} declares {n} elements")
    return n


def _shape_text(shape: Any) -> str:
    """A refused shape for the message, without converting a huge int to text (Python
    refuses past 4,300 digits, and the time is the file's to choose)."""
    if not isinstance(shape, tuple):
        return f"(a {type(shape).__name__})"
    dims = [
        str(int(d)) if _int(d) and abs(int(d)) <= 1 << 64 else f"<{type(d).__name__}>"
        for d in shape[:8]
    ]
    return f"({', '.join(dims)}{', ...' if len(shape) > 8 else ''})"


def dtype_in_use(st: LoadState, dtype: Any, what: str) -> Any:
    """A dtype the stream built (validated when its state was set) that now gets used."""
    np = _np()
    if not isinstance(dtype, np.dtype):
        raise st.refuse(f"{what} has a dtype that is a {type(dtype).__name__}")
    st.complete(dtype, "a dtype")
    return dtype


def call_dtype(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``numpy.dtype(code, align, copy)``: always a fresh copy (the interned float64 dtype
    must never be a BUILD target), from a plain type code."""
    np = _np()
    if not 1 <= len(args) <= 3:
        raise st.refuse("numpy.dtype called with an unexpected number of arguments")
    code = args[0]
    if isinstance(code, bytes):
        code = code.decode("ascii", "replace")
    if not isinstance(code, str) or not _CODE.match(code):
        raise st.refuse(
            f"numpy.dtype called with {type(args[0]).__name__} {str(args[0])[:40]!r}, not a type code"
        )
    align = bool(args[1]) if len(args) > 1 and isinstance(args[1], (bool, int)) else False
    try:
        result = np.dtype(code, align, True)
    except (TypeError, ValueError) as e:
        raise st.refuse(f"numpy.dtype({code!r}) is not a dtype ({e})") from None
    st.expect_build(result)
    return result


def _candidate(st: LoadState, target: Any, state: Any) -> Any:
    """The dtype numpy's public constructors build from ``state``'s description."""
    np = _np()
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise st.refuse("a dtype state of an unknown layout")
    _, endian, subarray, names, fields, elsize, alignment, flags = state[:8]
    if endian not in ("<", ">", "|", "=") or not (_int(elsize) and _int(alignment) and _int(flags)):
        raise st.refuse("a dtype state with malformed fields")
    if subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2):
            raise st.refuse("a dtype state with a malformed sub-array")
        base = dtype_in_use(st, subarray[0], "a sub-array dtype")
        check_shape(st, subarray[1], "a sub-array dtype")
        return np.dtype((base, subarray[1]))
    if names is not None or fields is not None:
        if not (
            isinstance(names, tuple)
            and isinstance(fields, dict)
            and all(type(n) is str for n in names)
        ):
            raise st.refuse("a structured dtype state with malformed names or fields")
        formats, offsets, titles = [], [], []
        for n in names:
            spec = fields.get(n)
            if not (isinstance(spec, tuple) and len(spec) in (2, 3) and _int(spec[1])):
                raise st.refuse(f"a structured dtype state with a malformed field {n[:40]!r}")
            formats.append(dtype_in_use(st, spec[0], "a field's dtype"))
            offsets.append(int(spec[1]))
            titles.append(spec[2] if len(spec) == 3 else None)
        desc: dict[str, Any] = {
            "names": list(names),
            "formats": formats,
            "offsets": offsets,
            "itemsize": int(elsize),
        }
        if any(t is not None for t in titles):
            desc["titles"] = titles
        return np.dtype(desc, align=bool(int(flags) & 0x80))
    kind = target.kind
    if kind in "USV":
        size = int(elsize) // 4 if kind == "U" else int(elsize)
        cand = np.dtype(f"{kind}{size}")
    elif kind in "Mm":
        meta = state[8] if len(state) == 9 else None
        if not (
            isinstance(meta, tuple)
            and len(meta) == 2
            and meta[0] is None
            and isinstance(meta[1], tuple)
            and len(meta[1]) == 4
        ):
            raise st.refuse("a datetime dtype state with malformed metadata")
        unit, num, den, events = meta[1]
        if not (
            isinstance(unit, bytes)
            and unit.isascii()
            and _int(num)
            and 0 < num < 1 << 31
            and den == 1
            and events == 1
        ):
            raise st.refuse("a datetime dtype state with a malformed unit")
        text = unit.decode()
        cand = np.dtype(
            f"{kind}8" if text == "generic" else f"{kind}8[{num if num != 1 else ''}{text}]"
        )
    else:
        cand = np.dtype(target.str)
    if endian in "<>" and cand.byteorder not in ("|",):
        cand = cand.newbyteorder(endian)
    return cand


def build_dtype(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    """Set a dtype's state only if it is exactly what numpy's constructor makes from the same
    description: flags, item size, offsets and object-ness cannot disagree."""
    st = reader.state
    try:
        cand = _candidate(st, target, state)
    except ModelstoreError:
        raise
    except (TypeError, ValueError) as e:
        raise st.refuse(f"a dtype state numpy itself would not build ({str(e)[:120]})") from None
    if (
        type(cand) is not type(target)
        or cand.itemsize != target.itemsize
        or cand.__reduce__()[2] != state
    ):
        raise st.refuse(f"a dtype state that disagrees with the dtype it describes ({cand})")
    target.__setstate__(state)
    if target != cand or target.flags != cand.flags or target.itemsize != cand.itemsize:
        raise st.refuse("a dtype state numpy applied differently from its description")
    return target

"""What a scikit-learn save records for ``inspect`` while it pickles, shared by both
recorders (:mod:`.fastrecord` on the C pickler, :mod:`.writer` on joblib's): the record, and
names of globals, calls and arrays exactly as the static scan spells them."""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from typing import Any

from ..._info import TensorInfo

_NEWOBJ = ("__newobj__", "__newobj_ex__")


@dataclass
class Recorded:
    """What the recording pickler saw: globals in order of first use, raw arrays, states."""

    globals: dict[str, None] = field(default_factory=dict)
    arrays: list[TensorInfo] = field(default_factory=list)
    #: id(obj) -> (class or function name as the stream names it, pickled state)
    objects: dict[int, tuple[str | None, Any]] = field(default_factory=dict)
    root: tuple[str | None, Any] = (None, None)
    exact: bool = True


def _global_name(obj: Any, name: str | None = None) -> str:
    """``module.qualname`` exactly as pickle's ``save_global`` writes it (protocol >= 4)."""
    if name is None:
        name = getattr(obj, "__qualname__", None) or obj.__name__
    return f"{pickle.whichmodule(obj, name)}.{name}"  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=256)
def _type_name(dtype: Any) -> str:
    """The dtype's name from the type code the stream spells (``__reduce__`` builds a
    structured dtype's whole field table: ~20 µs, once per dtype)."""
    return _dtype_name(dtype.__reduce__()[1][0])


def array_info(array: Any, keys: list[Any]) -> TensorInfo:
    """What ``inspect`` lists for an array joblib stores raw, reached through ``keys``
    (joined as the scan joins them)."""
    n = 1
    for d in array.shape:
        n *= int(d)
    path = ""
    for key in keys:
        path = f"{path}.{key}"
    return TensorInfo(
        path.strip(".") or "<array>",
        tuple(int(d) for d in array.shape),
        _type_name(array.dtype),
        n * array.dtype.itemsize,
    )


def reduced_name(func: Any, args: Any) -> str | None:
    """The class a NEWOBJ builds, else the function called, as the stream names it."""
    try:
        if getattr(func, "__name__", "") in _NEWOBJ and args and isinstance(args[0], type):
            return _global_name(args[0])
        return _global_name(func)
    except Exception:  # noqa: BLE001 - an odd callable: the save itself will say
        return None


_NAMES = {
    "f": "float",
    "i": "int",
    "u": "uint",
    "b": "bool",
    "c": "complex",
    "U": "str",
    "S": "bytes",
}


def _dtype_name(dtype: str) -> str:
    code = dtype.lstrip("<>|=")
    kind, size = code[0], code[1:]
    if kind in ("f", "i", "u", "c") and size.isdigit():
        return f"{_NAMES[kind]}{int(size) * 8}"
    if kind == "b":
        return "bool"
    return dtype

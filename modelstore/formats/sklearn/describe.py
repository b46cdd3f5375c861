"""The description ``inspect`` gives of a joblib file, from what the recording pickler saw.

:mod:`.writer` records the globals, the raw arrays and the pickled states while ``ms.save``
writes; these functions turn that record into the same :class:`Inspection` that the static
scan of the written file gives (``backend.inspect``), so the save needs no re-scan.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..base import Inspection
from .record import Recorded
from .writer import _array_types

#: (kind, item size) of the 1-D arrays whose values ``inspect`` decodes (``array_value``)
_DECODED = frozenset(
    [("i", n) for n in (1, 2, 4, 8)]
    + [("u", n) for n in (1, 2, 4, 8)]
    + [("f", 4), ("f", 8), ("b", 1)]
)


def inspection(rec: Recorded, compression: str | None = None) -> Inspection:
    """The :class:`Inspection` the static scan of the written file gives, from the record."""
    cls, state = rec.root
    details: dict[str, Any] = {}
    if cls:
        details["estimator"] = cls
    if compression:
        details["compression"] = compression
    details.update(_describe(state, rec))
    arrays = list(rec.arrays)
    return Inspection(
        framework=(cls or "").split(".")[0] or None,
        tensors=arrays,
        num_params=sum(t.numel for t in arrays),
        extra_metadata=details,
        globals=list(rec.globals),
        labels=details.get("classes_"),
        executes_code=True,
    )


def describe_state(
    state: Any,
    items: Callable[[Any], list[Any]],
    object_of: Callable[[Any], tuple[str | None, Any]],
    values: Callable[[Any], list[Any] | None],
    plain: Callable[[Any], Any],
) -> dict[str, Any]:
    """What ``inspect`` reports of an estimator's state (pipeline steps, classes, widths and
    plain settings), whether the state is the real object pickled (a save) or the symbolic
    one read from a file (a scan): ``items`` gives its (key, value) pairs, ``object_of`` the
    class and state of a value, ``values`` a short 1-D array's items, ``plain`` a setting."""
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for k, v in items(state):
        if type(k) is not str:  # a str subclass (np.str_) is a call in the stream, not a name
            continue
        if k == "steps" and isinstance(v, list):
            pairs = [s for s in v if isinstance(s, tuple) and len(s) == 2]
            out["steps"] = [[s[0], object_of(s[1])[0]] for s in pairs]
            last = v[-1][1] if v and isinstance(v[-1], tuple) and len(v[-1]) == 2 else None
            inner = describe_state(object_of(last)[1], items, object_of, values, plain)
            for key in ("classes_", "n_features_in_"):
                if key in inner:
                    out.setdefault(key, inner[key])
        elif k in ("classes_", "feature_names_in_"):
            found = values(v)
            if found is not None:
                out[k] = found
        elif k in ("n_features_in_", "n_outputs_", "n_classes_") and isinstance(v, int):
            out[k] = v
        elif not k.startswith("_") and not k.endswith("_"):
            setting = plain(v)
            if setting is not None or v is None:
                params[k] = setting
    if params:
        out["params"] = params
    return out


def _describe(state: Any, rec: Recorded) -> dict[str, Any]:
    """:func:`describe_state` on the real state that was pickled."""
    return describe_state(
        state,
        lambda st: list(st.items()) if type(st) in (dict, OrderedDict) else [],
        lambda value: rec.objects.get(id(value), (None, None)),
        _values,
        _plain,
    )


def _values(v: Any) -> list[Any] | None:
    if type(v) not in _array_types() or v.ndim != 1 or v.shape[0] > 1000:
        return None
    kind = v.dtype.kind
    if kind == "U" or (kind, v.dtype.itemsize) in _DECODED:
        return list(v.tolist())
    return None


def _plain(value: Any, depth: int = 0) -> Any:
    """``plain_value`` on real values: exact JSON types only (a numpy scalar pickles as a call)."""
    if depth > 16:
        return None
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if t in (list, tuple):
        return [_plain(v, depth + 1) for v in value]
    if t in (dict, OrderedDict):
        return {
            str(k): _plain(v, depth + 1) for k, v in value.items() if type(k) in (str, int, bool)
        }
    return None

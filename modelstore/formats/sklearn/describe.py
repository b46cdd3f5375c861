"""The description ``inspect`` gives of a joblib file, from what the recording pickler saw.

:mod:`.writer` records the globals, the raw arrays and the pickled states while ``ms.save``
writes; these functions turn that record into the same :class:`Inspection` that the static
scan of the written file gives (``backend.inspect``), so the save needs no re-scan.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..base import Inspection
from .writer import Recorded, _array_types

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


def _describe(state: Any, rec: Recorded) -> dict[str, Any]:
    """``backend._describe_state`` on the real state that was pickled."""
    items = list(state.items()) if type(state) in (dict, OrderedDict) else []
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for k, v in items:
        if not isinstance(k, str):
            continue
        if k == "steps" and isinstance(v, list):
            pairs = [s for s in v if isinstance(s, tuple) and len(s) == 2]
            out["steps"] = [[s[0], rec.objects.get(id(s[1]), (None, None))[0]] for s in pairs]
            last = v[-1][1] if v and isinstance(v[-1], tuple) and len(v[-1]) == 2 else None
            inner = _describe(rec.objects.get(id(last), (None, None))[1], rec)
            for key in ("classes_", "n_features_in_"):
                if key in inner:
                    out.setdefault(key, inner[key])
        elif k in ("classes_", "feature_names_in_"):
            values = _values(v)
            if values is not None:
                out[k] = values
        elif k in ("n_features_in_", "n_outputs_", "n_classes_") and type(v) in (int, bool):
            out[k] = v
        elif not k.startswith("_") and not k.endswith("_"):
            plain = _plain(v)
            if plain is not None or v is None:
                params[k] = plain
    if params:
        out["params"] = params
    return out


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
        return {str(k): _plain(v, depth + 1) for k, v in value.items() if isinstance(k, (str, int))}
    return None

"""Where the scikit-learn allow-list's *reference* functions may sit in a loaded model.

``_kmeans_single_lloyd`` and ``check_array`` are on the allow-list because real models hold
them at one attribute (``BisectingKMeans._kmeans_single``, the ``partial`` inside
HistGradientBoosting's preprocessor). Anywhere else (a FunctionTransformer's ``func``, a
callback, a metric) a model would call them with arguments from the file, which they do not
validate: ``_kmeans_single_lloyd`` writes past its buffers when the shapes disagree.
:func:`check_placements` walks the loaded object once, when the load ends, and refuses any
other place. Fail closed: a reference function the generator lists later, without a place
here, is refused everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_sklearn import _np

if TYPE_CHECKING:
    from .pickle_load import LoadState

#: Reference functions -> the only (class, attribute) where a model may hold them.
PLACES: dict[str, frozenset[tuple[str, str]]] = {
    "sklearn.cluster._kmeans:_kmeans_single_lloyd": frozenset(
        {("sklearn.cluster._bisect_k_means.BisectingKMeans", "_kmeans_single")}
    ),
    "sklearn.cluster._kmeans:_kmeans_single_elkan": frozenset(
        {("sklearn.cluster._bisect_k_means.BisectingKMeans", "_kmeans_single")}
    ),
    # HistGradientBoosting's preprocessor: FunctionTransformer(partial(check_array, ...))
    "sklearn.utils.validation:check_array": frozenset({("functools.partial", "func")}),
}


def _placed(entry: Any) -> bool:
    """Whether an entry may sit only at its places: those in PLACES, and every other function
    the sklearn allow-list holds as a reference (fail closed: a new one has no place yet)."""
    import sys
    import types

    from .allowlist_sklearn import REASONS

    module, name = entry.target
    if f"{module}:{name}" in PLACES:
        return True
    obj = getattr(sys.modules.get(module), name, None)
    return entry.reason == REASONS["reference"] and isinstance(obj, types.FunctionType)


def check_placements(st: LoadState, root: Any) -> None:
    """Refuse a reference function (:data:`PLACES`) anywhere but at its one attribute.

    Walks what the stream built, from ``root``: containers, object arrays, instance
    ``__dict__``s and partials; never into objects a lookup returned."""
    import functools
    import types

    np = _np()
    placed = {i: e for i, e in st.external.items() if _placed(e)}
    if not placed:
        return
    stop = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, str, bytes)
    seen: set[int] = set()
    todo: list[tuple[Any, str, str]] = [(root, "the file", "")]
    while todo:
        obj, owner, key = todo.pop()
        entry = placed.get(id(obj))
        if entry is not None:
            target = ":".join(entry.target)
            if (owner, key) not in PLACES.get(target, ()):
                raise st.refuse(
                    f"{target.replace(':', '.')} held by {owner}.{key}: it is allowed only "
                    "where scikit-learn keeps it, never as a function the model calls"
                )
            continue
        if id(obj) in seen or id(obj) in st.external or isinstance(obj, stop):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            todo += [
                (v, "a dict", k[:40] if isinstance(k, str) else type(k).__name__)
                for k, v in obj.items()
            ]
            todo += [(k, "a dict key", "") for k in obj]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo += [(v, f"a {type(obj).__name__}", "") for v in obj]
        elif isinstance(obj, np.ndarray):
            if obj.dtype == np.dtype(object):
                todo += [(v, "an object array", "") for v in obj.flat]
        elif isinstance(obj, functools.partial):
            todo += [
                (obj.func, "functools.partial", "func"),
                (obj.args, "functools.partial", "args"),
                (obj.keywords, "functools.partial", "keywords"),
            ]
        else:
            attrs = getattr(obj, "__dict__", None)
            if isinstance(attrs, dict):
                cls = type(obj)
                where = f"{cls.__module__}.{cls.__qualname__}"
                todo += [
                    (v, where, k if isinstance(k, str) else type(k).__name__)
                    for k, v in attrs.items()
                ]

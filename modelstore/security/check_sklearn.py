"""Validators for scikit-learn's Cython objects (trees, neighbour trees, distance metrics,
losses), checked as the stream builds them.

scikit-learn's Cython code (trees, neighbour trees, distance metrics, histogram gradient
boosting, libsvm) reads arrays with the indices those arrays hold, without bounds checks: a
decision tree whose child points past its nodes, or back at an ancestor, crashes or never
returns from ``predict``. Each such state is checked here, before the object's
``__setstate__`` for Cython types. Estimators that tie several objects together (a tree's
features against the estimator's ``n_features_in_``) are checked when the load ends, in
:mod:`.check_sklearn_fitted` and :mod:`.check_sklearn_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _int, check_shape
from .check_numpy_dtype import _np as _np  # shared by the check_sklearn* modules

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler

_MAX = 1 << 31


def _array(
    st: LoadState,
    value: Any,
    what: str,
    *,
    dtype: Any = None,
    ndim: int | None = None,
    contiguous: bool = True,
) -> Any:
    np = _np()
    if not isinstance(value, np.ndarray) or type(value) is not np.ndarray:
        raise st.refuse(f"{what} is not an array")
    st.complete(value, "an array")
    if dtype is not None and value.dtype != np.dtype(dtype):
        raise st.refuse(f"{what} has dtype {value.dtype}, not {np.dtype(dtype)}")
    if ndim is not None and value.ndim != ndim:
        raise st.refuse(f"{what} has {value.ndim} dimensions, not {ndim}")
    if contiguous and not value.flags.c_contiguous:
        raise st.refuse(f"{what} is not C-contiguous")
    return value


def _count(st: LoadState, value: Any, what: str, lo: int = 0, hi: int = _MAX) -> int:
    if not _int(value) or not lo <= int(value) < hi:
        raise st.refuse(f"{what} is {str(value)[:40]}, outside [{lo}, {hi})")
    return int(value)


def _children_ok(left: Any, right: Any, n: int, leaf: Any) -> bool:
    """Every internal node's children come after it and inside the node array (so walking
    down always ends), and leaves have none."""
    np = _np()
    idx = np.arange(n)
    internal = ~leaf
    return bool(
        np.all(
            (left[internal] > idx[internal])
            & (left[internal] < n)
            & (right[internal] > idx[internal])
            & (right[internal] < n)
        )
    )


# -- neighbour trees and distance metrics --------------------------------------------------------

_METRICS_WITH_VEC = ("SEuclidean", "Mahalanobis", "Minkowski")


def _binary_tree_classes() -> tuple[type, ...]:
    from sklearn.neighbors import BallTree, KDTree

    return (KDTree, BallTree)


def _metric_base() -> tuple[type, ...]:
    from sklearn.metrics._dist_metrics import (
        DistanceMetric32,
        DistanceMetric64,
        PyFuncDistance32,
        PyFuncDistance64,
    )

    return (DistanceMetric64, DistanceMetric32), (PyFuncDistance64, PyFuncDistance32)  # type: ignore[return-value]


def call_newobj(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``newObj(cls)`` (scikit-learn's Cython helper): an empty neighbour tree or distance
    metric, which must then receive its state."""
    bases, pyfunc = _metric_base()
    cls = args[0] if len(args) == 1 else None
    ok = (
        isinstance(cls, type)
        and st.entry_of(cls) is not None
        and (
            cls in _binary_tree_classes()
            or (issubclass(cls, bases) and not issubclass(cls, pyfunc))
        )
    )
    if not ok:
        raise st.refuse(
            f"newObj called on {getattr(cls, '__qualname__', type(cls).__name__)}, not a "
            "neighbour tree or built-in distance metric"
        )
    return st.expect_build(func(cls), required=True)


def build_metric(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    st = reader.state
    np = _np()
    if not (isinstance(state, tuple) and len(state) == 3):
        raise st.refuse("a distance metric state of an unknown layout")
    p, vec, mat = state
    dt = "float32" if type(target).__name__.endswith("32") else "float64"
    if not isinstance(p, (int, float)) or not (np.isfinite(p) or p == np.inf) or p <= 0:
        raise st.refuse("a distance metric with a malformed p")
    vec = _array(st, vec, "a distance metric's weights", ndim=1)
    mat = _array(st, mat, "a distance metric's matrix", ndim=2)
    if vec.dtype not in (np.dtype(dt), np.dtype("float64")) or mat.dtype not in (
        np.dtype(dt),
        np.dtype("float64"),
    ):
        raise st.refuse("a distance metric with arrays of the wrong dtype")
    name = type(target).__name__
    if name.startswith("Mahalanobis") and not (mat.shape[0] == mat.shape[1] == vec.shape[0]):
        raise st.refuse("a Mahalanobis metric whose matrix and buffer sizes disagree")
    target.__setstate__(state)
    return target


def metric_dims(target: Any) -> int | None:
    """How many features a metric's own arrays are sized for, if any."""
    name = type(target).__name__
    if name.startswith(_METRICS_WITH_VEC):
        vec = target.__reduce__()[2][1]
        if vec.shape[0] or not name.startswith("Minkowski"):
            return int(vec.shape[0])
    return None


def build_binary_tree(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    st = reader.state
    np = _np()
    if not (isinstance(state, tuple) and len(state) in (12, 13)):
        raise st.refuse("a neighbour tree state of an unknown layout")
    data = _array(st, state[0], "a neighbour tree's data", ndim=2)
    n, d = data.shape
    if data.dtype not in (np.dtype("float64"), np.dtype("float32")):
        raise st.refuse("a neighbour tree whose data is not floating point")
    idx = _array(st, state[1], "a neighbour tree's index", dtype=np.intp, ndim=1)
    if idx.shape != (n,) or (n and (idx.min() < 0 or idx.max() >= n)):
        raise st.refuse("a neighbour tree whose index points outside its data")
    node_data = _array(st, state[2], "a neighbour tree's nodes", ndim=1)
    if node_data.dtype.names != ("idx_start", "idx_end", "is_leaf", "radius"):
        raise st.refuse("a neighbour tree whose node records have the wrong fields")
    n_nodes = _count(st, state[6], "a neighbour tree's node count", 1)
    _count(st, state[4], "a neighbour tree's leaf size", 1)
    n_levels = _count(st, state[5], "a neighbour tree's depth", 1, 64)
    for i in range(7, 11):
        _count(st, state[i], "a neighbour tree's counter", 0, 1 << 62)
    if node_data.shape[0] != n_nodes or n_nodes != 2**n_levels - 1:
        raise st.refuse("a neighbour tree whose node count disagrees with its depth")
    start, end, leaf = (
        node_data["idx_start"],
        node_data["idx_end"],
        node_data["is_leaf"].astype(bool),
    )
    inner = np.nonzero(~leaf)[0]
    if not (np.all((start >= 0) & (start <= end) & (end <= n)) and np.all(2 * inner + 2 < n_nodes)):
        raise st.refuse("a neighbour tree whose nodes point outside its data or its node array")
    bounds = _array(st, state[3], "a neighbour tree's bounds", ndim=3)
    kd = type(target).__name__ == "KDTree"
    if bounds.shape != ((2 if kd else 1), n_nodes, d) or bounds.dtype != data.dtype:
        raise st.refuse("a neighbour tree whose bounds do not match its nodes and data")
    metric = state[11]
    bases, _ = _metric_base()
    if not isinstance(metric, bases):
        raise st.refuse("a neighbour tree whose distance metric is not a built-in metric")
    st.complete(metric, "a distance metric")
    dims = metric_dims(metric)
    if (dims is not None and dims != d) or (
        type(metric).__name__.startswith("Haversine") and d != 2
    ):
        raise st.refuse("a neighbour tree whose distance metric is sized for other data")
    if len(state) == 13 and state[12] is not None:
        weights = _array(st, state[12], "a neighbour tree's sample weights", ndim=1)
        if weights.shape != (n,):
            raise st.refuse("a neighbour tree whose sample weights do not match its data")
    target.__setstate__(state)
    return target


# -- Cython losses: plain numbers in, plain numbers stored ----------------------------------------


def _plain_numbers(values: Any) -> bool:
    return (
        isinstance(values, tuple)
        and len(values) <= 8
        and all(v is None or (isinstance(v, (bool, int, float)) and abs(v) < 1e300) for v in values)
    )


def call_cython_value_class(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """A Cython loss class rebuilt from its numeric parameters."""
    if not _plain_numbers(args):
        raise st.refuse(f"{func.__qualname__} called with arguments that are not plain numbers")
    return st.expect_build(func(*args))


def call_cython_unpickle(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``__pyx_unpickle_X(X, checksum, state-or-None)`` of a Cython class whose state is
    numbers (a state that comes later by BUILD is checked there)."""
    name = func.__name__.removeprefix("__pyx_unpickle_")
    if not (
        len(args) == 3
        and isinstance(args[0], type)
        and args[0].__name__ == name
        and args[0].__module__ == func.__module__
        and st.entry_of(args[0]) is not None
        and _int(args[1])
        and (args[2] is None or _plain_numbers(args[2]))
    ):
        raise st.refuse(f"{func.__name__} called with arguments scikit-learn never writes")
    result = func(*args)
    return st.expect_build(result) if args[2] is None else result


def build_cython_value(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    if not _plain_numbers(state):
        raise reader.state.refuse(f"a {type(target).__qualname__} state that is not plain numbers")
    target.__setstate__(state)
    return target


def build_for(t: type) -> Any:
    """The BUILD validator for a scikit-learn Cython type, or None."""
    module = t.__module__
    if module.startswith("sklearn.neighbors.") and t in _binary_tree_classes():
        return build_binary_tree
    if module == "sklearn.metrics._dist_metrics":
        return build_metric
    if module in ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast"):
        return build_cython_value
    return None


def call_for(target: str) -> Any:
    """The call validator for a scikit-learn CALL entry (by its home ``module:name``)."""
    module, _, name = target.partition(":")
    if name == "newObj":
        return call_newobj
    if name.startswith("__pyx_unpickle_"):
        return call_cython_unpickle
    if module in ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast"):
        return call_cython_value_class
    return None


del check_shape

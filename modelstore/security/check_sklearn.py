"""Validators for scikit-learn's Cython objects and the estimators whose compiled code trusts
their fitted state.

scikit-learn's Cython code (trees, neighbour trees, distance metrics, histogram gradient
boosting, libsvm) reads arrays with the indices those arrays hold, without bounds checks: a
decision tree whose child points past its nodes, or back at an ancestor, crashes or never
returns from ``predict``. Each such state is checked here, before the object's
``__setstate__`` for Cython types, and when the load ends for estimators that tie several
objects together (a tree's features against the estimator's ``n_features_in_``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy import _int, check_shape

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler

_MAX = 1 << 31


def _np() -> Any:
    import numpy

    return numpy


def _array(st: LoadState, value: Any, what: str, *, dtype: Any = None, ndim: int | None = None,
           contiguous: bool = True) -> Any:
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
    return bool(np.all((left[internal] > idx[internal]) & (left[internal] < n)
                       & (right[internal] > idx[internal]) & (right[internal] < n)))


# -- sklearn.tree._tree.Tree --------------------------------------------------------------------


def call_tree(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``Tree(n_features, n_classes, n_outputs)``: sizes the tree allocates from."""
    np = _np()
    if len(args) != 3:
        raise st.refuse("Tree called with arguments scikit-learn never writes")
    n_features = _count(st, args[0], "a tree's feature count", 1)
    n_outputs = _count(st, args[2], "a tree's output count", 1, 1 << 20)
    classes = _array(st, args[1], "a tree's class counts", ndim=1)
    if classes.dtype.kind not in "iu" or classes.shape != (n_outputs,) or not np.all((classes >= 1) & (classes < _MAX)):
        raise st.refuse("a tree whose class counts do not match its outputs")
    if n_outputs * int(classes.max()) >= _MAX:
        raise st.refuse("a tree whose value stride overflows")
    del n_features
    return st.expect_build(func(*args), required=True)


def build_tree(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    from sklearn.tree._tree import NODE_DTYPE

    st = reader.state
    np = _np()
    if not isinstance(state, dict) or not {"max_depth", "node_count", "nodes", "values"} <= set(state):
        raise st.refuse("a decision tree state without its nodes")
    nodes = _array(st, state["nodes"], "a tree's nodes", dtype=NODE_DTYPE, ndim=1)
    n = _count(st, state["node_count"], "a tree's node count", 1)
    _count(st, state["max_depth"], "a tree's depth")
    if nodes.shape[0] != n:
        raise st.refuse(f"a tree with node_count {n} but {nodes.shape[0]} nodes")
    values = _array(st, state["values"], "a tree's values", dtype="float64", ndim=3)
    if values.shape != (n, target.n_outputs, target.max_n_classes):
        raise st.refuse("a tree whose value array does not match its nodes and outputs")
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    if not (np.all(right[leaf] == -1) and _children_ok(left, right, n, leaf)
            and np.all((feature[~leaf] >= 0) & (feature[~leaf] < target.n_features))
            and np.all(nodes["missing_go_to_left"] <= 1)):
        raise st.refuse("a decision tree whose nodes point outside the tree, back up it, or at features it does not have")
    target.__setstate__(state)
    return target


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
    ok = isinstance(cls, type) and st.entry_of(cls) is not None and (
        cls in _binary_tree_classes() or (issubclass(cls, bases) and not issubclass(cls, pyfunc)))
    if not ok:
        raise st.refuse(f"newObj called on {getattr(cls, '__qualname__', type(cls).__name__)}, not a "
                        "neighbour tree or built-in distance metric")
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
    if vec.dtype not in (np.dtype(dt), np.dtype("float64")) or mat.dtype not in (np.dtype(dt), np.dtype("float64")):
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
    start, end, leaf = node_data["idx_start"], node_data["idx_end"], node_data["is_leaf"].astype(bool)
    inner = np.nonzero(~leaf)[0]
    if not (np.all((0 <= start) & (start <= end) & (end <= n)) and np.all(2 * inner + 2 < n_nodes)):
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
    if (dims is not None and dims != d) or (type(metric).__name__.startswith("Haversine") and d != 2):
        raise st.refuse("a neighbour tree whose distance metric is sized for other data")
    if len(state) == 13 and state[12] is not None:
        weights = _array(st, state[12], "a neighbour tree's sample weights", ndim=1)
        if weights.shape != (n,):
            raise st.refuse("a neighbour tree whose sample weights do not match its data")
    target.__setstate__(state)
    return target


# -- Cython losses: plain numbers in, plain numbers stored ----------------------------------------


def _plain_numbers(values: Any) -> bool:
    return isinstance(values, tuple) and len(values) <= 8 and all(
        v is None or (isinstance(v, (bool, int, float)) and abs(v) < 1e300) for v in values)


def call_cython_value_class(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """A Cython loss class rebuilt from its numeric parameters."""
    if not _plain_numbers(args):
        raise st.refuse(f"{func.__qualname__} called with arguments that are not plain numbers")
    return st.expect_build(func(*args))


def call_cython_unpickle(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``__pyx_unpickle_X(X, checksum, state-or-None)`` of a Cython class whose state is
    numbers (a state that comes later by BUILD is checked there)."""
    name = func.__name__.removeprefix("__pyx_unpickle_")
    if not (len(args) == 3 and isinstance(args[0], type) and args[0].__name__ == name
            and args[0].__module__ == func.__module__ and st.entry_of(args[0]) is not None
            and _int(args[1]) and (args[2] is None or _plain_numbers(args[2]))):
        raise st.refuse(f"{func.__name__} called with arguments scikit-learn never writes")
    result = func(*args)
    return st.expect_build(result) if args[2] is None else result


def build_cython_value(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    if not _plain_numbers(state):
        raise reader.state.refuse(f"a {type(target).__qualname__} state that is not plain numbers")
    target.__setstate__(state)
    return target


# -- estimator-level checks when the load ends ------------------------------------------------------


def _trees_of(est: Any) -> list[Any]:
    """The trees ``est`` runs on inputs it validated itself: its own ``tree_``, and for the
    ensembles that call their trees with ``check_input=False`` (forests, gradient boosting,
    isolation forests), every sub-estimator's tree."""
    from sklearn.ensemble import IsolationForest
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.tree._classes import BaseDecisionTree

    np = _np()
    out = []
    if isinstance(est, BaseDecisionTree) and "tree_" in est.__dict__:
        out.append(est.__dict__["tree_"])
    if not isinstance(est, (BaseForest, BaseGradientBoosting, IsolationForest)):
        return out
    subs = est.__dict__.get("estimators_")
    if isinstance(subs, np.ndarray):
        subs = list(subs.ravel())
    if isinstance(subs, list):
        for sub in subs:
            if isinstance(getattr(sub, "__dict__", None), dict) and "tree_" in sub.__dict__:
                out.append(sub.__dict__["tree_"])
    return out


def check_tree_estimator(st: LoadState, est: Any) -> None:
    """Every tree an estimator predicts with reads only the features it is given."""
    from sklearn.tree._tree import Tree

    trees = _trees_of(est)
    if not trees:
        return
    n_features = est.__dict__.get("n_features_in_")
    for tree in trees:
        if type(tree) is not Tree:
            raise st.refuse(f"{type(est).__name__} holds a {type(tree).__name__} where a tree belongs")
        if not _int(n_features) or tree.n_features != int(n_features):
            raise st.refuse(f"{type(est).__name__} expects {n_features} features but holds a tree over {tree.n_features}")


def check_predictor(st: LoadState, pred: Any) -> None:
    """A histogram-gradient-boosting tree: nodes, children and bitset rows in range."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    np = _np()
    d = pred.__dict__
    nodes = _array(st, d.get("nodes"), "a boosting tree's nodes", dtype=PREDICTOR_RECORD_DTYPE, ndim=1)
    n = nodes.shape[0]
    if n < 1:
        raise st.refuse("a boosting tree without nodes")
    bitsets = [_array(st, d.get(k), "a boosting tree's category bitsets", dtype="uint32", ndim=2)
               for k in ("binned_left_cat_bitsets", "raw_left_cat_bitsets")]
    if any(b.shape[1] != 8 for b in bitsets) or bitsets[0].shape != bitsets[1].shape:
        raise st.refuse("a boosting tree with malformed category bitsets")
    leaf = nodes["is_leaf"].astype(bool)
    cat = nodes["is_categorical"].astype(bool) & ~leaf
    if not (_children_ok(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), n, leaf)
            and np.all(nodes["feature_idx"][~leaf] >= 0) and np.all(nodes["bitset_idx"][cat] < bitsets[0].shape[0])):
        raise st.refuse("a boosting tree whose nodes point outside the tree or its bitsets")


def check_hist_gradient_boosting(st: LoadState, est: Any) -> None:
    np = _np()
    d = est.__dict__
    predictors = d.get("_predictors")
    if predictors is None:
        return
    n_features = d.get("n_features_in_")
    mapper = d.get("_bin_mapper")
    is_cat = getattr(mapper, "is_categorical_", None) if mapper is not None else None
    if not _int(n_features) or not isinstance(predictors, list):
        raise st.refuse("a gradient boosting model without its feature count")
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    for row in predictors:
        for pred in row if isinstance(row, list) else [None]:
            if type(pred) is not TreePredictor:
                raise st.refuse("a gradient boosting model holding something other than its trees")
            nodes = pred.nodes
            inner = ~nodes["is_leaf"].astype(bool)
            feats = nodes["feature_idx"][inner]
            if feats.size and feats.max() >= int(n_features):
                raise st.refuse("a gradient boosting tree that reads features the model does not have")
            cat = feats[nodes["is_categorical"][inner].astype(bool)]
            if cat.size and (is_cat is None or not isinstance(is_cat, np.ndarray) or is_cat.shape != (int(n_features),)
                             or not np.all(is_cat[cat])):
                raise st.refuse("a gradient boosting tree with categorical splits on non-categorical features")


_LIBSVM_KERNELS = ("linear", "poly", "rbf", "sigmoid", "precomputed")


def check_libsvm(st: LoadState, est: Any) -> None:
    """libsvm copies the support vectors and coefficients using the counts in ``_n_support``:
    every array must match them."""
    np = _np()
    d = est.__dict__
    if "support_vectors_" not in d:
        return
    from sklearn.svm._base import LIBSVM_IMPL

    sv = d["support_vectors_"]
    impl = d.get("_impl", getattr(type(est), "_impl", None))
    if d.get("_sparse") is not False or d.get("kernel") not in _LIBSVM_KERNELS or impl not in LIBSVM_IMPL:
        raise st.refuse(f"a {type(est).__name__} with a kernel or layout modelstore does not validate")
    sv = _array(st, sv, "support vectors", dtype="float64", ndim=2)
    n_sv = sv.shape[0]
    n_support = _array(st, d.get("_n_support"), "support counts", dtype="int32", ndim=1)
    support = _array(st, d.get("support_"), "support indices", dtype="int32", ndim=1)
    dual = _array(st, d.get("_dual_coef_"), "dual coefficients", dtype="float64", ndim=2)
    intercept = _array(st, d.get("_intercept_"), "intercepts", dtype="float64", ndim=1)
    shape_fit = d.get("shape_fit_")
    if not (isinstance(shape_fit, tuple) and len(shape_fit) == 2 and all(_int(v) for v in shape_fit)):
        raise st.refuse("an SVM without its training shape")
    classify = impl in ("c_svc", "nu_svc")
    n_class = n_support.shape[0] if classify else 2
    pairs = n_class * (n_class - 1) // 2 if classify else 1
    counted = int(n_support.sum()) == n_sv if classify else n_support.shape == (2,)
    ok = (np.all(n_support >= 0) and counted and support.shape == (n_sv,)
          and (n_sv == 0 or (support.min() >= 0 and support.max() < int(shape_fit[0])))
          and dual.shape == (max(n_class - 1, 1), n_sv) and intercept.shape == (pairs,)
          and (d["kernel"] == "precomputed" or sv.shape[1] == int(shape_fit[1])))
    for key in ("_probA", "_probB"):
        prob = _array(st, d.get(key), "probability coefficients", dtype="float64", ndim=1)
        ok = ok and prob.shape in ((0,), (pairs,))
    if classify and "class_weight_" in d:
        weights = _array(st, d["class_weight_"], "class weights", dtype="float64", ndim=1)
        ok = ok and weights.shape == (n_class,)
    if not ok:
        raise st.refuse(f"a {type(est).__name__} whose support vectors, counts and coefficients disagree")


def check_kmeans(st: LoadState, est: Any) -> None:
    d = est.__dict__
    centers = d.get("cluster_centers_")
    if centers is None:
        return
    centers = _array(st, centers, "cluster centres", ndim=2, contiguous=False)
    if not _int(d.get("n_features_in_")) or centers.shape[1] != int(d["n_features_in_"]):
        raise st.refuse("a clustering model whose centres do not match its feature count")


def finals_for(obj: Any) -> list[Any]:
    """The end-of-load checks an estimator needs, by what it is."""
    name = type(obj).__module__
    if not name.startswith("sklearn."):
        return []
    out = [check_tree_estimator]
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.svm._base import BaseLibSVM

    if isinstance(obj, TreePredictor):
        out.append(check_predictor)
    if isinstance(obj, BaseHistGradientBoosting):
        out.append(check_hist_gradient_boosting)
    if isinstance(obj, BaseLibSVM):
        out.append(check_libsvm)
    if isinstance(obj, (KMeans, MiniBatchKMeans)):
        out.append(check_kmeans)
    return out


def build_for(t: type) -> Any:
    """The BUILD validator for a scikit-learn Cython type, or None."""
    module = t.__module__
    if module == "sklearn.tree._tree" and t.__name__ == "Tree":
        return build_tree
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
    if name == "Tree" and module == "sklearn.tree._tree":
        return call_tree
    if name == "newObj":
        return call_newobj
    if name.startswith("__pyx_unpickle_"):
        return call_cython_unpickle
    if module in ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast"):
        return call_cython_value_class
    return None


del check_shape

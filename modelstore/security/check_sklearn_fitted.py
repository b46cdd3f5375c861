"""End-of-load checks of scikit-learn estimators whose compiled code trusts their fitted state.

Each attribute of a fitted estimator may be valid alone and still crash ``predict`` together
with the others: a tree over more features than the estimator validates, a gradient boosting
stage wider than the predictions it adds into, a preprocessor that skips the feature check.
These checks run once the whole file is loaded (registered by ``validators.default_build``
for each estimator the stream fills), when every attribute they compare is final. More
checks (neighbours, text, encoders, clustering, allocation sizes, where reference functions
may sit) are in :mod:`.check_sklearn_state`, histogram gradient boosting in
:mod:`.check_sklearn_hgb`.
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _int
from .check_sklearn import _array, _np
from .check_sklearn_hgb import check_hist_gradient_boosting, check_predictor

if TYPE_CHECKING:
    from .pickle_load import LoadState


@functools.cache
def _sk() -> Any:
    """The scikit-learn classes these checks compare with, imported once (an import statement
    costs more than the check that needs it, and these run per estimator)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import GradientBoostingClassifier, IsolationForest
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._classes import BaseDecisionTree
    from sklearn.tree._tree import Tree

    return types.SimpleNamespace(
        DummyClassifier=DummyClassifier,
        DummyRegressor=DummyRegressor,
        GradientBoostingClassifier=GradientBoostingClassifier,
        IsolationForest=IsolationForest,
        DecisionTreeRegressor=DecisionTreeRegressor,
        BaseDecisionTree=BaseDecisionTree,
        Tree=Tree,
        # the ensembles that call their trees unchecked
        ensembles=(BaseForest, BaseGradientBoosting, IsolationForest),
    )


def _trees_of(est: Any) -> list[Any]:
    """The trees ``est`` runs on inputs it validated itself: its own ``tree_``, and for the
    ensembles that call their trees with ``check_input=False`` (forests, gradient boosting,
    isolation forests), every sub-estimator's tree."""
    sk, np = _sk(), _np()
    out = []
    if isinstance(est, sk.BaseDecisionTree) and "tree_" in est.__dict__:
        out.append(est.__dict__["tree_"])
    if not isinstance(est, sk.ensembles):
        return out
    subs = est.__dict__.get("estimators_")
    if isinstance(subs, np.ndarray):
        subs = list(subs.ravel())
    if isinstance(subs, list):
        for sub in subs:
            if isinstance(getattr(sub, "__dict__", None), dict) and "tree_" in sub.__dict__:
                out.append(sub.__dict__["tree_"])
    return out


def _isolation_widths(st: LoadState, est: Any, n_trees: int, n_features: int) -> list[int] | None:
    """The input width of each tree of an isolation forest: all features, or (when
    ``_max_features`` is fewer) the columns ``estimators_features_`` picks for that tree."""
    d = est.__dict__
    max_features = d.get("_max_features")
    if not _int(max_features) or not 1 <= int(max_features) <= n_features:
        raise st.refuse(
            f"an IsolationForest whose max_features ({str(max_features)[:40]}) is not "
            f"between 1 and its {n_features} features"
        )
    if int(max_features) == n_features:
        return None
    picks = d.get("estimators_features_")
    if not isinstance(picks, list) or len(picks) != n_trees:
        raise st.refuse("an IsolationForest without the feature columns of each tree")
    widths = []
    for cols in picks:
        cols = _array(st, cols, "a tree's feature columns", ndim=1, contiguous=False)
        if cols.dtype.kind not in "iu" or (
            cols.size and not (cols.min() >= 0 and cols.max() < n_features)
        ):
            raise st.refuse("an IsolationForest whose trees read columns outside its features")
        widths.append(int(cols.shape[0]))
    return widths


def check_tree_estimator(st: LoadState, est: Any) -> None:
    """Every tree an estimator predicts with reads only the features it is given."""
    trees = _trees_of(est)
    if not trees:
        return
    sk = _sk()
    n_features = est.__dict__.get("n_features_in_")
    if not _int(n_features):
        raise st.refuse(f"{type(est).__name__} without its feature count")
    widths = [int(n_features)] * len(trees)
    if isinstance(est, sk.IsolationForest):
        widths = _isolation_widths(st, est, len(trees), int(n_features)) or widths
    for tree, width in zip(trees, widths, strict=True):
        if type(tree) is not sk.Tree:
            raise st.refuse(
                f"{type(est).__name__} holds a {type(tree).__name__} where a tree belongs"
            )
        if tree.n_features != width:
            raise st.refuse(
                f"{type(est).__name__} gives {width} features to a tree over {tree.n_features}"
            )


def check_gradient_boosting(st: LoadState, est: Any) -> None:
    """``predict_stages`` adds tree ``k`` of each stage into column ``k`` of the initial
    predictions without bounds checks: every stage is exactly as wide as those predictions."""
    sk = _sk()
    np = _np()
    d = est.__dict__
    if "estimators_" not in d:
        return
    name = type(est).__name__
    stages = _array(st, d["estimators_"], "boosting stages", ndim=2, contiguous=False)
    k = d.get("n_trees_per_iteration_")
    if (
        stages.dtype != np.dtype(object)
        or not _int(k)
        or stages.shape[1] != int(k)
        or stages.shape[0] < 1
    ):
        raise st.refuse(
            f"a {name} whose stages are {stages.shape[1:]} trees wide, not n_trees_per_iteration_ "
            f"({str(k)[:20]})"
        )
    k = int(k)
    if not all(type(t) is sk.DecisionTreeRegressor for t in stages.flat):
        raise st.refuse(f"a {name} holding something other than regression trees")
    init, loss = d.get("init_"), d.get("_loss")
    if isinstance(est, sk.GradientBoostingClassifier):
        n_classes, classes = d.get("n_classes_"), d.get("classes_")
        multi = getattr(loss, "is_multiclass", None)
        if not (
            _int(n_classes)
            and int(n_classes) >= 2
            and type(multi) is bool
            and multi == (int(n_classes) > 2)
            and k == (int(n_classes) if multi else 1)
            and getattr(classes, "shape", None) == (int(n_classes),)
        ):
            raise st.refuse(f"a {name} whose class count, loss and stage width disagree")
        if isinstance(init, str):
            ok = init == "zero"
        elif type(init) is sk.DummyClassifier:
            i = init.__dict__
            prior = i.get("class_prior_")
            ok = (
                i.get("n_outputs_") == 1
                and i.get("n_classes_") == int(n_classes)
                and getattr(prior, "shape", None) == (int(n_classes),)
                and getattr(i.get("classes_"), "shape", None) == (int(n_classes),)
            )
        else:
            ok = not multi or getattr(getattr(init, "classes_", None), "shape", None) == (k,)
    else:
        ok = k == 1 and (
            type(init) is not sk.DummyRegressor or init.__dict__.get("n_outputs_") == 1
        )
    if not ok:
        raise st.refuse(
            f"a {name} whose initial estimator predicts a different width than its stages"
        )


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
    if (
        d.get("_sparse") is not False
        or d.get("kernel") not in _LIBSVM_KERNELS
        or impl not in LIBSVM_IMPL
    ):
        raise st.refuse(
            f"a {type(est).__name__} with a kernel or layout modelstore does not validate"
        )
    sv = _array(st, sv, "support vectors", dtype="float64", ndim=2)
    n_sv = sv.shape[0]
    n_support = _array(st, d.get("_n_support"), "support counts", dtype="int32", ndim=1)
    support = _array(st, d.get("support_"), "support indices", dtype="int32", ndim=1)
    dual = _array(st, d.get("_dual_coef_"), "dual coefficients", dtype="float64", ndim=2)
    intercept = _array(st, d.get("_intercept_"), "intercepts", dtype="float64", ndim=1)
    shape_fit = d.get("shape_fit_")
    if not (
        isinstance(shape_fit, tuple) and len(shape_fit) == 2 and all(_int(v) for v in shape_fit)
    ):
        raise st.refuse("an SVM without its training shape")
    classify = impl in ("c_svc", "nu_svc")
    n_class = n_support.shape[0] if classify else 2
    pairs = n_class * (n_class - 1) // 2 if classify else 1
    counted = int(n_support.sum()) == n_sv if classify else n_support.shape == (2,)
    ok = (
        np.all(n_support >= 0)
        and counted
        and support.shape == (n_sv,)
        and (n_sv == 0 or (support.min() >= 0 and support.max() < int(shape_fit[0])))
        and dual.shape == (max(n_class - 1, 1), n_sv)
        and intercept.shape == (pairs,)
        and (d["kernel"] == "precomputed" or sv.shape[1] == int(shape_fit[1]))
    )
    for key in ("_probA", "_probB"):
        prob = _array(st, d.get(key), "probability coefficients", dtype="float64", ndim=1)
        ok = ok and prob.shape in ((0,), (pairs,))
    if classify and "class_weight_" in d:
        weights = _array(st, d["class_weight_"], "class weights", dtype="float64", ndim=1)
        ok = ok and weights.shape == (n_class,)
    if not ok:
        raise st.refuse(
            f"a {type(est).__name__} whose support vectors, counts and coefficients disagree"
        )


def _guarded(check: Any) -> Any:
    """``check``, with any error its comparisons raise on a malformed state (an array where a
    number belongs, a missing attribute) turned into a refusal naming the file."""
    from ..errors import ModelstoreError

    @functools.wraps(check)
    def run(st: LoadState, est: Any) -> None:
        try:
            check(st, est)
        except ModelstoreError:
            raise
        except Exception as e:  # noqa: BLE001 - the state is the attacker's: any failure refuses
            raise st.refuse(
                f"a {type(est).__name__} whose fitted state is malformed "
                f"({type(e).__name__} while checking it)"
            ) from None

    return run


_FINALS: dict[type, list[Any]] = {}


def finals_for(obj: Any) -> list[Any]:
    """The end-of-load checks an estimator needs, by what it is (its type alone decides:
    looked up once per type, since a forest builds hundreds of the same estimator)."""
    t = type(obj)
    found = _FINALS.get(t)
    if found is None:
        found = _FINALS[t] = _finals_for(obj)
    return found


def _finals_for(obj: Any) -> list[Any]:
    if not any((t.__module__ or "").startswith("sklearn.") for t in type(obj).__mro__):
        return []  # (a trusted subclass of a scikit-learn estimator is checked as one)
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.svm._base import BaseLibSVM

    from . import check_sklearn_state

    out: list[Any] = [check_tree_estimator]
    table = (
        (TreePredictor, check_predictor),
        (BaseHistGradientBoosting, check_hist_gradient_boosting),
        (BaseGradientBoosting, check_gradient_boosting),
        (BaseLibSVM, check_libsvm),
    )
    out += [check for kinds, check in table if isinstance(obj, kinds)]
    return [_guarded(check) for check in out + check_sklearn_state.finals_for(obj)]

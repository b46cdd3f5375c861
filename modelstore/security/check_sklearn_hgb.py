"""End-of-load checks of scikit-learn's histogram gradient boosting, whose compiled predictors trust
their fitted state: every tree's nodes, children and category bitsets in range, features the
model has, and a preprocessor that is exactly the ColumnTransformer scikit-learn builds (the
model skips its own feature check when it has one). Registered by
:func:`.check_sklearn_fitted.finals_for`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _int
from .check_sklearn import _array, _children_ok, _np

if TYPE_CHECKING:
    from .pickle_load import LoadState


def check_predictor(st: LoadState, pred: Any) -> None:
    """A histogram-gradient-boosting tree: nodes, children and bitset rows in range."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    np = _np()
    d = pred.__dict__
    nodes = _array(
        st, d.get("nodes"), "a boosting tree's nodes", dtype=PREDICTOR_RECORD_DTYPE, ndim=1
    )
    n = nodes.shape[0]
    if n < 1:
        raise st.refuse("a boosting tree without nodes")
    bitsets = [
        _array(st, d.get(k), "a boosting tree's category bitsets", dtype="uint32", ndim=2)
        for k in ("binned_left_cat_bitsets", "raw_left_cat_bitsets")
    ]
    if any(b.shape[1] != 8 for b in bitsets) or bitsets[0].shape != bitsets[1].shape:
        raise st.refuse("a boosting tree with malformed category bitsets")
    leaf = nodes["is_leaf"].astype(bool)
    cat = nodes["is_categorical"].astype(bool) & ~leaf
    if not (
        _children_ok(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), n, leaf)
        and np.all(nodes["feature_idx"][~leaf] >= 0)
        and np.all(nodes["bitset_idx"][cat] < bitsets[0].shape[0])
    ):
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

    if d.get("_preprocessor") is not None:
        _check_hgb_preprocessor(st, d["_preprocessor"], int(n_features))
    for row in predictors:
        for pred in row if isinstance(row, list) else [None]:
            if not isinstance(pred, TreePredictor) or type(pred) is not TreePredictor:
                raise st.refuse("a gradient boosting model holding something other than its trees")
            nodes = pred.nodes
            inner = ~nodes["is_leaf"].astype(bool)
            feats = nodes["feature_idx"][inner]
            if feats.size and feats.max() >= int(n_features):
                raise st.refuse(
                    "a gradient boosting tree that reads features the model does not have"
                )
            cat = feats[nodes["is_categorical"][inner].astype(bool)]
            if cat.size and (
                is_cat is None
                or not isinstance(is_cat, np.ndarray)
                or is_cat.shape != (int(n_features),)
                or not np.all(is_cat[cat])
            ):
                raise st.refuse(
                    "a gradient boosting tree with categorical splits on non-categorical features"
                )


def _selected(st: LoadState, cols: Any, n: int) -> int:
    """How many of ``n`` input columns a ColumnTransformer selection picks."""
    np = _np()
    if isinstance(cols, (slice, str)):
        raise st.refuse("a gradient boosting preprocessor selecting columns by name or slice")
    if isinstance(cols, list) and not all(type(c) in (int, bool) for c in cols):
        raise st.refuse("a gradient boosting preprocessor with a malformed column selection")
    cols = np.asarray(cols) if isinstance(cols, (list, np.ndarray)) else None
    if cols is None or cols.ndim != 1:
        raise st.refuse("a gradient boosting preprocessor with a malformed column selection")
    if cols.dtype == np.dtype(bool):
        if cols.shape != (n,):
            raise st.refuse(
                "a gradient boosting preprocessor whose column mask does not match its features"
            )
        return int(cols.sum())
    if cols.size and (cols.dtype.kind not in "iu" or cols.min() < 0 or cols.max() >= n):
        raise st.refuse("a gradient boosting preprocessor selecting columns it does not have")
    return int(cols.size)


def _check_hgb_preprocessor(st: LoadState, pre: Any, n_features: int) -> None:
    """HistGradientBoosting skips its own feature check when it has a preprocessor: that must
    be the ColumnTransformer it builds itself (an OrdinalEncoder and a check_array pass-through)
    and hand the trees exactly ``n_features`` columns."""
    import functools

    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    d = pre.__dict__ if type(pre) is ColumnTransformer else {}
    fitted = d.get("transformers_")
    if d.get("n_features_in_") != n_features or not isinstance(fitted, list):
        raise st.refuse(
            f"a gradient boosting model whose preprocessor is a {type(pre).__name__}, not the "
            f"ColumnTransformer over its {n_features} features that scikit-learn builds"
        )
    by_name = d.get("_transformer_to_input_indices")
    width = 0
    for item in fitted:
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)):
            raise st.refuse("a gradient boosting preprocessor with a malformed transformer list")
        name, trans, cols = item
        picked = _selected(st, cols, n_features)
        if isinstance(by_name, dict) and name in by_name and len(by_name[name]) != picked:
            raise st.refuse("a gradient boosting preprocessor whose column selections disagree")
        if isinstance(trans, str) and trans == "drop":
            continue
        func = trans.__dict__.get("func") if type(trans) is FunctionTransformer else None
        if type(trans) is OrdinalEncoder:
            ok = trans.__dict__.get("n_features_in_") == picked
        elif type(trans) is FunctionTransformer:
            ok = (
                isinstance(func, functools.partial)
                and st.is_value(func.func, "sklearn.utils.validation:check_array")
                and not trans.__dict__.get("kw_args")
            )
        else:
            ok = isinstance(trans, str) and trans == "passthrough"
        if not ok:
            raise st.refuse(
                f"a gradient boosting preprocessor holding {type(trans).__name__} {name!r}, not "
                "an OrdinalEncoder or the check_array pass-through"
            )
        width += picked
    if width != n_features:
        raise st.refuse(
            f"a gradient boosting preprocessor giving {width} columns to trees over {n_features}"
        )

"""Every scikit-learn estimator fitted on a small dataset, for the allow-list generator and the
benign sweep (tests/security/test_benign_sweep.py).

``fitted()`` yields ``(name, estimator, X)`` for every estimator ``all_estimators()`` lists
that fits with default arguments (meta-estimators get a small inner estimator), plus the
combinations people actually save: a ColumnTransformer + HistGradientBoosting pipeline on a
DataFrame, a fitted GridSearchCV, CalibratedClassifierCV, score and transform functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Estimators that cannot fit on a small tabular dataset without special data.
SKIP = {"SparseCoder"}  # needs a dictionary matching the data; covered separately below


def _data() -> dict[str, Any]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    rng = np.random.RandomState(0)
    return {
        "X": X,
        "y": y,
        "yr": X[:, 0] + rng.normal(scale=0.1, size=len(y)),
        "Y2": np.c_[X[:, 0], X[:, 1]],
        "Xpos": np.abs(X) + 0.1,
        "text": ["the cat sat", "a dog ran", "the dog sat", "a cat ran"] * 10,
        "ytext": np.array([0, 1, 0, 1] * 10),
    }


def _meta(name: str) -> dict[str, Any]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    clf, reg = LogisticRegression(max_iter=500), LinearRegression()
    table: dict[str, dict[str, Any]] = {
        "ClassifierChain": {"estimator": clf},
        "RegressorChain": {"estimator": reg},
        "ColumnTransformer": {
            "transformers": [("s", StandardScaler(), [0, 1]), ("p", "passthrough", [2, 3])]
        },
        "FeatureUnion": {"transformer_list": [("s", StandardScaler()), ("p", PCA(2))]},
        "FixedThresholdClassifier": {"estimator": clf},
        "FrozenEstimator": {"estimator": clf},
        "GridSearchCV": {
            "estimator": DecisionTreeClassifier(),
            "param_grid": {"max_depth": [1, 2]},
        },
        "RandomizedSearchCV": {
            "estimator": DecisionTreeClassifier(),
            "param_distributions": {"max_depth": [1, 2]},
            "n_iter": 2,
        },
        "HalvingGridSearchCV": {
            "estimator": DecisionTreeClassifier(),
            "param_grid": {"max_depth": [1, 2]},
        },
        "HalvingRandomSearchCV": {
            "estimator": DecisionTreeClassifier(),
            "param_distributions": {"max_depth": [1, 2]},
        },
        "MultiOutputClassifier": {"estimator": clf},
        "MultiOutputRegressor": {"estimator": reg},
        "OneVsOneClassifier": {"estimator": clf},
        "OneVsRestClassifier": {"estimator": clf},
        "OutputCodeClassifier": {"estimator": clf},
        "Pipeline": {"steps": [("s", StandardScaler()), ("c", clf)]},
        "RFE": {"estimator": clf},
        "RFECV": {"estimator": clf},
        "SelectFromModel": {"estimator": clf},
        "SelfTrainingClassifier": {"estimator": clf},
        "SequentialFeatureSelector": {"estimator": clf, "n_features_to_select": 2},
        "StackingClassifier": {"estimators": [("t", DecisionTreeClassifier()), ("l", clf)]},
        "StackingRegressor": {"estimators": [("t", DecisionTreeRegressor()), ("l", reg)]},
        "TunedThresholdClassifierCV": {"estimator": clf},
        "VotingClassifier": {"estimators": [("t", DecisionTreeClassifier()), ("l", clf)]},
        "VotingRegressor": {"estimators": [("t", DecisionTreeRegressor()), ("l", reg)]},
        "CCA": {"n_components": 1},
        "PLSCanonical": {"n_components": 1},
        "PLSSVD": {"n_components": 1},
        "GaussianRandomProjection": {"n_components": 2},
        "SparseRandomProjection": {"n_components": 2},
    }
    return table.get(name, {})


def _fit(name: str, est: Any, d: dict[str, Any]) -> Any:
    """Fit ``est`` on data that suits it; return the X it can predict or transform on."""
    from sklearn.base import is_classifier, is_regressor

    X, y = d["X"], d["y"]
    if name in ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer"):
        est.fit(d["text"])
        return d["text"][:5]
    if name == "DictVectorizer":
        rows = [{"a": float(r[0]), "b": float(r[1])} for r in X]
        est.fit(rows)
        return rows[:5]
    if name == "FeatureHasher":
        rows = [{"a": float(r[0])} for r in X]
        est.fit(rows)
        return rows[:5]
    if name in ("LabelEncoder", "LabelBinarizer"):
        est.fit(y)
        return y[:5]
    if name == "MultiLabelBinarizer":
        est.fit([[1, 2], [3]])
        return [[1], [2, 3]]
    if name == "IsotonicRegression":
        est.fit(X[:, 0], d["yr"])
        return X[:5, 0]
    if name == "KernelCenterer":
        K = X @ X.T
        est.fit(K)
        return K[:5]
    if name in ("PatchExtractor",):
        imgs = np.random.RandomState(0).rand(2, 8, 8)
        est.fit(imgs)
        return imgs
    if name.startswith("MultiTask") or name in ("CCA", "PLSCanonical", "PLSRegression", "PLSSVD"):
        est.fit(X, d["Y2"])
        return X[:5]
    if name in (
        "AdditiveChi2Sampler",
        "SkewedChi2Sampler",
        "NMF",
        "MiniBatchNMF",
        "LatentDirichletAllocation",
        "MultinomialNB",
        "ComplementNB",
        "CategoricalNB",
        "PoissonRegressor",
        "GammaRegressor",
        "TweedieRegressor",
        "BernoulliRBM",
    ):
        if is_classifier(est):
            est.fit(np.round(d["Xpos"]), y)
        elif is_regressor(est):
            est.fit(d["Xpos"], d["Xpos"][:, 0])
        else:
            est.fit(d["Xpos"])
        return np.round(d["Xpos"][:5]) if is_classifier(est) else d["Xpos"][:5]
    if is_regressor(est):
        est.fit(X, d["yr"])
    else:
        est.fit(X, y)
    return X[:5]


def _extras() -> Iterator[tuple[str, Any, Any]]:
    """Combinations people actually save, beyond one estimator with defaults."""
    import pandas as pd
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    d = _data()
    X, y = d["X"], d["y"]
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    df["colour"] = np.array(["red", "green", "blue"])[y]
    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), ["a", "b", "c", "d"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
        ]
    )
    yield (
        "ColumnTransformer+HGB on a DataFrame",
        Pipeline([("ct", ct), ("hgb", HistGradientBoostingClassifier(max_iter=10))]).fit(df, y),
        df.head(),
    )
    cat = np.c_[np.round(X[:, :1]), X[:, 1:]]
    yield (
        "HGB with categorical features",
        HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(cat, y),
        cat[:5],
    )
    yield "HGB regressor", HistGradientBoostingRegressor(max_iter=10).fit(X, d["yr"]), X[:5]
    yield "CalibratedClassifierCV(SVC)", CalibratedClassifierCV(SVC()).fit(X, y), X[:5]
    yield (
        "GridSearchCV(LogisticRegression)",
        GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}).fit(X, y),
        X[:5],
    )
    yield (
        "SelectKBest(chi2)",
        make_pipeline(SelectKBest(chi2, k=2), LogisticRegression(max_iter=500)).fit(X, y),
        X[:5],
    )
    yield (
        "FunctionTransformer(np.log1p)",
        make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y),
        X[:5],
    )
    yield "SGDClassifier(log_loss)", SGDClassifier(loss="log_loss").fit(X, y), X[:5]
    yield "SVC(probability=True)", SVC(probability=True).fit(X, y), X[:5]


def fitted() -> Iterator[tuple[str, Any, Any]]:
    """``(name, fitted estimator, inputs to predict/transform on)`` for the whole zoo."""
    from sklearn.utils import all_estimators

    d = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators():
            if name in SKIP:
                continue
            try:
                est = cls(**_meta(name))
                xs = _fit(name, est, d)
            except Exception:  # noqa: BLE001 - an estimator this generic recipe cannot fit
                continue
            yield name, est, xs
        yield from _extras()


def fitted_once(shared: Path) -> list[tuple[str, Any, Any]]:
    """:func:`fitted`, fitted once per test run: the first test to ask fits the zoo and leaves
    it pickled in ``shared`` (a folder every xdist worker sees); the others wait for it and
    read it back (our own file: plain ``pickle``)."""
    import fcntl
    import pickle

    import sklearn

    path = shared / f"sklearn-zoo-{sklearn.__version__}.pkl"
    with open(shared / "sklearn-zoo.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                with warnings.catch_warnings():  # (deprecated classes warn when rebuilt)
                    warnings.simplefilter("ignore")
                    zoo: list[tuple[str, Any, Any]] = pickle.loads(path.read_bytes())
                return zoo
            zoo = list(fitted())
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(zoo, protocol=5))
            tmp.replace(path)
            return zoo
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def outputs(est: Any, xs: Any) -> list[Any]:
    """What the estimator gives for ``xs``: every predict-like method that works."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        methods = ["predict", "predict_proba", "decision_function", "transform", "score_samples"]
        if type(est).__name__ == "BernoulliRBM":
            methods.remove("score_samples")  # draws random samples on each call
        for method in methods:
            fn = getattr(est, method, None)
            if fn is None:
                continue
            try:
                value = fn(xs)
            except Exception:  # noqa: BLE001 - not every method applies to every fitted model
                continue
            out.append(
                (method, value.toarray() if hasattr(value, "toarray") else np.asarray(value))
            )
    return out

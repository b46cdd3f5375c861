"""Fitted scikit-learn state that is valid attribute by attribute but inconsistent as a whole
(siblings of tests/security/test_redteam.py::test_fitted_state_never_crashes_predict).

Each hostile file is first shown to be hostile under plain ``joblib.load`` + ``predict`` in a
subprocess: a crash signal, an out-of-bounds read that raises nothing, (under a 1 GiB
address-space limit) an allocation of gigabytes from a file of a few KB, or a transform that
never returns. Then
``ms.load`` must refuse it with a ModelstoreError naming the file. Benign variants of the same
estimators (non-default parameters the zoo does not fit) must still load and predict alike.
"""

from __future__ import annotations

import os
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402
from tests.hang import GO, run_or_hang  # noqa: E402
from tests.security.test_redteam import ROOT, run_py  # noqa: E402

WIDE = 100_000  # features: an out-of-bounds read of WIDE doubles past a one-column buffer


def _radius_labels(path: Path) -> str:
    from sklearn.neighbors import RadiusNeighborsClassifier

    x = np.random.RandomState(0).rand(40, 3)
    m = RadiusNeighborsClassifier(radius=10.0, algorithm="brute", metric="manhattan").fit(
        x, np.arange(40) % 2
    )
    m._y = np.full(40, 10**12, dtype=np.intp)  # class indices the Cython class mode counts into
    joblib.dump(m, path)
    return "np.random.rand(2, 3)"


def _one_hot_widths(path: Path) -> str:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    cats = np.random.RandomState(0).randint(0, 5, size=(40, 3))
    m = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(cats, np.arange(40) % 2)
    m.steps[0][1]._n_features_outs = [
        -(10**12),
        10**12,
        15,
    ]  # same total, columns far outside the matrix
    joblib.dump(m, path)
    return "np.random.RandomState(1).randint(0, 5, size=(200, 3))"


def _knn_fit_x_width(path: Path) -> str:
    from sklearn.neighbors import KNeighborsRegressor

    x = np.random.RandomState(0).rand(4, WIDE)
    m = KNeighborsRegressor(n_neighbors=1, algorithm="brute", metric="manhattan").fit(x, x[:, 0])
    m._fit_X = np.zeros((4, 1))  # the distance loop reads WIDE columns of it
    joblib.dump(m, path)
    return f"np.random.rand(1, {WIDE})"


def _bisecting_centers(path: Path) -> str:
    from sklearn.cluster import BisectingKMeans

    m = BisectingKMeans(n_clusters=3, random_state=0).fit(np.random.RandomState(0).rand(6, WIDE))
    del m._X_mean  # (the mean would fail to broadcast first)
    m._bisecting_tree.left.center = np.zeros(1)
    m._bisecting_tree.right.center = np.zeros(1)
    joblib.dump(m, path)
    return f"np.random.rand(1, {WIDE})"


def _isolation_max_features(path: Path) -> str:
    from sklearn.ensemble import IsolationForest

    m = IsolationForest(n_estimators=3, random_state=0).fit(np.random.RandomState(0).rand(50, WIDE))
    m._max_features = 1  # each tree gets one column of X, unchecked (check_input=False) ...
    m.estimators_features_ = [np.zeros(1, dtype=np.intp)] * 3
    for tree in m.estimators_:
        tree.n_features_in_ = 1  # ... and reads WIDE of them
    joblib.dump(m, path)
    return f"np.random.rand(2, {WIDE})"


def _random_projection_rows(path: Path) -> str:
    from scipy import sparse
    from sklearn.random_projection import SparseRandomProjection

    m = SparseRandomProjection(n_components=2, random_state=0).fit(
        np.random.RandomState(0).rand(20, 3)
    )
    m.components_ = sparse.csc_matrix(
        (np.ones(3), np.zeros(3, dtype=np.int32), np.arange(4, dtype=np.int32)), shape=(2**28, 3)
    )  # 3 stored values, 2**28 dense output columns
    m.n_components_ = 2**28
    joblib.dump(m, path)
    return "np.random.rand(4, 3)"


def _polynomial_width(path: Path) -> str:
    from sklearn.preprocessing import PolynomialFeatures

    m = PolynomialFeatures(degree=2).fit(np.random.RandomState(0).rand(20, 3))
    m._n_out_full = 2**28  # transform allocates (n_samples, _n_out_full) before filling it
    joblib.dump(m, path)
    return "np.random.rand(8, 3)"


def _spline_width(path: Path) -> str:
    from sklearn.preprocessing import SplineTransformer

    m = SplineTransformer().fit(np.random.RandomState(0).rand(20, 3))
    m.n_features_out_ = 2**28  # transform allocates (n_samples, n_features_out_)
    joblib.dump(m, path)
    return "np.random.rand(8, 3)"


def _sketch_width(path: Path) -> str:
    from sklearn.kernel_approximation import PolynomialCountSketch

    m = PolynomialCountSketch(n_components=4, random_state=0).fit(
        np.random.RandomState(0).rand(20, 3)
    )
    m.n_components = 2**28  # transform allocates (n_samples, degree, n_components)
    joblib.dump(m, path)
    return "np.random.rand(4, 3)"


def _chi2_steps(path: Path) -> str:
    from sklearn.kernel_approximation import AdditiveChi2Sampler

    m = AdditiveChi2Sampler(sample_steps=2).fit(np.random.RandomState(0).rand(20, 3))
    m.sample_steps, m.sample_interval = 10**5, 0.5  # 2 * 10**5 - 1 output blocks
    joblib.dump(m, path)
    return "np.random.rand(5000, 3)"


def _nmf_iterations(path: Path) -> str:
    from sklearn.decomposition import NMF

    m = NMF(n_components=2, max_iter=500, random_state=0).fit(np.random.RandomState(0).rand(20, 3))
    m.max_iter, m.tol = 10**12, -1.0  # transform's solver never converges and never stops
    joblib.dump(m, path)
    return "np.random.rand(4, 3)"


def _dict_vectorizer_column(path: Path) -> str:
    from sklearn.feature_extraction import DictVectorizer

    m = DictVectorizer(sparse=False).fit([{"a": 1, "b": 2}, {"c": 3}])
    m.vocabulary_["a"] = 2**31 - 1  # a column far outside the matrix toarray() writes
    joblib.dump(m, path)
    return "[{'a': 1.0, 'b': 2.0}] * 50"


def _agglomeration_labels(path: Path) -> str:
    from sklearn.cluster import FeatureAgglomeration

    m = FeatureAgglomeration(n_clusters=2).fit(np.random.RandomState(0).rand(20, 3))
    m.labels_ = np.array([0, 1, 2**28])  # transform: bincount(labels_) per sample
    joblib.dump(m, path)
    return "np.random.rand(4, 3)"


#: name -> (builder, what the naive load + predict does: "crash", "silent" read, "alloc" or "hang")
HOSTILE: dict[str, tuple[Callable[[Path], str], str]] = {
    "radius_labels": (_radius_labels, "crash"),
    "one_hot_widths": (_one_hot_widths, "crash"),
    "knn_fit_x_width": (_knn_fit_x_width, "silent"),
    "bisecting_centers": (_bisecting_centers, "silent"),
    "isolation_max_features": (_isolation_max_features, "silent"),
    "random_projection_rows": (_random_projection_rows, "alloc"),
    "polynomial_width": (_polynomial_width, "alloc"),
    "spline_width": (_spline_width, "alloc"),
    "sketch_width": (_sketch_width, "alloc"),
    "chi2_steps": (_chi2_steps, "alloc"),
    "nmf_iterations": (_nmf_iterations, "hang"),
    "dict_vectorizer_column": (_dict_vectorizer_column, "crash"),
    "agglomeration_labels": (_agglomeration_labels, "alloc"),
}


def naive_code(path: Path, sample: str, limit_mb: int | None = None) -> str:
    """Plain joblib.load, then predict (or transform) in a child; GO just before predicting."""
    return textwrap.dedent(f"""
        import resource, warnings, joblib, numpy as np
        warnings.simplefilter("ignore")
        if {limit_mb!r}:
            resource.setrlimit(resource.RLIMIT_AS, ({limit_mb!r} << 20,) * 2)
        m = joblib.load({str(path)!r})
        X = {sample}
        f = getattr(m, "predict", None) or m.transform
        {GO}
        try:
            f(X)
            print("PREDICTED")
        except MemoryError:
            print("MEMORYERROR")
        import gc; gc.collect()
        print("SURVIVED")
    """)


def naive(path: Path, sample: str, limit_mb: int | None = None) -> tuple[int, str]:
    r = run_py(naive_code(path, sample, limit_mb), timeout=180)
    return r.returncode, r.stdout + r.stderr[-800:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_inconsistent_fitted_state_is_refused(tmp_path: Path, name: str) -> None:
    """Each hostile file harms a naive joblib.load + predict, and ms.load refuses it by name."""
    build, harm = HOSTILE[name]
    path = tmp_path / f"{name}.joblib"
    sample = build(path)
    if harm == "crash":
        rc, out = naive(path, sample)
        assert rc < 0 and "SURVIVED" not in out, (rc, out)
    elif harm == "silent":  # compiled code reads past a buffer and raises nothing
        rc, out = naive(path, sample)
        assert rc == 0 and "PREDICTED" in out, (rc, out)
    elif harm == "hang":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        assert run_or_hang([sys.executable, "-c", naive_code(path, sample)], env=env) is None
    else:
        assert path.stat().st_size < 10_000
        rc, out = naive(path, sample, limit_mb=1024)
        assert "MEMORYERROR" in out, (rc, out)
    with pytest.raises(ms.ModelstoreError) as err:
        ms.load(path)
    assert str(path) in str(err.value) or path.name in str(err.value)


# -- benign variants: the checks must not refuse real models ------------------------------------


def _benign() -> list[tuple[str, object, object]]:
    import pandas as pd
    from sklearn.cluster import BisectingKMeans, FeatureAgglomeration, KMeans
    from sklearn.decomposition import NMF
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        IsolationForest,
    )
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.kernel_approximation import AdditiveChi2Sampler, PolynomialCountSketch
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import (
        KNeighborsClassifier,
        KNeighborsRegressor,
        RadiusNeighborsClassifier,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        PolynomialFeatures,
        SplineTransformer,
    )
    from sklearn.random_projection import GaussianRandomProjection, SparseRandomProjection

    rng = np.random.RandomState(0)
    x = rng.rand(60, 4)
    y3, y2 = np.arange(60) % 3, np.arange(60) % 2
    cats = rng.randint(0, 6, size=(60, 3))
    docs = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"] * 5
    frame = pd.DataFrame({"a": rng.rand(60), "c": pd.Categorical(rng.choice(["x", "y", "z"], 60))})
    return [
        ("knn_kd_2d", KNeighborsClassifier(3, algorithm="kd_tree").fit(x, np.c_[y3, y2]), x),
        (
            "knn_ball_distance",
            KNeighborsClassifier(3, algorithm="ball_tree", weights="distance").fit(x, y3),
            x,
        ),
        (
            "knn_precomputed",
            KNeighborsRegressor(3, metric="precomputed").fit(x @ x.T, x[:, 0]),
            x @ x.T,
        ),
        ("radius", RadiusNeighborsClassifier(2.0, metric="manhattan").fit(x, y3), x),
        ("gb_multiclass", GradientBoostingClassifier(n_estimators=5).fit(x, y3), x),
        ("gb_binary_zero", GradientBoostingClassifier(n_estimators=5, init="zero").fit(x, y2), x),
        (
            "gb_custom_init",
            GradientBoostingRegressor(n_estimators=5, init=LinearRegression()).fit(x, x[:, 0]),
            x,
        ),
        (
            "gb_multiclass_init",
            GradientBoostingClassifier(n_estimators=3, init=LogisticRegression()).fit(x, y3),
            x,
        ),
        (
            "hgb_categorical",
            HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype").fit(
                frame, y2
            ),
            frame,
        ),
        (
            "iforest_half",
            IsolationForest(n_estimators=5, max_features=0.5, random_state=0).fit(x),
            x,
        ),
        ("bisecting", BisectingKMeans(4, random_state=0).fit(x), x),
        ("kmeans_elkan", KMeans(3, algorithm="elkan", n_init=1, random_state=0).fit(x), x),
        (
            "one_hot_drop",
            OneHotEncoder(drop="first", min_frequency=5, handle_unknown="infrequent_if_exist").fit(
                cats
            ),
            cats,
        ),
        ("poly_interactions", PolynomialFeatures(degree=(2, 3), interaction_only=True).fit(x), x),
        ("sparse_projection", SparseRandomProjection(3, random_state=0).fit(x), x),
        ("gaussian_projection", GaussianRandomProjection(3, random_state=0).fit(x), x),
        (
            "tfidf",
            make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression()).fit(
                docs, np.arange(20) % 2
            ),
            docs,
        ),
        (
            "hashing",
            make_pipeline(HashingVectorizer(n_features=32), LogisticRegression()).fit(
                docs, np.arange(20) % 2
            ),
            docs,
        ),
        ("spline", SplineTransformer(n_knots=4, degree=2, include_bias=False).fit(x), x),
        ("sketch", PolynomialCountSketch(n_components=8, random_state=0).fit(x), x),
        ("chi2", AdditiveChi2Sampler(sample_steps=3).fit(x), x),
        ("nmf", NMF(n_components=2, max_iter=400, random_state=0).fit(x), x),
        (
            "dict_vectorizer",
            DictVectorizer(sparse=False).fit([{"a": 1, "b": "x"}, {"c": 3}]),
            [{"a": 2, "b": "x", "c": 2}],
        ),
        ("agglomeration", FeatureAgglomeration(n_clusters=2).fit(x), x),
        (
            "function_log1p",
            make_pipeline(FunctionTransformer(np.log1p), LinearRegression()).fit(x, x[:, 0]),
            x,
        ),
    ]


def _out(m: object, x: object) -> object:
    f = getattr(m, "predict", None) or m.transform  # type: ignore[attr-defined]
    out = f(x)
    return out.toarray() if hasattr(out, "toarray") else out


@pytest.mark.slow
def test_benign_variants_still_load_and_predict_alike(tmp_path: Path) -> None:
    """Real models with the parameters the checks care about load and predict as fitted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = _benign()
    for name, model, x in cases:
        path = tmp_path / f"{name}.joblib"
        joblib.dump(model, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = ms.load(path)
            np.testing.assert_allclose(
                np.asarray(_out(loaded, x), dtype=float),
                np.asarray(_out(model, x), dtype=float),
                err_msg=name,
            )


# -- reference functions only where scikit-learn keeps them ---------------------------------------


def test_every_reference_function_has_its_places() -> None:
    """Each function the generated allow-list holds "by reference" has the attributes where it
    may sit (check_sklearn_places.PLACES); one without places is refused everywhere."""
    import sys
    import types

    from modelstore.security.allowlist_sklearn import ENTRIES, REASONS
    from modelstore.security.check_sklearn_places import PLACES
    from modelstore.security.policy import GENERAL

    for e in ENTRIES:
        if e.reason == REASONS["reference"]:
            GENERAL.resolve(e, "test")
            obj = getattr(sys.modules[e.module], e.name)
            if isinstance(obj, types.FunctionType):
                assert f"{e.module}:{e.name}" in PLACES, e


def _reference_elsewhere(kind: str) -> object:
    """A pipeline holding an allowed reference function where no model keeps it."""
    from sklearn.cluster._kmeans import _kmeans_single_lloyd
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils.validation import check_array

    x = np.random.RandomState(0).rand(20, 3)
    if kind == "check_array_as_func":  # HGB keeps it only inside a partial
        return make_pipeline(FunctionTransformer(check_array), LinearRegression()).fit(x, x[:, 0])
    return make_pipeline(FunctionTransformer(np.log1p, kw_args={"callback": _kmeans_single_lloyd}))


@pytest.mark.parametrize("kind", ["check_array_as_func", "in_kw_args"])
def test_reference_functions_elsewhere_are_refused(tmp_path: Path, kind: str) -> None:
    """check_array as a FunctionTransformer's func, or a k-means helper in its keyword
    arguments, is refused: reference functions sit only where scikit-learn keeps them."""
    path = tmp_path / f"{kind}.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joblib.dump(_reference_elsewhere(kind), path)
    with pytest.raises(
        ms.UnsafeModelError, match="allowed only where scikit-learn keeps it"
    ) as err:
        ms.load(path)
    assert path.name in str(err.value)


# -- malformed values of the wrong kind are refusals, never other exceptions ------------------------


def _mutated(kind: str) -> object:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import OneHotEncoder

    x = np.random.RandomState(0).rand(20, 3)
    if kind.startswith("knn"):
        m = KNeighborsClassifier(3).fit(x, np.arange(20) % 2)
        setattr(
            m,
            *{
                "knn_y_list": ("_y", [0] * 20),
                "knn_count_array": ("n_samples_fit_", np.arange(3)),
                "knn_metric_array": ("effective_metric_", np.arange(3)),
                "knn_classes_2d": ("classes_", np.zeros((2, 2))),
            }[kind],
        )
    elif kind == "gb_stages_list":
        m = GradientBoostingRegressor(n_estimators=2).fit(x, x[:, 0])
        m.estimators_ = list(m.estimators_.ravel())
    elif kind == "vocabulary_list":
        m = CountVectorizer().fit(["good movie", "bad film"])
        m.vocabulary_ = ["good", "movie"]
    elif kind == "hashing_float":
        m = HashingVectorizer(n_features=8)
        m.n_features = 8.5
    else:
        m = OneHotEncoder().fit(np.random.RandomState(0).randint(0, 3, size=(20, 2)))
        m._n_features_outs = np.array([3, 3])
    return m


@pytest.mark.parametrize(
    "kind",
    [
        "knn_y_list",
        "knn_count_array",
        "knn_metric_array",
        "knn_classes_2d",
        "gb_stages_list",
        "vocabulary_list",
        "hashing_float",
        "one_hot_array",
    ],
)
def test_malformed_fitted_values_are_refused_cleanly(tmp_path: Path, kind: str) -> None:
    """Values of the wrong kind are refused with a ModelstoreError naming the file, never a
    foreign exception from the checks' own comparisons (a metric name that is an array is
    harmless to compiled code: that one may load)."""
    path = tmp_path / f"{kind}.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joblib.dump(_mutated(kind), path)
        if kind == "knn_metric_array":
            ms.load(path)
            return
    with pytest.raises(ms.ModelstoreError) as err:
        ms.load(path)
    assert path.name in str(err.value)

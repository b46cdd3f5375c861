"""scikit-learn backend: the contract suite plus the pickle gate, joblib and predict."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.testing import BackendContract, run_python  # noqa: E402
from tests.hostile import Reduce  # noqa: E402

X, Y = load_iris(return_X_y=True)
NAMES = [str(n) for n in load_iris().target_names]


def forest(n: int = 5) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=n, random_state=0).fit(X, Y)


class TestSklearnContract(BackendContract):
    backend_name = "sklearn"
    suffix = ".joblib"
    backend_module = "modelstore.formats.sklearn.backend"
    framework_modules = ("sklearn", "joblib")

    def make_model(self) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)

    def make_input(self) -> Any:
        return X[::7]

    def native_save(self, model: Any, path: Path) -> None:
        joblib.dump(model, path)

    def native_load(self, path: Path) -> Any:
        return joblib.load(path)

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        return loaded.predict(x)

    def write_hostile(self, path: Path, marker: Path) -> bool:
        joblib.dump(
            {"model": LogisticRegression(), "x": Reduce(os.system, f"touch {marker}")}, path
        )
        return True


def test_benign_models_load_with_pickle_warning(tmp_path: Path) -> None:
    """Forests, pipelines, numpy arrays and random states load, each with a PickleWarning."""
    objs = {
        "forest.joblib": forest(),
        "pipe.pkl": make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, Y),
        "arrays.pkl": {"a": np.arange(5.0), "rng": np.random.default_rng(0), "s": np.float32(2)},
    }
    for name, obj in objs.items():
        path = tmp_path / name
        if name.endswith(".pkl"):
            path.write_bytes(pickle.dumps(obj, protocol=2 if "pipe" in name else 5))
        else:
            joblib.dump(obj, path)
        assert ms.scan(path).verdict == "safe", ms.scan(path).findings
        with pytest.warns(ms.PickleWarning):
            loaded = ms.load(path)
        assert type(loaded) is type(obj)


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_compressed_joblib_round_trip(tmp_path: Path, compress: Any) -> None:
    """Every joblib compression scans safe, inspects and loads back equal."""
    path = tmp_path / "f.joblib"
    model = forest()
    ms.save(model, path, compress=compress)
    assert ms.scan(path).verdict == "safe"
    info = ms.inspect(path)
    assert info.metadata["estimator"] == "sklearn.ensemble._forest.RandomForestClassifier"
    with pytest.warns(ms.PickleWarning):
        loaded = ms.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_inspect_reads_estimator_without_unpickling(tmp_path: Path) -> None:
    """inspect shows class, params, n_features_in_, classes_, arrays; imports no sklearn/numpy."""
    path = tmp_path / "f.joblib"
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(
            X, np.array(NAMES)[Y]
        ),
        path,
    )
    proc = run_python(f"""
        import sys, json, modelstore as ms
        info = ms.inspect({str(path)!r})
        print(json.dumps(info.to_dict()))
        print([m for m in ('sklearn', 'numpy', 'joblib', 'scipy') if m in sys.modules])
    """)
    assert proc.returncode == 0, proc.stderr
    import json

    data = json.loads(proc.stdout.splitlines()[0])
    assert proc.stdout.splitlines()[1] == "[]"
    md = data["metadata"]
    assert md["estimator"] == "sklearn.pipeline.Pipeline"
    assert md["steps"][1] == [
        "logisticregression",
        "sklearn.linear_model._logistic.LogisticRegression",
    ]
    assert md["classes_"] == NAMES and data["labels"] == NAMES
    assert md["n_features_in_"] == 4
    assert data["executes_code"] is True and "sklearn.pipeline.Pipeline" in data["globals"]
    assert any(t["name"].endswith("coef_") and t["shape"] == [3, 4] for t in data["tensors"])


def test_predict_raw_proba_label(tmp_path: Path) -> None:
    """predict gives classes, predict_proba, and labels mapped through saved names."""
    model = forest()
    path = tmp_path / "f.joblib"
    ms.save(model, path, labels=NAMES)
    with pytest.warns(ms.PickleWarning):
        loaded = ms.load(path)
    np.testing.assert_array_equal(ms.predict(loaded, X), model.predict(X))
    np.testing.assert_allclose(ms.predict(loaded, X, output="proba"), model.predict_proba(X))
    assert ms.predict(loaded, X[:2], output="label") == ["setosa", "setosa"]
    np.testing.assert_array_equal(ms.predict(loaded, X, batch_size=7), model.predict(X))
    assert ms.predict(loaded, X[:3].tolist()).tolist() == model.predict(X[:3]).tolist()


def test_predict_dataframe(tmp_path: Path) -> None:
    """DataFrame inputs (with feature names) reach the estimator as DataFrames."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    model = LogisticRegression(max_iter=500).fit(df, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns if feature names are lost
        out = ms.predict(model, df.iloc[:10], batch_size=4)
    np.testing.assert_array_equal(out, model.predict(df.iloc[:10]))


def test_predict_from_path(tmp_path: Path) -> None:
    """predict(path) loads through the gate first."""
    path = tmp_path / "f.pkl"
    ms.save(forest(), path)
    with pytest.warns(ms.PickleWarning):
        out = ms.predict(path, X[:4])
    assert out.tolist() == [0, 0, 0, 0]


def test_proba_on_regressor_is_clear(tmp_path: Path) -> None:
    """output='proba' on a model without predict_proba says so."""
    from sklearn.linear_model import LinearRegression

    with pytest.raises(ms.UnsupportedModelError, match="predict_proba"):
        ms.predict(LinearRegression().fit(X, Y), X, output="proba")


def test_unknown_estimator_package_needs_trust(tmp_path: Path) -> None:
    """A class outside the allow-list (here a local one) needs trust=[...] to load."""
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps(Reduce(dict, [("a", 1)]), protocol=2))
    # builtins.dict is allowed: loads
    with pytest.warns(ms.PickleWarning):
        assert ms.load(path) == {"a": 1}
    import calendar

    path.write_bytes(pickle.dumps(Reduce(calendar.Calendar, 3), protocol=2))
    with pytest.raises(ms.UnsafeModelError, match=r"trust=\['calendar.Calendar'\]"):
        ms.load(path)
    with pytest.warns(ms.PickleWarning):
        assert ms.load(path, trust=["calendar.Calendar"]).firstweekday == 3


def test_damaged_joblib_is_integrity_error(tmp_path: Path) -> None:
    """A truncated foreign joblib file fails cleanly (scan unknown, load refused)."""
    path = tmp_path / "f.joblib"
    joblib.dump(forest(), path)
    path.write_bytes(path.read_bytes()[:-500])
    assert ms.scan(path).verdict == "unknown"
    with pytest.raises(ms.ModelstoreError):
        ms.load(path)


def test_model_argument_is_refused_for_pickles(tmp_path: Path) -> None:
    """model= makes no sense for a pickle and says why."""
    path = tmp_path / "f.joblib"
    ms.save(forest(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        with pytest.raises(ms.ArgumentError, match="whole estimator"):
            ms.load(path, model=LogisticRegression)

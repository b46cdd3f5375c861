"""XGBoost (.json/.ubj) and LightGBM (model text) in their own formats: files written by the
libraries load, ms.save picks the native format (never a pickle by default), predict, inspect,
ONNX export through onnxmltools, and hostile files refused with a ModelstoreError."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms

pytestmark = pytest.mark.slow  # native parsers probed in child processes; the fits import sklearn

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

NAMES = ["setosa", "versicolor", "virginica"]


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    x, y = _iris()
    return {
        "xgb": xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y),
        "xgbr": xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(x, x[:, 0]),
        "lgb": lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, np.array(NAMES)[y]),
        "lgbr": lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(x, x[:, 0]),
    }


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_written_by_xgboost(tmp_path: Path, models: dict[str, Any], suffix: str) -> None:
    """Files XGBoost wrote load as the wrapper they record (or a Booster), bit-identical outputs."""
    x, _ = _iris()
    clf = models["xgb"]
    clf.save_model(tmp_path / f"c{suffix}")
    clf.get_booster().save_model(tmp_path / f"b{suffix}")
    loaded = ms.load(tmp_path / f"c{suffix}")
    assert type(loaded).__name__ == "XGBClassifier"
    np.testing.assert_array_equal(ms.predict(loaded, x, output="proba"), clf.predict_proba(x))
    np.testing.assert_array_equal(ms.predict(loaded, x), clf.predict(x))
    booster = ms.load(tmp_path / f"b{suffix}")
    assert type(booster).__name__ == "Booster"
    np.testing.assert_array_equal(ms.predict(booster, x, output="proba"), clf.predict_proba(x))
    info = ms.inspect(tmp_path / f"c{suffix}")
    assert (
        info.format == "xgboost"
        and info.metadata["trees"] == 5
        and info.metadata["objective"] == "multi:softprob"
    )
    assert ms.scan(tmp_path / f"c{suffix}").verdict == "safe"


def test_xgboost_save_is_native_by_default(tmp_path: Path, models: dict[str, Any]) -> None:
    """ms.save of an XGBoost model writes XGBoost's format, not a pickle; labels map."""
    x, _ = _iris()
    for name in ("m.json", "m.ubj", "m"):
        info = ms.save(models["xgb"], tmp_path / name, labels=NAMES)
        assert info.format == "xgboost"
        assert not (tmp_path / name).read_bytes().startswith(b"\x80")
        loaded = ms.load(tmp_path / name)
        assert ms.predict(loaded, x[:1], output="label") == ["setosa"]
    json.loads((tmp_path / "m.json").read_text())  # XGBoost's JSON, readable by anyone
    ms.save(models["xgbr"], tmp_path / "r.ubj")
    np.testing.assert_array_equal(
        ms.predict(ms.load(tmp_path / "r.ubj"), x), models["xgbr"].predict(x)
    )


def test_lightgbm_text(tmp_path: Path, models: dict[str, Any]) -> None:
    """LightGBM's model text loads as a Booster; ms.save writes it; classes from the sidecar."""
    x, _ = _iris()
    clf = models["lgb"]
    clf.booster_.save_model(tmp_path / "native.txt")
    booster = ms.load(tmp_path / "native.txt")
    np.testing.assert_allclose(
        ms.predict(booster, x, output="proba"), clf.predict_proba(x), rtol=1e-12
    )
    assert ms.inspect(tmp_path / "native.txt").metadata["objective"] == "multiclass"
    info = ms.save(clf, tmp_path / "m.txt")
    assert info.format == "lightgbm" and (tmp_path / "m.txt").read_bytes().startswith(b"tree\n")
    assert (
        ms.predict(ms.load(tmp_path / "m.txt"), x[:2], output="label")
        == clf.predict(x[:2]).tolist()
    )
    ms.save(models["lgbr"], tmp_path / "r.txt")
    np.testing.assert_allclose(
        ms.predict(ms.load(tmp_path / "r.txt"), x), models["lgbr"].predict(x)
    )
    assert ms.scan(tmp_path / "m.txt").verdict == "safe"


def test_explicit_joblib_still_possible(tmp_path: Path, models: dict[str, Any]) -> None:
    """A .joblib suffix asks for the pickle explicitly (and then needs trust to load)."""
    info = ms.save(models["xgb"], tmp_path / "m.joblib")
    assert info.format == "sklearn"
    with pytest.raises(ms.UnsafeModelError):
        ms.load(tmp_path / "m.joblib")


@pytest.mark.parametrize("key,name", [("xgb", "m.ubj"), ("lgb", "m.txt"), ("lgbr", "r.txt")])
def test_onnx_export_and_convert(
    tmp_path: Path, models: dict[str, Any], key: str, name: str
) -> None:
    """ms.save(model, .onnx) and convert(native -> .onnx) through onnxmltools, parity checked."""
    pytest.importorskip("onnxmltools")
    x, _ = _iris()
    model = models[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms.save(model, tmp_path / "direct.onnx", sample_input=x[:10])
        ms.save(model, tmp_path / name)
        ms.convert(tmp_path / name, tmp_path / "converted.onnx", sample_input=x[:10])
    for onnx_file in ("direct.onnx", "converted.onnx"):
        loaded = ms.load(tmp_path / onnx_file)
        if hasattr(model, "predict_proba"):
            np.testing.assert_allclose(
                ms.predict(loaded, x, output="proba"), model.predict_proba(x), atol=1e-5
            )
        else:
            np.testing.assert_allclose(
                ms.predict(loaded, x).reshape(-1), model.predict(x), rtol=1e-4
            )


# -- hostile files -------------------------------------------------------------------------


def _hostile(tmp_path: Path, models: dict[str, Any], kind: str) -> Path:
    good = tmp_path / "good.json"
    models["xgb"].save_model(good)
    text = good.read_text()
    if kind == "deep":
        return _write(tmp_path / "m.json", '{"learner": ' + "[" * 100_000 + "]" * 100_000 + "}")
    if kind == "huge-number":
        return _write(
            tmp_path / "m.json",
            text.replace('"num_feature":"4"', '"num_feature":"99999999999999999999"'),
        )
    if kind == "nan":
        return _write(tmp_path / "m.json", '{"learner": {"x": NaN}, "version": [3, 0, 0]}')
    if kind == "garbage-learner":
        return _write(
            tmp_path / "m.json", '{"learner": {"gradient_booster": 7}, "version": [3, 0, 0]}'
        )
    if kind == "truncated-ubj":
        models["xgb"].save_model(tmp_path / "full.ubj")
        data = (tmp_path / "full.ubj").read_bytes()
        (tmp_path / "m.ubj").write_bytes(data[: len(data) // 2])
        return tmp_path / "m.ubj"
    if kind == "lgb-garbage":
        return _write(
            tmp_path / "m.txt",
            "tree\nversion=v4\nnum_class=-5\nnum_tree_per_iteration=99999999999\n",
        )
    if kind == "lgb-truncated":
        models["lgb"].booster_.save_model(tmp_path / "full.txt")
        data = (tmp_path / "full.txt").read_text()
        return _write(tmp_path / "m.txt", data[: len(data) // 3])
    raise AssertionError(kind)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "deep",
        "huge-number",
        "nan",
        "garbage-learner",
        "truncated-ubj",
        "lgb-garbage",
        "lgb-truncated",
    ],
)
def test_hostile_native_files(tmp_path: Path, models: dict[str, Any], kind: str) -> None:
    """Malformed or hostile native files are a ModelstoreError from every entry point, in a
    child process first so a crash of the native parser would show as a signal, not a pass."""
    path = _hostile(tmp_path, models, kind)
    from modelstore.testing import run_python

    proc = run_python(f"""
        import modelstore as ms
        for call in (ms.load, ms.inspect):
            try:
                call({str(path)!r})
            except ms.ModelstoreError as e:
                print("refused", type(e).__name__)
            else:
                print("loaded")
    """)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert proc.stdout.split().count("refused") == 2, proc.stdout

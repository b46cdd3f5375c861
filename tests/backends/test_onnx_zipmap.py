"""ONNX classifiers written by skl2onnx with its default ZipMap: probabilities as one array in
class order, labels as the class values, the graph's class list used and shown by inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

import modelstore as ms  # noqa: E402

NAMES = np.array(["setosa", "versicolor", "virginica"])


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def _write(model: Any, x: Any, path: Path, **options: Any) -> Path:
    """The file exactly as skl2onnx writes it by default (ZipMap included)."""
    onx = skl2onnx.to_onnx(model, x[:1], **options)
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.mark.parametrize("kind", ["int", "str", "shifted"])
def test_zipmap_proba_and_label(tmp_path: Path, kind: str) -> None:
    """output='proba' is a float array equal to predict_proba; output='label' the classes."""
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    target = {"int": y, "str": NAMES[y], "shifted": y + 5}[kind]
    clf = LogisticRegression(max_iter=500).fit(x, target)
    path = _write(clf, x, tmp_path / "m.onnx")
    loaded = ms.load(path)
    proba = ms.predict(loaded, x, output="proba")
    assert isinstance(proba, np.ndarray) and proba.dtype == np.float32 and proba.shape == (150, 3)
    np.testing.assert_allclose(proba, clf.predict_proba(x), atol=1e-5)
    assert ms.predict(loaded, x, output="label") == clf.predict(x).tolist()
    np.testing.assert_array_equal(ms.predict(loaded, x), clf.predict(x))  # raw: the label tensor
    assert loaded.classes == clf.classes_.tolist()
    assert ms.inspect(path).labels == clf.classes_.tolist()


def test_zipmap_batched_and_by_path(tmp_path: Path) -> None:
    """batch_size= joins ZipMap batches in order; predict(path) reads the file itself."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    clf = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, NAMES[y])
    path = _write(clf, x, tmp_path / "rf.onnx")
    proba = ms.predict(ms.load(path), x, output="proba", batch_size=7)
    np.testing.assert_allclose(proba, clf.predict_proba(x), atol=1e-5)
    assert ms.predict(path, x[:3], output="label") == ["setosa"] * 3


def test_zipmap_binary_pipeline(tmp_path: Path) -> None:
    """A two-class pipeline keeps both probability columns in class order."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _iris()
    keep = y > 0
    x2, y2 = x[keep], NAMES[y[keep]]
    clf = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=10, random_state=0)
    ).fit(x2, y2)
    path = _write(clf, x2, tmp_path / "gb.onnx")
    loaded = ms.load(path)
    proba = ms.predict(loaded, x2, output="proba")
    assert proba.shape == (len(x2), 2)
    assert loaded.classes == ["versicolor", "virginica"]
    np.testing.assert_allclose(proba, clf.predict_proba(x2), atol=1e-5)
    assert ms.predict(loaded, x2, output="label") == clf.predict(x2).tolist()


def test_saved_labels_map_only_index_classes(tmp_path: Path) -> None:
    """Names saved with labels= map classes 0..n-1; other classes are returned as they are."""
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    for target, want in ((y, ["a", "a"]), (y + 1, [1, 1])):
        clf = LogisticRegression(max_iter=500).fit(x, target)
        path = tmp_path / f"m{int(target.min())}.onnx"
        ms.save(clf, path, sample_input=x[:10], labels=["a", "b", "c"])
        assert ms.predict(ms.load(path), x[:2], output="label") == want


def test_inspect_describes_zipmap_output(tmp_path: Path) -> None:
    """inspect names the sequence-of-maps output type instead of 'unknown'."""
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    path = _write(LogisticRegression(max_iter=500).fit(x, NAMES[y]), x, tmp_path / "m.onnx")
    outputs = ms.inspect(path).metadata["outputs"]
    assert outputs[1]["dtype"] == "seq(map(object,float32))"

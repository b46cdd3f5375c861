"""ms.evaluate and ms.plot_predictions on real models, checked against scikit-learn's metrics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402

import modelstore as ms  # noqa: E402

NAMES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def iris() -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(x[::2], y[::2])
    return clf, x[1::2].astype(np.float32), y[1::2]


def test_matches_sklearn_metrics(iris) -> None:  # type: ignore[no-untyped-def]
    """Accuracy, per-class precision/recall/F1, support and the confusion matrix equal sklearn's."""
    clf, x, y = iris
    ev = ms.evaluate(clf, x, y, labels=NAMES)
    pred = clf.predict(x)
    p, r, f, s = precision_recall_fscore_support(y, pred)
    assert ev.labels == NAMES and ev.n == len(y)
    assert ev.accuracy == pytest.approx(float(np.mean(pred == y)))
    np.testing.assert_allclose([ev.precision, ev.recall, ev.f1], [p, r, f])
    assert ev.support == s.tolist() and ev.confusion == confusion_matrix(y, pred).tolist()
    assert ev.wrong == np.flatnonzero(pred != y).tolist()
    text = str(ev)
    assert (
        text.startswith(f"accuracy {ev.accuracy:.4f}")
        and "versicolor" in text
        and "confusion matrix" in text
    )
    assert "<table>" in ev._repr_html_() and ev.to_dict()["macro_f1"] == pytest.approx(
        float(np.mean(f))
    )


def test_labels_as_names_and_saved_labels(iris, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """y may be names; a file saved with labels predicts names; indices map through labels=."""
    clf, x, y = iris
    path = tmp_path / "iris.joblib"
    ms.save(clf, path, labels=NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)  # a pickle load says so; expected here
        by_name = ms.evaluate(path, x, np.array(NAMES)[y])
    assert (
        by_name.labels == NAMES
        and by_name.accuracy == ms.evaluate(clf, x, y, labels=NAMES).accuracy
    )


def test_onnx_and_torch_models(iris, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same numbers come from an ONNX export of the model and from a torch module."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    clf, x, y = iris
    onnx_path = tmp_path / "iris.onnx"
    ms.export_onnx(clf, onnx_path, sample_input=x[:2])
    assert (
        ms.evaluate(onnx_path, x, y, labels=NAMES).confusion
        == ms.evaluate(clf, x, y, labels=NAMES).confusion
    )
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    assert ms.evaluate(lin, x, y).accuracy == pytest.approx(float(np.mean(clf.predict(x) == y)))


def test_bad_arguments(iris) -> None:  # type: ignore[no-untyped-def]
    """Mismatched lengths, one-hot y, an index without a label and empty X are ArgumentErrors."""
    clf, x, y = iris
    with pytest.raises(ms.ArgumentError, match="74 classes for 75 inputs"):
        ms.evaluate(clf, x, y[:-1])
    with pytest.raises(ms.ArgumentError, match="one-hot"):
        ms.evaluate(clf, x, np.eye(3)[y])
    with pytest.raises(ms.ArgumentError, match="class index 2 has no name"):
        ms.evaluate(clf, x, y, labels=["a", "b"])
    with pytest.raises(ms.ArgumentError, match="no samples"):
        ms.evaluate(clf, x[:0], y[:0])
    with pytest.raises(ms.ArgumentError, match="no class in common.*labels="):
        ms.evaluate(clf, x, np.array(["a", "b", "c"])[y])
    with pytest.raises(TypeError):
        ms.evaluate(clf, x, y, classes=NAMES)  # type: ignore[call-arg]


def test_plot_predictions_grid(tmp_path: Path) -> None:
    """plot_predictions writes a PNG grid for flat 8x8 digits and for channel-first images."""
    pytest.importorskip("matplotlib")
    x, y = load_digits(return_X_y=True)
    clf = LogisticRegression(max_iter=200).fit(x[:600], y[:600])
    png = ms.plot_predictions(clf, x[600:650], y[600:650], tmp_path / "grid.png", max_images=16)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from modelstore.api.plots import as_image

    assert as_image(np.zeros(64)).shape == (8, 8)
    assert as_image(np.zeros((1, 28, 28))).shape == (28, 28)
    assert as_image(np.zeros((3, 8, 8))).shape == (8, 8, 3)
    with pytest.raises(ms.ArgumentError, match="not a square image"):
        as_image(np.zeros(10))
    with pytest.raises(ms.ArgumentError, match="max_images"):
        ms.plot_predictions(clf, x[:5], y[:5], tmp_path / "g.png", max_images=0)


@pytest.mark.slow
def test_keras_model(iris, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A Keras classifier evaluates the same live and from its .keras file (loaded in safe mode)."""
    keras = pytest.importorskip("keras")
    clf, x, y = iris
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].set_weights([clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)])
    live = ms.evaluate(model, x, y, labels=NAMES)
    assert live.accuracy == pytest.approx(float(np.mean(clf.predict(x) == y)))
    path = tmp_path / "iris.keras"
    ms.save(model, path, labels=NAMES)
    assert ms.evaluate(path, x, np.array(NAMES)[y]).confusion == live.confusion

"""A legacy ``.h5`` full-model load builds the model once: the size check's stateless build is
finished with the stored weights (formats/keras/reuse_h5.py) instead of
``keras.saving.load_model`` building it again. What it returns must be what Keras' own legacy
loader returns: the same weights, optimizer state, compile, predictions and training from
there; weights that do not fit are refused as before; what the reuse does not cover loads
through Keras as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasbuild  # noqa: E402

L = keras.layers
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8)).astype("float32")
Y = rng.integers(0, 3, 64)


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count Keras' own loads and the check builds (each still runs as it is)."""
    counts = {"load_model": 0, "build": 0}
    load_model, build = keras.saving.load_model, kerasbuild._build

    def load_counted(*a: Any, **k: Any) -> Any:
        counts["load_model"] += 1
        return load_model(*a, **k)

    def build_counted(*a: Any, **k: Any) -> Any:
        counts["build"] += 1
        return build(*a, **k)

    monkeypatch.setattr(keras.saving, "load_model", load_counted)
    monkeypatch.setattr(kerasbuild, "_build", build_counted)
    return counts


def _load_both(path: Path, monkeypatch: pytest.MonkeyPatch, keras_loads: int = 0) -> Any:
    counts = _spy(monkeypatch)
    got = ms.load(path)
    assert counts == {"load_model": keras_loads, "build": 1}, counts
    monkeypatch.undo()
    return got, keras.saving.load_model(path)


def _same(got: Any, want: Any, x: Any) -> None:
    """The same weights, compile, optimizer state and predictions."""
    assert type(got) is type(want)
    assert [v.path for v in got.weights] == [v.path for v in want.weights]
    for a, b in zip(got.weights, want.weights, strict=True):
        assert a.dtype == b.dtype and a.trainable == b.trainable, a.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert got.compiled == want.compiled
    assert type(getattr(got, "optimizer", None)) is type(getattr(want, "optimizer", None))
    if got.compiled:
        assert got.optimizer.get_config() == want.optimizer.get_config()
        assert got.optimizer.built == want.optimizer.built
        assert [v.path for v in got.optimizer.variables] == [
            v.path for v in want.optimizer.variables
        ]
        for a, b in zip(got.optimizer.variables, want.optimizer.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
        assert got.get_compile_config() == want.get_compile_config()
    out, expected = got.predict_on_batch(x), want.predict_on_batch(x)
    for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(expected), strict=True):
        np.testing.assert_array_equal(a, b)


def _fit(model: Any, x: Any, y: Any) -> Any:
    """Two more epochs of fit: the history, or Keras' error (the same for both loads)."""
    try:
        return model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False).history
    except ValueError as e:
        return f"ValueError: {e}".replace(repr(model), "")


def _classifier() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(16, activation="relu"), L.BatchNormalization(), L.Dense(3)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.mark.slow
def test_a_trained_model_is_built_once_and_loads_as_keras_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled and trained (Adam, a metric, batch statistics): one build, no Keras load; the
    weights, the optimizer's variables and iteration count, predictions, evaluation and what
    further training does are Keras' own."""
    model = _classifier()
    model.fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "trained.h5"
    ms.save(model, path)
    got, want = _load_both(path, monkeypatch)
    _same(got, want, X)
    assert int(got.optimizer.iterations) == int(want.optimizer.iterations) == 4
    np.testing.assert_array_equal(got.predict_on_batch(X), model.predict_on_batch(X))
    assert got.evaluate(X, Y, verbose=0) == want.evaluate(X, Y, verbose=0)
    # Keras 3.15's legacy loader builds the optimizer for the model's own top-level
    # variables (none): fit then refuses the layers' variables, for both loads alike
    assert _fit(got, X, Y) == _fit(want, X, Y)


def _without_optimizer_weights(path: Path) -> None:
    """A file with a training config and no optimizer weights (Keras 3.15's loader builds the
    optimizer of a file that has them for no variable, and fit then fails, for both loads)."""
    with h5py.File(path, "r+") as f:
        del f["optimizer_weights"]


@pytest.mark.slow
def test_a_compiled_model_trains_as_keras_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled and trained, its optimizer's weights left out: two more epochs of fit give
    the same history, the same weights and the same optimizer state."""
    model = _classifier()
    model.fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "compiled.h5"
    model.save(path)  # Keras' own file: no modelstore checksum to edit around
    _without_optimizer_weights(path)
    got, want = _load_both(path, monkeypatch)
    _same(got, want, X)
    assert not got.optimizer.built
    history = _fit(got, X, Y)
    assert isinstance(history, dict) and history == _fit(want, X, Y)
    _same(got, want, X)
    assert int(got.optimizer.iterations) == 8


def _nested() -> tuple[Any, Any, Any]:
    inner = keras.Sequential([keras.Input((8,)), L.Dense(6, activation="tanh")], name="inner")
    x = keras.Input((8,))
    h = inner(x)
    return keras.Model(x, L.Dense(3)(L.Dropout(0.1, seed=1)(h))), X, Y


def _shared() -> tuple[Any, Any, Any]:
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    shared = L.Dense(5, name="shared")
    merged = L.Concatenate()([shared(a), shared(b)])
    out1 = L.Dense(3, name="out1")(merged)
    out2 = L.Dense(1, name="out2")(L.LayerNormalization()(merged))
    model = keras.Model([a, b], [out1, out2])
    return model, [X, X[::-1]], [Y, X[:, :1]]


def _rnn() -> tuple[Any, Any, Any]:
    seq = rng.normal(size=(64, 5, 8)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((5, 8)),
            L.Bidirectional(L.LSTM(4, return_sequences=True)),
            L.GRU(4, return_sequences=True),
            L.SimpleRNN(4),
            L.Dense(3),
        ]
    )
    return model, seq, Y


def _compile(model: Any, losses: int) -> None:
    loss = [
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.losses.MeanSquaredError(),
    ]
    metrics = [[keras.metrics.SparseCategoricalAccuracy()], [keras.metrics.MeanAbsoluteError()]]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=loss[0] if losses == 1 else loss,
        metrics=metrics[0] if losses == 1 else metrics,
    )


#: How the optimizer was saved does not depend on the layers: the RNN model (whose training
#: graph takes TensorFlow several seconds to trace per fit) runs trained and not compiled only.
_HOWS = ["trained", "compiled", "no optimizer", "not compiled"]
_CASES = [(make, how) for make in (_nested, _shared) for how in _HOWS] + [
    (_rnn, "trained"),
    (_rnn, "not compiled"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "how"), _CASES, ids=[f"{how}-{make.__name__}" for make, how in _CASES]
)
def test_more_models_load_as_keras_loads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any, how: str
) -> None:
    """Nested models, a shared layer with several inputs and outputs, RNNs; trained (with
    and without the optimizer's weights in the file), saved without the optimizer, never
    compiled: built once, and the same as Keras', two more epochs of fit included."""
    keras.utils.set_random_seed(0)
    model, x, y = make()
    if how != "not compiled":
        _compile(model, len(model.outputs))
    if how != "not compiled":
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path, include_optimizer=how != "no optimizer")
    if how == "compiled":
        _without_optimizer_weights(path)
    got, want = _load_both(path, monkeypatch)
    _same(got, want, x)
    assert got.compiled == (how in ("trained", "compiled"))
    if got.compiled:
        keras.utils.set_random_seed(1)
        history = _fit(got, x, y)
        keras.utils.set_random_seed(1)
        assert history == _fit(want, x, y)
        assert isinstance(history, dict) == (how == "compiled")
        _same(got, want, x)


def test_weights_that_do_not_fit_are_refused_as_before(tmp_path: Path) -> None:
    """A kernel stored transposed (same size: the size check passes it) fails where Keras'
    loader fails, with Keras' reason, as a FormatError naming the file."""
    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(3, name="dense")(x))
    path = tmp_path / "plain.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        (name,) = [n for n in f["model_weights/dense/dense"] if "kernel" in n]
        group = f["model_weights/dense/dense"]
        kernel = group[name][()]
        del group[name]
        group[name] = kernel.T
    with pytest.raises(ValueError, match="Shape mismatch") as keras_error:
        keras.saving.load_model(path)
    with pytest.raises(ms.FormatError, match="plain.h5.*Shape mismatch") as error:
        ms.load(path)
    assert (
        str(keras_error.value).split()[:4] == str(error.value).split("ValueError: ")[1].split()[:4]
    )


def test_what_the_reuse_does_not_cover_loads_through_keras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Normalization given its statistics (the check builds a shape-only stand-in) and a
    layer with a ``finalize_state`` (Discretization) load through Keras, as before, and
    predict as saved."""
    bins = L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5])
    norm = keras.Sequential(
        [keras.Input((3,)), L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])]
    )
    cases = [(keras.Sequential([keras.Input((8,)), bins]), X[:4]), (norm, X[:4, :3])]
    for i, (model, x) in enumerate(cases):
        path = tmp_path / f"m{i}.h5"
        model.save(path)
        got, _ = _load_both(path, monkeypatch, keras_loads=1)
        np.testing.assert_array_equal(np.asarray(got(x)), np.asarray(model(x)))

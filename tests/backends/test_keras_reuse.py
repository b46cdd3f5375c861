"""A ``.keras`` load builds the model once: the size check's stateless build is finished with
the stored weights (formats/keras/reuse.py) instead of ``keras.saving.load_model`` building it
again. What it returns must be what Keras' own loader returns: the same weights, the same
optimizer state, the same assets, the same training from there; a file whose weights do not
fit is refused as before; configs the check build changes load through Keras as before."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasbuild, kerasfile  # noqa: E402

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


def _same_state(got: Any, want: Any) -> None:
    assert [v.path for v in got.weights] == [v.path for v in want.weights]
    for a, b in zip(got.weights, want.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


@pytest.mark.slow
def test_a_trained_model_is_built_once_and_loads_as_keras_loads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled and trained (Adam, a metric, batch statistics): one build, no Keras load; the
    weights, the optimizer's state and the training that follows are Keras' own."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), L.Dense(16, activation="relu"), L.BatchNormalization(), L.Dense(3)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "trained.keras"
    ms.save(model, path)
    counts = _spy(monkeypatch)
    got = ms.load(path)
    assert counts == {"load_model": 0, "build": 1}
    monkeypatch.undo()
    want = keras.saving.load_model(path)
    _same_state(got, want)
    assert got.compiled and type(got.optimizer) is type(want.optimizer)
    assert int(got.optimizer.iterations) == int(want.optimizer.iterations) == 4
    for a, b in zip(got.optimizer.variables, want.optimizer.variables, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    np.testing.assert_array_equal(got.predict_on_batch(X), model.predict_on_batch(X))
    resumed = got.fit(X, Y, epochs=2, verbose=0, shuffle=False).history
    assert resumed == want.fit(X, Y, epochs=2, verbose=0, shuffle=False).history


def test_assets_load_and_changed_builds_go_through_keras(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adapted lookup (its vocabulary an asset) is finished from the build; a Normalization
    given its statistics (the check builds a shape-only stand-in) is loaded by Keras as
    before. Both predict as saved."""
    lookup = L.StringLookup()
    lookup.adapt(np.array(["a", "b", "c", "a"]))
    words = np.array([["a"], ["c"], ["zz"]])
    norm = keras.Sequential(
        [keras.Input((3,)), L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])]
    )
    cases = [
        (keras.Sequential([keras.Input((1,), dtype="string"), lookup]), words, 0),
        (norm, X[:4, :3], 1),
    ]
    for i, (model, x, keras_loads) in enumerate(cases):
        path = tmp_path / f"m{i}.keras"
        ms.save(model, path)
        counts = _spy(monkeypatch)
        got = ms.load(path)
        assert counts == {"load_model": keras_loads, "build": 1}, (i, counts)
        monkeypatch.undo()
        np.testing.assert_array_equal(np.asarray(got(x)), np.asarray(model(x)))


def test_weights_that_do_not_fit_are_refused_as_before(tmp_path: Path) -> None:
    """A kernel stored transposed (same size: the size check passes it) fails where Keras'
    loader fails, as a FormatError naming the file; nothing is returned."""
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="dense")])
    path = tmp_path / "plain.keras"
    model.save(path)  # Keras' own archive: no modelstore checksum to trip first
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "r+") as f:
        kernel = f["layers/dense/vars/0"][()]
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = kernel.T
    members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError):  # Keras' own loader refuses it
        keras.saving.load_model(path)
    with pytest.raises(ms.FormatError, match="plain.keras"):
        ms.load(path)


def _functional(tmp_path: Path, **compile_args: Any) -> Path:
    x = keras.Input((8,), name="x")
    model = keras.Model(x, L.Dense(3, name="dense")(x))
    if compile_args:
        model.compile(optimizer="adam", loss="mse", **compile_args)
    path = tmp_path / "func.keras"
    model.save(path)  # Keras' own archive, edited below
    return path


def _edit(path: Path, edit: Any) -> Path:
    import json

    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    out = path.with_name("edited.keras")
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out


def test_a_layer_no_node_reaches_is_size_checked(tmp_path: Path) -> None:
    """Red team: a Functional config may list a layer with no inbound node and a large
    build_config; Keras builds it (4.8 GB for Dense 20000 x 20000 from 18 KB) but it is not
    among the model's weights. Every variable the check build made is matched now, and
    ``scan`` sizes a layer's kernel from the input shape its build_config gives."""
    import copy

    def orphan(config: dict[str, Any]) -> None:
        layers = config["config"]["layers"]
        extra = copy.deepcopy(next(n for n in layers if n["class_name"] == "Dense"))
        extra["name"] = extra["config"]["name"] = "orphan"
        extra["config"]["units"] = 4096
        extra["build_config"] = {"input_shape": [None, 4096]}
        extra["inbound_nodes"] = []
        layers.append(extra)

    path = _edit(_functional(tmp_path), orphan)
    report = ms.scan(path)
    assert report.verdict == "unsafe", report
    assert "'orphan' (Dense, units=4096) built for the input [None, 4096]" in str(report)
    # and the audit: Keras never writes a layer no node reaches (whatever its size)
    configs = kerasfile.archive_configs(path)[0]
    assert "<unreached layer 'orphan'>" in [
        f.subject for f in kerasfile.audit_configs(configs).findings
    ]
    with pytest.raises(ms.UnsafeModelError, match="orphan"):
        ms.load(path)
    # and the load's check build, behind the config check, counts what the orphan makes
    import json

    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    declared = kerasbuild.declared_by(config, legacy=False)
    assert any("orphan" in what and shape == (4096, 4096) for what, shape, *_ in declared)
    with pytest.raises(kerasbuild.SizeError, match="orphan.*4096, 4096"):
        kerasbuild.match(declared, [(3, 4), (24, 4)], "edited.keras")


@pytest.mark.parametrize(
    ("cls", "config", "build"),
    [
        ("Dense", {"units": 4096}, {"shapes_dict": {"input_shape": [None, 4096]}}),
        ("Dense", {"units": 4096}, {"input_shape": [4096]}),
        ("BatchNormalization", {}, {"input_shape": [None, 1 << 25]}),
        ("LayerNormalization", {}, {"input_shape": [None, 1 << 26]}),
        ("PReLU", {}, {"input_shape": [None, 1 << 27]}),
        (
            "EinsumDense",
            {"equation": "ab,bc->ac", "output_shape": 4096},
            {"input_shape": [None, 4096]},
        ),
    ],
)
def test_a_layer_no_node_reaches_is_refused_by_scan(
    tmp_path: Path, cls: str, config: dict[str, Any], build: dict[str, Any]
) -> None:
    """Red team, pass 6: however its build_config gives the shape Keras builds it from
    (``shapes_dict``, one dimension) and whatever layer it is, a layer no node reaches is a
    finding of the audit (Keras never writes one), so ``scan`` calls the file unsafe too."""

    def orphan(model: dict[str, Any]) -> None:
        node = {
            "module": "keras.layers",
            "class_name": cls,
            "config": {"name": "orphan", **config},
            "registered_name": None,
            "build_config": build,
            "inbound_nodes": [],
            "name": "orphan",
        }
        model["config"]["layers"].append(node)

    path = _edit(_functional(tmp_path), orphan)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "orphan" in str(report), report  # its size or the audit
    with pytest.raises(ms.UnsafeModelError, match="orphan"):
        ms.load(path)


def test_a_layer_no_output_depends_on_is_refused(tmp_path: Path) -> None:
    """Red team, pass 7: a layer called on the input whose output no model output uses is
    built by Keras and kept alive by its input's node, and it is no layer of the model's: it
    is a finding of the audit (Keras never writes one), and the check build does not take its
    variables for a wrapper's copy (they must be stored)."""
    import copy

    def ghost(config: dict[str, Any]) -> None:
        layers = config["config"]["layers"]
        extra = copy.deepcopy(next(n for n in layers if n["class_name"] == "Dense"))
        extra["name"] = extra["config"]["name"] = "ghost"
        extra["config"]["units"] = 4096
        extra["build_config"] = {"input_shape": [None, 8]}
        layers.append(extra)  # its inbound node: the input x, like the real head's

    path = _edit(_functional(tmp_path), ghost)
    plain = keras.saving.load_model(path)  # Keras builds it: 8 x 4096, in no layer of the model
    assert "ghost" not in [layer.name for layer in plain.layers]
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "<unreached layer 'ghost'>" in str(report), report
    with pytest.raises(ms.UnsafeModelError, match="ghost"):
        ms.load(path)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    declared = kerasbuild.declared_by(config, legacy=False)
    ((kind,),) = {(k,) for what, shape, _, k, _ in declared if shape == (8, 4096)}
    assert kind == kerasbuild.STORED  # no twin among the model's own: not a copy


def test_a_bidirectional_rnn_loads(tmp_path: Path) -> None:
    """Red team, pass 6 (a false refusal older than the reuse): ``Bidirectional.from_config``
    builds the wrapped layer before it copies it forward and backward, so the check build
    made a third LSTM that the file stores no weights for. Keras builds and drops it too; it
    counts apart, against what the file stores, and a textbook model loads."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            L.Embedding(10000, 128),
            L.Bidirectional(L.LSTM(128)),
            L.Dense(1),
        ]
    )
    tokens = rng.integers(0, 10000, (4, 12)).astype("int32")
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"bidi{suffix}"
        model.save(path)
        assert ms.scan(path).verdict == "safe"
        got = ms.load(path)
        np.testing.assert_allclose(
            got.predict_on_batch(tokens), model.predict_on_batch(tokens), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("metric", ["MeanIoU", "AUC"])
def test_metrics_a_compile_makes_count(tmp_path: Path, metric: str) -> None:
    """Red team: a compile_config's metrics allocate when constructed (MeanIoU(16000): 2 GB
    from 24 KB); their sizes count against what the file stores, for scan and load alike."""
    arg = {"MeanIoU": ("num_classes", 4096), "AUC": ("num_thresholds", 1 << 22)}[metric]
    path = _functional(tmp_path, metrics=[getattr(keras.metrics, metric)(**{arg[0]: 4})])

    def grow(config: dict[str, Any]) -> None:
        (node,) = config["compile_config"]["metrics"]
        node["config"][arg[0]] = arg[1]

    path = _edit(path, grow)
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match=f"\\({metric}"):
        ms.load(path)


def test_a_metric_is_known_by_what_it_resolves_to(tmp_path: Path) -> None:
    """Red team, pass 6: a legacy file's ``training_config`` may spell ``MeanIoU`` as Keras'
    alias ``mean_io_u``, which the audit and Keras both resolve to MeanIoU; its confusion
    matrix (int64) counts whatever the spelling (16,384 classes: 2 GiB from 16 KB)."""

    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(2)(x))
    loss = keras.losses.MeanSquaredError()  # (a plain "mse" does not load from .h5)
    model.compile("sgd", loss, metrics=[keras.metrics.MeanIoU(num_classes=2)])
    path = tmp_path / "snake.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        text = f.attrs["training_config"]
        text = text.decode() if isinstance(text, bytes) else text
        assert '"class_name": "MeanIoU"' in text
        text = text.replace('"class_name": "MeanIoU"', '"class_name": "mean_io_u"')
        f.attrs["training_config"] = text.replace('"num_classes": 2', '"num_classes": 4096')
    plain = keras.saving.load_model(path)  # fires: Keras makes the 4096 x 4096 matrix
    (made,) = plain._compile_metrics._user_metrics
    assert [(type(made), tuple(v.shape)) for v in made.variables] == [
        (keras.metrics.MeanIoU, (4096, 4096))
    ]
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "(MeanIoU, num_classes=4096)" in str(report), report
    with pytest.raises(ms.UnsafeModelError, match="MeanIoU"):
        ms.load(path)


def test_an_archive_rewritten_after_the_checks_is_not_read(tmp_path: Path) -> None:
    """Red team: finishing the build reads the weights from the file again; an archive whose
    weights member no longer is the one checked (rewritten in place) raises IntegrityError
    before anything is inflated, and the load's consistent read starts again."""
    from modelstore.formats.keras import loading, reuse

    path = _functional(tmp_path)
    early = loading.EarlyBuild(path)
    early()
    assert early.kept and early.member is not None
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:  # the same bytes, laid out anew
        zf.writestr("padding.txt", b"x" * 100)
        for name, data in members.items():
            zf.writestr(name, data)
    with loading._pinned_safe_mode(True), pytest.raises(ms.IntegrityError, match="changed"):
        reuse.finish(str(path), early.kept.pop(), early.result[0], early.member)

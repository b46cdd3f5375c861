"""Keras configs that declare sizes the file never stores (THREATS class 6, resource exhaustion).

Keras builds and randomly initialises every variable before it reads a stored weight, and
layers that repeat or upsample allocate at predict: a few-KB file can make a plain
``keras.saving.load_model`` (or the first predict) allocate gigabytes. Each hostile file here
is a small benign model whose config was edited; plain Keras is first shown to allocate
(peak RSS from VmHWM in a child, reset per file through /proc/self/clear_refs), then modelstore
refuses it without allocating. Benign models of every size-bearing layer kind still load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from modelstore.security import kerassize

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20

#: (case id, base model, config text to replace, replacement, predict input shape or None,
#: words the refusal must contain). Sizes make plain Keras allocate roughly 0.3-1 GB.
CASES = [
    (
        "dense-units",
        "dense",
        '"units": 3',
        '"units": 25000000',
        None,
        ["'dense' (Dense, units=25000000)", "declare at least"],
    ),
    (
        "input-dim",
        "dense",
        "[null, 4]",
        "[null, 30000000]",
        None,
        ["30000000"],  # .keras: the build_configs (the batch norm's is larger); .h5: the build
    ),
    (
        "embedding",
        "seq",
        '"input_dim": 10',
        '"input_dim": 25000000',
        None,
        ["'embedding' (Embedding, input_dim=25000000, output_dim=4)"],
    ),
    ("lstm-units", "seq", '"units": 6', '"units": 5000', None, ["(LSTM, units=5000)"]),
    ("gru-units", "seq", '"units": 7', '"units": 6000', None, ["(GRU, units=6000)"]),
    (
        "repeat-n",
        "seq",
        '"n": 2',
        '"n": 20000000',
        (1, 5),
        ["'repeat_vector' (RepeatVector)", "[None, 20000000, 7]"],
    ),
    (
        "conv-filters",
        "conv",
        '"filters": 5',
        '"filters": 10000000',
        None,
        ["'conv2d' (Conv2D, filters=10000000, kernel_size=[3, 3]"],
    ),
    (
        "upsampling",
        "conv",
        '"size": [2, 2]',
        '"size": [1000, 1000]',
        (1, 8, 8, 1),
        ["'up_sampling2d' (UpSampling2D, size=[1000, 1000])", "1,000,000"],
    ),
    (  # red team, issue 19 ninth round: statistics broadcast to the input's shape at build
        "normalization-stats",
        "norm",
        "[null, 8]",
        "[null, 40000000]",
        None,
        ["'normalization' (Normalization)", "80,000,000"],
    ),
    (  # red team, issue 19 tenth round: statistics broadcast over kept axes the config check
        # could not size (a RepeatVector's output); now it reads them from each layer's
        # build_config (red team pass 9), and the load's build declares their exact shape
        "repeat-normalization",
        "repnorm",
        "17",
        str(1 << 25),
        None,
        ["norm_b", "Normalization"],  # .keras: the config check; .h5 (no build_config): the build
    ),
    (  # red team: every stateful layer's states together, an LSTM's two each
        "stateful-lstms",
        "stateful",
        "13",
        str(1 << 20),
        None,
        ["(LSTM, units=32)", "134,"],
    ),
    (  # red team: a ConvLSTM's states are batch x its output's spatial size x filters
        "convlstm-states",
        "convlstm",
        "17",
        str(1 << 18),
        None,
        ["ConvLSTM1D 'conv_lstm1d', state", "in tensors the file does not store"],
    ),
    (  # red team: a lookup's out-of-vocabulary tokens, a list made when Keras constructs it
        "lookup-oov",
        "lookup",
        "13",
        str(1 << 25),
        None,
        ["'integer_lookup' (IntegerLookup", "num_oov_indices=33554432"],
    ),
    (  # red team pass 4: numpy pads every vocabulary entry to the longest, 4 bytes a character
        "vocab-pad",
        "strlookup",
        "longtoken13",
        "x" * 150_000,
        None,
        ["'string_lookup' (StringLookup", "pads its vocabulary", "numpy strings"],
    ),
    (
        "attention",
        "mha",
        '"key_dim": 5',
        '"key_dim": 10000000',
        None,
        ["(MultiHeadAttention, num_heads=2, key_dim=10000000"],
    ),
]


def run_py(code: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


#: Child helpers: growth() resets the peak RSS (VmHWM) to the current RSS and returns a
#: function giving, in MB, how far the peak has risen above it since.
PEAK = """
    def _status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    def growth():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status("VmRSS")
        return lambda: _status("VmHWM") - base
"""


def _bases(root: Path) -> dict[str, dict[str, Path]]:
    keras = pytest.importorskip("keras")
    L = keras.layers
    q = keras.Input((3, 4))
    # layers named explicitly: Keras numbers default names per process (dense_5 after other tests)
    models = {
        "dense": keras.Sequential(
            [
                keras.Input((4,)),
                L.BatchNormalization(name="batch_normalization"),
                L.Dense(3, name="dense"),
            ]
        ),
        "seq": keras.Sequential(
            [
                keras.Input((5,), dtype="int32"),
                L.Embedding(10, 4, name="embedding"),
                L.LSTM(
                    6, return_sequences=True, recurrent_initializer="glorot_uniform", name="lstm"
                ),
                L.GRU(7, recurrent_initializer="glorot_uniform", name="gru"),
                L.RepeatVector(2, name="repeat_vector"),
            ]
        ),
        "conv": keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                L.Conv2D(5, 3, name="conv2d"),
                L.UpSampling2D(2, name="up_sampling2d"),
            ]
        ),
        "norm": keras.Sequential(
            [keras.Input((8,)), L.Normalization(mean=0.0, variance=1.0, name="normalization")]
        ),
        "mha": keras.Model(
            q, L.MultiHeadAttention(num_heads=2, key_dim=5, name="multi_head_attention")(q, q)
        ),
        # 13 and 17: placeholders a case replaces (as whole numbers) everywhere, shapes too
        "repnorm": keras.Sequential(
            [
                keras.Input((1,)),
                L.RepeatVector(17, name="repeat_vector"),
                L.Normalization(axis=1, mean=0.0, variance=1.0, name="norm_a"),
                L.Normalization(axis=1, mean=0.0, variance=1.0, name="norm_b"),
            ]
        ),
        "stateful": keras.Sequential(
            [
                keras.Input(batch_shape=(13, 1, 1)),
                L.LSTM(32, stateful=True, return_sequences=True, name="lstm_a"),
                L.LSTM(32, stateful=True, name="lstm_b"),
            ]
        ),
        "lookup": keras.Sequential(
            [
                keras.Input((4,), dtype="int64"),
                L.IntegerLookup(vocabulary=[1, 2, 3], num_oov_indices=13, name="integer_lookup"),
            ]
        ),
        "strlookup": keras.Sequential(
            [
                keras.Input((4,), dtype="string"),
                L.StringLookup(
                    vocabulary=["longtoken13"] + [f"t{k}" for k in range(1000)],
                    name="string_lookup",
                ),
            ]
        ),
        "convlstm": keras.Sequential(
            [
                keras.Input(batch_shape=(16, 1, 17, 1)),
                L.ConvLSTM1D(16, 3, padding="same", stateful=True, name="conv_lstm1d"),
            ]
        ),
    }
    out: dict[str, dict[str, Path]] = {}
    for name, model in models.items():
        out[name] = {}
        for fmt in ("keras", "h5"):
            path = root / f"{name}.{fmt}"
            model.save(path)
            out[name][fmt] = path
    return out


def _replace(text: str, old: str, new: str) -> str:
    """Every ``old`` replaced by ``new``; a number only where it is a whole number."""
    if old.isdigit():
        out = re.sub(rf"(?<![\w.]){old}(?![\w.])", new, text)
    else:
        out = text.replace(old, new)
    assert out != text, (old, text)
    return out


def _edit(base: Path, out: Path, old: str, new: str) -> Path:
    """A copy of ``base`` whose model config has every ``old`` replaced by ``new``."""
    if base.suffix == ".keras":
        with zipfile.ZipFile(base) as z:
            members = {n: z.read(n) for n in z.namelist()}
        text = members["config.json"].decode()
        members["config.json"] = _replace(text, old, new).encode()
        with zipfile.ZipFile(out, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
    else:
        import h5py

        shutil.copy(base, out)
        with h5py.File(out, "r+") as f:
            raw = f.attrs["model_config"]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            f.attrs["model_config"] = _replace(text, old, new)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, Any, list[str]]]:
    """Every case as a .keras archive and as a legacy .h5 model."""
    root = tmp_path_factory.mktemp("keras_sizes")
    bases = _bases(root)
    files = []
    for case, base, old, new, shape, words in CASES:
        for fmt in ("keras", "h5"):
            path = _edit(bases[base][fmt], root / f"{case}.{fmt}", old, new)
            assert path.stat().st_size < 200_000
            files.append((f"{case}.{fmt}", path, shape, words))
    return files


@pytest.mark.slow
def test_plain_keras_allocates_what_the_config_declares(
    hostile: list[tuple[str, Path, Any, list[str]]], tmp_path: Path
) -> None:
    """Plain Keras (safe mode on) allocates hundreds of MB for each .keras file, at load or at
    the first predict, before it notices that the stored weights do not fit. One child per
    file, two at a time, forked from a parent that has imported Keras and loaded nothing (so
    the import is paid once): memory a process freed may be reused without raising its peak.
    Each child writes its growth to its own file and the parent writes every exit status to
    another: nothing depends on what the children's libraries print (CI once lost a report
    line in a child's output)."""
    files = [(name, str(path), shape) for name, path, shape, _ in hostile]
    # the legacy .h5 files are built by the same Keras code
    files = [f for f in files if f[0].endswith(".keras")]
    out = tmp_path / "reports"
    out.mkdir()
    r = run_py(
        PEAK
        + f"""
    import json, os, sys, traceback, warnings, numpy as np, keras
    warnings.simplefilter("ignore")
    out = {str(out)!r}
    def child(name, path, shape):
        try:
            grown = growth()
            try:
                m = keras.saving.load_model(path)
                m.predict(np.zeros(shape, "float32"), verbose=0)
            except Exception:
                pass
            with open(os.path.join(out, name + ".grew"), "w") as f:
                f.write(str(grown()))
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    files = {files!r}
    status = {{}}
    for i in range(0, len(files), 2):  # two at a time
        pids = {{}}
        for name, path, shape in files[i : i + 2]:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                child(name, path, shape)
            pids[pid] = name
        for pid, name in pids.items():
            status[name] = os.waitpid(pid, 0)[1]
    with open(os.path.join(out, "status.json"), "w") as f:
        json.dump(status, f)
    """
    )
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert status == {name: 0 for name, _, _ in files}, (status, r.stderr[-3000:])
    grown = {name: int((out / f"{name}.grew").read_text()) for name, _, _ in files}
    small = {name: mb for name, mb in grown.items() if mb < 250}
    assert not small, f"plain Keras did not allocate for {small} (all: {grown})"


@pytest.mark.slow
def test_load_refuses_without_allocating(hostile: list[tuple[str, Path, Any, list[str]]]) -> None:
    """ms.load (and ms.predict, had it loaded) refuses each file with an UnsafeModelError
    naming the layer and the sizes, and the child's peak RSS does not grow."""
    files = [(name, str(path), shape) for name, path, shape, _ in hostile]
    r = run_py(
        PEAK
        + f"""
    import warnings, numpy as np, keras
    import modelstore as ms
    warnings.simplefilter("ignore")
    for name, path, shape in {files!r}:
        grown = growth()
        try:
            m = ms.load(path)
            if shape:
                ms.predict(m, np.zeros(shape, "float32"))
            outcome = "LOADED"
        except ms.ModelstoreError as e:
            outcome = type(e).__name__ + " " + " ".join(str(e).split())
        print("CASE", name, grown(), outcome, flush=True)
    """
    )
    assert r.returncode == 0, r.stderr[-3000:]
    seen = {}
    for line in r.stdout.splitlines():
        if line.startswith("CASE "):
            _, name, mb, outcome = line.split(" ", 3)
            seen[name] = (int(mb), outcome)
    for name, _, _, words in hostile:
        mb, outcome = seen[name]
        assert outcome.startswith("UnsafeModelError"), f"{name}: {outcome}"
        missing = [w for w in words if w not in outcome]
        assert not missing, f"{name}: {missing} not in {outcome}"
        assert mb < 100, f"{name}: modelstore's load grew the peak RSS by {mb} MB ({outcome})"


@pytest.mark.slow
def test_scan_and_inspect_agree_where_the_config_alone_tells(
    hostile: list[tuple[str, Path, Any, list[str]]],
) -> None:
    """Cases the config alone proves (declared weights, growth factors) are unsafe to scan and
    refused by inspect, without Keras building anything."""
    config_only = {
        "dense-units",
        "embedding",
        "lstm-units",
        "gru-units",
        "conv-filters",
        "upsampling",
        "normalization-stats",
        "stateful-lstms",
        "lookup-oov",
        "vocab-pad",
        "attention",
    }
    for name, path, _, _words in hostile:
        if name.split(".")[0] not in config_only:
            continue
        report = ms.scan(path)
        assert report.verdict == "unsafe", (name, report)
        with pytest.raises(ms.ModelstoreError):
            ms.inspect(path)


# -- benign models of every size-bearing kind still load -------------------------------------


@pytest.mark.slow
def test_benign_models_of_every_sized_layer_load(tmp_path: Path) -> None:
    """A trained model using every size-bearing layer kind round-trips through .keras and .h5."""
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    L = keras.layers
    img = keras.Input((8, 8, 3), name="img")
    x = L.Conv2D(4, 3, padding="same", dilation_rate=2)(img)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.SeparableConv2D(4, 3, padding="same")(x)
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same")(x)
    x = L.UpSampling2D(2)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.GlobalAveragePooling2D()(x)
    tok = keras.Input((6,), dtype="int32", name="tok")
    e = L.Embedding(50, 8)(tok)
    e = L.MultiHeadAttention(num_heads=2, key_dim=4)(e, e)
    e = L.GroupQueryAttention(head_dim=4, num_query_heads=2, num_key_value_heads=1)(e, e)
    e = L.LayerNormalization()(e)
    e = L.Bidirectional(L.LSTM(5, return_sequences=True))(e)
    e = L.GRU(4, return_sequences=True)(e)
    e = L.SimpleRNN(3)(e)
    e = L.RepeatVector(3)(e)
    e = L.Conv1D(2, 2)(e)
    e = L.Reshape((4,))(e)
    h = L.Concatenate()([x, e])
    h = L.EinsumDense("ab,bc->ac", output_shape=5)(h)
    out = L.Dense(2, activation="softmax")(L.Dropout(0.1)(h))
    model = keras.Model([img, tok], out)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    xs = [
        rng.normal(size=(8, 8, 8, 3)).astype("float32"),
        rng.integers(0, 50, size=(8, 6)).astype("int32"),
    ]
    model.fit(xs, rng.integers(0, 2, size=8), epochs=1, verbose=0)
    want = model.predict(xs, verbose=0)
    # a stateful RNN makes its state from tensors, which Keras' StatelessScope cannot defer
    stateful = keras.Sequential(
        [keras.Input(batch_shape=(2, 3, 4)), L.LSTM(3, stateful=True), L.Dense(2)]
    )
    x2 = rng.normal(size=(2, 3, 4)).astype("float32")
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"all{suffix}"
        ms.save(model, path)
        assert ms.scan(path).verdict == "safe"
        got = ms.load(path).predict(xs, verbose=0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        path = tmp_path / f"stateful{suffix}"
        ms.save(stateful, path)
        assert ms.load(path).predict(x2, verbose=0).shape == (2, 2)


@pytest.mark.slow
def test_benign_statistics_and_states_load(tmp_path: Path) -> None:
    """Per-channel statistics on a large image, adapted statistics the file stores, and stateful
    recurrent layers (wrapped, convolutional) load and predict as they were saved; the exact
    shapes the check build declares for them are the ones Keras makes."""
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    from modelstore.security import kerasbuild

    L = keras.layers
    rng = np.random.default_rng(0)
    img = keras.Sequential(  # 1.5 M statistics elements by the old charge, for 200 weights
        [
            keras.Input((512, 512, 3)),
            L.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.052, 0.05, 0.051]),
            L.Conv2D(4, 3, strides=8),
            L.GlobalAveragePooling2D(),
            L.Dense(2),
        ]
    )
    adapted = L.Normalization()
    adapted.adapt(rng.normal(size=(4, 70_000)).astype("float32"))
    wide = keras.Sequential([keras.Input((70_000,)), adapted, L.Dense(1)])
    seq = keras.Input(batch_shape=(2, 3, 5))
    # named: Keras numbers default names per process
    h = L.Bidirectional(L.LSTM(4, stateful=True, return_sequences=True, name="lstm"))(seq)
    h = L.TimeDistributed(L.Dense(3))(h)
    h = L.GRU(2, stateful=True, name="gru")(h)
    frames = keras.Input(batch_shape=(2, 3, 6, 1))
    c = L.ConvLSTM1D(2, 3, padding="same", stateful=True, name="conv_lstm1d")(frames)
    c = L.GlobalAveragePooling1D()(c)
    states = keras.Model([seq, frames], L.Concatenate()([h, c]))
    cases = [
        (img, rng.normal(size=(1, 512, 512, 3)).astype("float32")),
        (wide, rng.normal(size=(2, 70_000)).astype("float32")),
        (states, [rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 6, 1))]),
    ]
    for i, (model, x) in enumerate(cases):
        want = model.predict_on_batch(x)
        for suffix in (".keras", ".h5"):
            path = tmp_path / f"m{i}{suffix}"
            ms.save(model, path)
            assert ms.scan(path).verdict == "safe", (path, ms.scan(path))
            got = ms.load(path).predict_on_batch(x)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    config = json.loads(zipfile.ZipFile(tmp_path / "m2.keras").read("config.json"))
    made = {
        (what, shape)
        for what, shape, _, kind, _ in kerasbuild.declared_by(config, False)
        if kind == kerasbuild.MADE
    }
    assert ("LSTM 'forward_lstm', state", (2, 4)) in made
    assert ("LSTM 'backward_lstm', state", (2, 4)) in made
    assert ("GRU 'gru', state", (2, 2)) in made
    assert ("ConvLSTM1D 'conv_lstm1d', state", (2, 6, 2)) in made


def test_the_check_build_declares_statistics_at_their_broadcast_shape() -> None:
    """Statistics given in the config are declared at the shape Keras broadcasts them to (the
    input's kept axes, after an Embedding here), counted, and not looked for among the stored
    weights; nothing of that size is made."""
    keras = pytest.importorskip("keras")
    from modelstore.security import kerasbuild

    L = keras.layers
    tokens = keras.Input((7,), dtype="int32")
    x = L.Embedding(3, 11)(tokens)
    x = L.Normalization(axis=(1, 2), mean=0.0, variance=1.0, name="kept")(x)
    model = keras.Model(tokens, x)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    declared = kerasbuild.declared_by(config, False)
    made = [(what, shape) for what, shape, _, kind, _ in declared if kind == kerasbuild.MADE]
    assert ("Normalization 'kept', variable 'mean'", (7, 11)) in made
    assert ("Normalization 'kept', variable 'variance'", (7, 11)) in made
    assert [n for what, _, n, kind, _ in declared if kind == kerasbuild.STORED] == [
        33
    ]  # the embedding's table
    big = json.loads(json.dumps(config).replace('"output_dim": 11', '"output_dim": 300000'))
    big = json.loads(json.dumps(big).replace("11]", "300000]"))
    with pytest.raises(kerassize.SizeError, match="in tensors the file does not store"):
        kerasbuild.match(kerasbuild.declared_by(big, False), [(3 * 300_000, 4)], "the config")


def test_a_normalization_is_known_by_what_it_resolves_to() -> None:
    """Red team, pass 3: ``{"module": "keras", "class_name": "layers.Normalization"}`` is
    Keras' Normalization too; the check build makes it shape-only like any other spelling."""
    keras = pytest.importorskip("keras")
    from modelstore.security import kerasbuild

    L = keras.layers
    x = keras.Input((1,))
    y = L.RepeatVector(5, name="rep")(x)
    y = L.Normalization(axis=1, mean=0.0, variance=1.0, name="kept")(y)
    text = json.dumps(keras.saving.serialize_keras_object(keras.Model(x, y)))
    old = '"module": "keras.layers", "class_name": "Normalization"'
    assert old in text
    config = json.loads(
        text.replace(old, '"module": "keras", "class_name": "layers.Normalization"')
    )
    node = next(n for n in config["config"]["layers"] if n["config"]["name"] == "kept")
    assert type(keras.saving.deserialize_keras_object(node)) is L.Normalization  # as Keras reads it
    made = [
        (w, shape)
        for w, shape, _, kind, _ in kerasbuild.declared_by(config, False)
        if kind == kerasbuild.MADE
    ]
    assert ("Normalization 'kept', variable 'mean'", (5,)) in made


# -- the config check alone (no Keras) ------------------------------------------------------


def _seq(*layers: dict[str, Any], shape: list[Any] | None = None) -> dict[str, Any]:
    first = {
        "class_name": "InputLayer",
        "config": {"name": "in", "batch_shape": shape or [None, 4]},
    }
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [first, *layers]}}


def _layer(cls: str, name: str, **cfg: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": cls, "config": {"name": name, **cfg}}


@pytest.mark.parametrize(
    "layer, words",
    [
        (  # built for the 4-wide input: (4 + 1) x units, as Keras makes it
            _layer("Dense", "d", units=5e7),
            ["'d' (Dense, units=50000000.0) built for the input [None, 4]", "250,000,000"],
        ),
        (_layer("Embedding", "e", input_dim=10**6, output_dim=10**3), ["'e' (Embedding, "]),
        (_layer("Conv3D", "c", filters=10**5, kernel_size=[3, 3, 3]), ["'c' (Conv3D, "]),
        (
            _layer("Bidirectional", "b", layer=_layer("LSTM", "inner", units=10**4)),
            ["'inner' (LSTM, "],
        ),
        (_layer("RNN", "r", cell=_layer("GRUCell", "cell", units=10**4)), ["'cell' (GRUCell, "]),
        (
            _layer(
                "GroupQueryAttention",
                "g",
                head_dim=10**4,
                num_query_heads=64,
                num_key_value_heads=8,
            ),
            ["'g' (GroupQueryAttention, "],
        ),
        (_layer("RepeatVector", "rv", n=10**9), ["'rv' (RepeatVector, ", "1,000,000,000"]),
        (_layer("UpSampling3D", "u", size=[100, 100, 100]), ["'u' (UpSampling3D, ", "1,000,000"]),
        (
            _layer("Conv2DTranspose", "t", filters=1, kernel_size=1, strides=[1000, 1000]),
            ["'t' (Conv2DTranspose, "],
        ),
        (_layer("ZeroPadding2D", "z", padding=[[10**5, 0], [10**5, 0]]), ["'z' (ZeroPadding2D, "]),
        (_layer("Resizing", "rs", height=10**5, width=10**5), ["'rs' (Resizing, "]),
        (
            _layer("CategoryEncoding", "ce", num_tokens=10**9, output_mode="one_hot"),
            ["'ce' (CategoryEncoding, "],
        ),
        (
            _layer("Conv1D", "dil", filters=1, kernel_size=3, dilation_rate=10**9, padding="same"),
            ["'dil' (Conv1D, "],
        ),
        # red team pass 4: scan missed these (load matched their variables)
        (
            _layer("Convolution2D", "c2", filters=10**5, kernel_size=[30, 30]),
            ["'c2' (Conv2D, filters=100000"],
        ),
        (
            _layer("SeparableConvolution1D", "s1", filters=10**8, kernel_size=3),
            ["'s1' (SeparableConv1D, "],
        ),
        (
            _layer("EinsumDense", "ed", equation="ab,bc->ac", output_shape=[10**8]),
            ["'ed' (EinsumDense, "],
        ),
        (
            _layer("EinsumDense", "e3", equation="...b,bc->...c", output_shape=10**8),
            ["'e3' (EinsumDense, "],
        ),
        (_layer("STFTSpectrogram", "st", frame_length=10**4), ["'st' (STFTSpectrogram, "]),
    ],
)
def test_config_check_names_layer_and_sizes(layer: dict[str, Any], words: list[str]) -> None:
    """The Keras-free check refuses each size-bearing or size-growing layer declared too large,
    naming the layer and the numbers."""
    with pytest.raises(kerassize.SizeError) as e:
        kerassize.check_config(_seq(layer), stored=[12, 3])
    assert all(w in str(e.value) for w in words), str(e.value)


def test_config_check_bounds_inputs_and_accepts_what_is_stored() -> None:
    """Absurd input shapes are refused; a large layer is accepted when its weights are stored;
    many layers growing a little each add up."""
    with pytest.raises(kerassize.SizeError, match="input 'in'"):
        kerassize.check_config(_seq(shape=[None, 10**12]), stored=[])
    big = _layer("Dense", "d", units=5 * 10**6)
    kerassize.check_config(_seq(big), stored=[4 * 5 * 10**6, 5 * 10**6])
    stateful = _layer("LSTM", "st", units=1000, stateful=True)  # its state is batch x units
    with pytest.raises(
        kerassize.SizeError, match=r"'st' \(LSTM, units=1000\) outputs or pads to 100,000,000"
    ):
        kerassize.check_config(_seq(stateful, shape=[10**5, 3, 4]), stored=[4 * 10**6])
    ups = [_layer("UpSampling2D", f"u{i}", size=[4, 4]) for i in range(6)]
    with pytest.raises(kerassize.SizeError, match="in all"):
        kerassize.check_config(_seq(*ups, shape=[None, 2, 2, 1]), stored=[])


def test_scan_refuses_a_declared_layer_without_keras(tmp_path: Path) -> None:
    """A .keras archive made by hand (config.json and an h5py weights file) declaring
    Dense(5e7) over 15 stored weights is unsafe to scan and refused by load's gate, and
    neither imports TensorFlow."""
    h5py = pytest.importorskip("h5py")
    np = pytest.importorskip("numpy")
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as f:
        f["layers/dense/vars/0"] = np.zeros((4, 3), "float32")
        f["layers/dense/vars/1"] = np.zeros((3,), "float32")
    path = tmp_path / "big.keras"
    config = _seq(_layer("Dense", "dense", units=5 * 10**7))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.13.2"}))
        z.writestr("model.weights.h5", weights.read_bytes())
    r = run_py(f"""
        import sys, modelstore as ms
        report = ms.scan({str(path)!r})
        print("VERDICT", report.verdict, report.findings[0].reason)
        try:
            ms.load({str(path)!r})
        except ms.UnsafeModelError as e:
            print("REFUSED", e)
        print("TF", "tensorflow" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "VERDICT unsafe" in r.stdout and "'dense' (Dense, units=50000000)" in r.stdout, r.stdout
    assert "REFUSED" in r.stdout and "TF False" in r.stdout, r.stdout


def test_normalization_statistics_count_as_what_the_build_makes() -> None:
    """A Normalization given its mean and variance broadcasts them to its input's shape when
    Keras builds it (tensors, not stored weights): counted against what the file stores."""
    norm = _layer("Normalization", "norm", mean=0.0, variance=1.0)
    kerassize.check_config(_seq(norm, shape=[None, 784]), [])  # 1,568 elements: in the slack
    with pytest.raises(kerassize.SizeError, match=r"'norm' \(Normalization\) alone 60,000,000"):
        kerassize.check_config(_seq(norm, shape=[None, 30_000_000]), [])
    adapted = _layer("Normalization", "norm", mean=None, variance=None)  # stored variables
    kerassize.check_config(_seq(adapted, shape=[None, 30_000_000]), [30_000_000] * 2 + [1])
    with pytest.raises(kerassize.SizeError, match=r"'norm' \(Normalization\) built for"):
        kerassize.check_config(_seq(adapted, shape=[None, 30_000_000]), [])  # none stored
    # one kept axis and a list of k values: Keras broadcasts them to k elements, no more
    channels = _layer("Normalization", "norm", axis=[-1], mean=[0.5] * 3, variance=[0.2] * 3)
    kerassize.check_config(_seq(channels, shape=[None, 4096, 4096, 3]), [])
    several = _layer("Normalization", "norm", axis=[1, 2], mean=[0.5] * 3, variance=[0.2] * 3)
    with pytest.raises(kerassize.SizeError, match="'norm' \\(Normalization\\)"):
        kerassize.check_config(_seq(several, shape=[None, 4096, 4096, 3]), [])


def test_states_of_every_stateful_layer_count_together() -> None:
    """An LSTM keeps two states, each batch x units; every stateful layer's count, a
    Bidirectional's backward copy too (red team: one per layer, under the limit, passed)."""
    lstm = _layer("LSTM", "l", units=32, stateful=True)
    shape = [1 << 13, 1, 1]  # 2**13 x 32 x 2 = 2**19 per layer: in the slack alone
    kerassize.check_config(_seq(lstm, shape=shape), [])
    with pytest.raises(kerassize.SizeError, match="'m' \\(LSTM, units=32\\)"):
        kerassize.check_config(
            _seq(lstm, dict(lstm, config={**lstm["config"], "name": "m"}), shape=shape), []
        )
    both = _layer("Bidirectional", "b", layer=lstm)
    with pytest.raises(kerassize.SizeError, match="at least 1,052,800 weights"):
        kerassize.check_config(_seq(both, shape=shape), [])


def test_config_check_is_total_on_garbage() -> None:
    """Random configs of size-bearing layers with hostile values (huge, negative, NaN, 1e300,
    strings, nested lists) only ever raise SizeError: never an OverflowError or TypeError."""
    import random

    rng = random.Random(7)
    classes = [
        "Dense",
        "Embedding",
        "Conv2D",
        "Conv1DTranspose",
        "SeparableConv2D",
        "DepthwiseConv2D",
        "ConvLSTM2D",
        "LSTM",
        "GRUCell",
        "MultiHeadAttention",
        "GroupQueryAttention",
        "RepeatVector",
        "UpSampling2D",
        "ZeroPadding3D",
        "Resizing",
        "Reshape",
        "CategoryEncoding",
        "Hashing",
        "TextVectorization",
        "InputLayer",
    ]
    keys = [
        *kerassize._SIZE_ARGS,
        "batch_shape",
        "batch_input_shape",
        "stateful",
        "use_bias",
        "output_mode",
    ]
    odd = [
        None,
        True,
        False,
        -1,
        0,
        3,
        2**40,
        1e300,
        float("nan"),
        float("inf"),
        "x",
        "one_hot",
        2.5,
    ]

    def value(depth: int = 0) -> Any:
        r = rng.random()
        if r < 0.3:
            return rng.choice(odd)
        if r < 0.6 and depth < 3:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        if r < 0.7 and depth < 3:
            return {rng.choice(keys): value(depth + 1)}
        return rng.randint(-5, 10**6)

    for _ in range(3000):
        layers = [
            {
                "class_name": rng.choice(classes),
                "config": {rng.choice(keys): value() for _ in range(4)},
            }
            for _ in range(3)
        ]
        try:
            kerassize.check_config(
                {"class_name": "Sequential", "config": {"layers": layers}}, [rng.randint(0, 10**7)]
            )
        except kerassize.SizeError:
            pass


def test_a_stateful_flag_counts_whenever_keras_would_take_it() -> None:
    """Keras tests ``stateful`` for truth: ``"stateful": 1`` makes the batch x units state at
    build as ``True`` does (red team, pass 2)."""
    rnn = _layer("SimpleRNN", "r", units=256, stateful=1)
    with pytest.raises(kerassize.SizeError, match="'r'"):
        kerassize.check_config(_seq(rnn, shape=[2**19, 1, 1]), [])


def test_what_preprocessing_layers_make_when_constructed_counts() -> None:
    """Red team, pass 3: config integers that Keras turns into lists and arrays when it
    constructs the layer (no build defers them) count against what the file stores."""
    lookups = [
        _layer("IntegerLookup", "l", num_oov_indices=1 << 20),
        _layer("StringLookup", "l", num_oov_indices=1 << 20),
        _layer("TextVectorization", "l", ngrams=1 << 20),
        _layer(
            "IntegerLookup", "l", output_mode="tf_idf", pad_to_max_tokens=True, max_tokens=1 << 20
        ),
    ]
    for layer in lookups:
        with pytest.raises(kerassize.SizeError, match="'l' "):
            kerassize.check_config(_seq(layer), [])
    benign = _layer("StringLookup", "l", num_oov_indices=5, max_tokens=20_000)
    kerassize.check_config(_seq(benign), [])
    kerassize.check_config(_seq(_layer("TextVectorization", "l", ngrams=3)), [])


def test_the_batch_a_layer_is_built_with_counts() -> None:
    """Red team, pass 3: Keras builds a layer from its build_config before calling it, so a
    stateful RNN's states take that batch whatever the Input declares."""
    lstm = _layer("LSTM", "l", units=32, stateful=True)
    lstm["build_config"] = {"input_shape": [1 << 20, 1, 1]}
    assert kerassize.declared_batch(_seq(lstm, shape=[None, 1, 1])) == 1 << 20
    with pytest.raises(kerassize.SizeError, match="'l' \\(LSTM, units=32\\)"):
        kerassize.check_config(_seq(lstm, shape=[None, 1, 1]), [])
    lstm["build_config"] = {"input_shape": [2**40, 1, 1]}
    with pytest.raises(kerassize.SizeError, match="whole numbers up to"):
        kerassize.check_config(_seq(lstm, shape=[None, 1, 1]), [])

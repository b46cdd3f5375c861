"""``scan`` follows a Keras model's tensors from its declared inputs (``kerasshapes``), so a
layer without a ``build_config`` (every legacy ``.h5``) is sized for the input Keras builds it
for. Red team, pass 9: a 5 KB ``.h5`` whose ``Dense`` is fed by a 2**20-wide ``Input`` made
plain Keras allocate 5 GiB; ``scan`` sized the layer from its units alone and called it safe
(``load`` refused it).

- **exact**: every shape the walk gives a layer is the one Keras calls it on, for models of
  most built-in layer kinds, Functional, Sequential, nested and legacy (Keras 2) configs;
  where the walk has no rule it gives nothing (never a guess), so no benign model is refused;
- **hostile**: each file is first shown to make plain Keras build far more than it stores
  (counted in a ``StatelessScope``), then refused by ``scan`` and ``load``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402
from modelstore.security.kerasshapes import inferred_inputs  # noqa: E402
from tests.sampling import quick_sample  # noqa: E402

L = keras.layers


def _cnn() -> Any:
    i = keras.Input((33, 31, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same")(i)
    x = L.MaxPooling2D()(x)
    x = L.Conv2DTranspose(4, 3, strides=2)(x)
    x = L.Conv2DTranspose(4, 2, strides=3, padding="same")(x)
    x = L.ZeroPadding2D(((1, 2), (3, 4)))(x)
    x = L.Cropping2D(1)(x)
    x = L.UpSampling2D((2, 3))(x)
    x = L.SeparableConv2D(5, 3, dilation_rate=2)(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2)(x)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    att, scores = L.MultiHeadAttention(2, 3, attention_axes=(1, 2))(
        x, x, return_attention_scores=True
    )  # scores: (batch, heads, 4, 3, 4, 3)
    x = L.Add()([x, att])
    y = L.GlobalMaxPooling2D(keepdims=True)(x)
    x = L.Flatten()(x)
    x = L.Dense(16)(x)
    x = L.Concatenate()([x, L.Dense(4)(L.Flatten()(y)), L.Dense(2)(L.Flatten()(scores))])
    return keras.Model(i, L.Dense(3, activation="softmax")(L.Dropout(0.2)(x)))


def _sequences() -> Any:
    i = keras.Input((12,), dtype="int32")
    x = L.Embedding(50, 6)(i)
    x = L.Conv1D(8, 3, padding="causal", dilation_rate=2)(x)
    x = L.MaxPooling1D(2)(x)
    x = L.LSTM(6, return_sequences=True)(x)
    x, h, c = L.LSTM(5, return_sequences=True, return_state=True)(x)
    x = L.Bidirectional(L.GRU(5, return_sequences=True))(x)
    x = L.Bidirectional(L.SimpleRNN(3), merge_mode="sum")(x)
    x = L.Concatenate()([x, h, c])
    x = L.RepeatVector(4)(x)
    x = L.TimeDistributed(L.Dense(7))(x)
    x = L.Permute((2, 1))(x)
    x = L.RNN(L.GRUCell(3), return_sequences=True)(x)
    a, scores = L.MultiHeadAttention(2, 4, output_shape=6)(x, x, return_attention_scores=True)
    a = L.Concatenate()([a, L.Reshape((7, -1))(scores)])
    b = L.AdditiveAttention()([x, x])  # (Attention: Keras cannot read its .h5 back)
    _, s1 = L.AdditiveAttention()([x, L.Dense(4)(x)], return_attention_scores=True)
    short = L.Cropping1D((0, 2))(x)  # fewer steps than the query
    _, s2 = L.GroupQueryAttention(4, 2, 1)(x, short, return_attention_scores=True)
    x = L.Concatenate()([a, b])
    sc = L.Concatenate()([L.Flatten()(s1), L.Flatten()(s2)])
    x = L.EinsumDense("abc,cd->abd", output_shape=(7, 9), bias_axes="d")(x)
    x = L.EinsumDense("...b,bc->...c", output_shape=5)(x)
    x = L.EinsumDense("ab...,bc->ac...", output_shape=4)(x)
    x = L.Reshape((2, -1))(x)
    x = L.Dot(axes=2)([x, x])
    x = L.Add()([x, L.Multiply()([x, x])])
    x = L.LayerNormalization()(L.GlobalAveragePooling1D()(x))
    e = L.CategoryEncoding(20, output_mode="count")(L.Hashing(20)(i))
    f = L.CategoryEncoding(9, output_mode="one_hot")(L.Hashing(9)(L.Reshape((12, 1))(i)))
    x = L.Concatenate()([x, L.Dense(3)(e), L.Flatten()(f), L.Dense(2)(sc)])
    return keras.Model(i, L.Dense(2)(x))


def _audio() -> Any:
    i = keras.Input((64,))
    mel = L.MelSpectrogram(num_mel_bins=6, sequence_stride=4, fft_length=8, sequence_length=8)
    x = L.Dense(3)(L.Flatten()(mel(i)))
    d = L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="count")(L.Reshape((4, 16))(i))
    h = L.Discretization(bin_boundaries=[0.5], output_mode="one_hot")(L.Reshape((64, 1))(i))
    s1 = L.STFTSpectrogram(frame_length=16, frame_step=4, fft_length=32)(L.Reshape((64, 1))(i))
    s2 = L.STFTSpectrogram("stft", 8, padding="same", expand_dims=True)(L.Reshape((32, 2))(i))
    s3 = L.STFTSpectrogram("real", 6, data_format="channels_first")(L.Reshape((2, 32))(i))
    spectra = [L.Flatten()(s) for s in (s1, s2, s3)]
    v = L.Bidirectional(L.ConvLSTM1D(3, 3, return_sequences=True))(L.Reshape((4, 8, 2))(i))
    v = L.Bidirectional(L.ConvLSTM1D(2, 2), merge_mode="sum")(v)
    y = L.Concatenate()([x, L.Flatten()(d), L.Flatten()(h), *spectra, L.Flatten()(v)])
    return keras.Model(i, L.Dense(2)(y))


def _volumes() -> Any:
    first = "channels_first"
    i = keras.Input((2, 9, 8, 7))
    x = L.Conv3D(4, (3, 2, 1), data_format=first)(i)
    x = L.MaxPooling3D(2, data_format=first, padding="same")(x)
    x = L.UpSampling3D(2, data_format=first)(x)
    x = L.ZeroPadding3D(1, data_format=first)(x)
    x = L.Cropping3D(((1, 0), (0, 1), (2, 2)), data_format=first)(x)
    x = L.Conv3DTranspose(3, 2, strides=(1, 2, 1), data_format=first)(x)
    x = L.GlobalAveragePooling3D(data_format=first)(x)
    return keras.Model(i, L.Dense(2)(x))


def _nested_and_shared() -> Any:
    inner = keras.Sequential([L.Dense(6), L.ReLU(), L.Dense(5)], name="inner")
    tower = keras.Sequential([keras.Input((5,)), L.Dense(4)], name="tower")
    shared = L.Dense(5, name="shared")
    a, b = keras.Input((10,)), keras.Input((10,))
    x = L.Subtract()([shared(a), shared(b)])
    x = tower(inner(x))
    j = keras.Input((4,))
    sub = keras.Model(j, L.Dense(3)(L.Dense(6)(j)), name="sub")
    x = L.Concatenate()([sub(x), x])
    x = L.Bidirectional(
        L.LSTM(4, return_sequences=True),
        backward_layer=L.LSTM(2, return_sequences=True, go_backwards=True),
    )(L.RepeatVector(3)(x))
    x = L.Flatten()(x)
    x = L.Average()([x, L.Maximum()([x, x]), L.Minimum()([x, x])])
    return keras.Model([a, b], L.Dense(1)(x))


def _sequential() -> Any:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(8, 5, strides=(2, 1)),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Conv2D(4, 3, padding="same"),
            L.MaxPooling2D((2, 3), strides=(1, 2)),
            L.SpatialDropout2D(0.1),
            L.Flatten(),
            L.Dense(10),
            L.Softmax(),
        ]
    )


def _transposes() -> Any:
    """Transposed convolutions with ``output_padding``, ``valid`` and ``same``."""
    i = keras.Input((9, 3))
    x = L.Conv1DTranspose(4, 3, strides=2, output_padding=1)(i)  # 20
    x = L.Conv1DTranspose(4, 4, strides=3, padding="same", output_padding=2)(x)  # 59
    x = L.Reshape((59, 4, 1))(x)
    x = L.Conv2DTranspose(3, (3, 2), strides=(2, 3), padding="same", output_padding=(0, 1))(x)
    x = L.Conv2DTranspose(2, 2, strides=2, output_padding=1, data_format="channels_first")(x)
    x = L.Conv3DTranspose(2, 1, strides=2, output_padding=1)(L.Reshape((2, 21, 7, 1))(x))
    return keras.Model(i, L.Dense(2)(L.Flatten()(x)))


def _lookups() -> Any:
    """Lookups by index, and padded to ``max_tokens``; a text vectorizer's token ids."""
    i, n, t = (
        keras.Input((5,), dtype="string"),
        keras.Input((3,), dtype="int64"),
        keras.Input((1,), dtype="string"),
    )
    x = L.Embedding(8, 4)(L.StringLookup(vocabulary=["a", "b", "c"])(i))
    hot = L.StringLookup(
        vocabulary=["a", "b"], output_mode="multi_hot", pad_to_max_tokens=True, max_tokens=10
    )(i)
    one = L.IntegerLookup(
        vocabulary=[1, 2, 3], output_mode="one_hot", pad_to_max_tokens=True, max_tokens=6
    )(n)
    seq = L.TextVectorization(vocabulary=["a", "b"], output_sequence_length=4)(t)
    words = L.TextVectorization(vocabulary=["a", "b", "c"], output_mode="multi_hot")(t)
    many = L.StringLookup(vocabulary=["a", "b", "c"], output_mode="count")(i)
    known = L.IntegerLookup(vocabulary=[-1, 5, 6], output_mode="multi_hot", num_oov_indices=1)(n)
    y = [L.Flatten()(x), hot, L.Flatten()(one), L.Flatten()(L.Embedding(5, 2)(seq))]
    y += [L.Flatten()(words), many, known]
    return keras.Model([i, n, t], L.Dense(2)(L.Concatenate()(y)))


MODELS = {
    "cnn": _cnn,
    "lookups": _lookups,
    "transposes": _transposes,
    "sequences": _sequences,
    "volumes": _volumes,
    "audio": _audio,
    "nested-and-shared": _nested_and_shared,
    "sequential": _sequential,
}


def _named(config: Any, found: dict[int, Any]) -> dict[str, list[Any]]:
    """layer name -> the shapes the walk gives it (in call order)."""
    out: dict[str, list[Any]] = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if id(node) in found:
                out[node["config"]["name"]] = list(found[id(node)].values())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _called(model: Any) -> dict[str, list[list[Any]]]:
    """layer name -> the shapes of the tensors Keras first called it on."""
    out = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        nodes = [n for n in layer._inbound_nodes if not n.is_input]
        if nodes:
            out[layer.name] = [list(t.shape) for t in nodes[0].input_tensors]
    return out


def _check_exact(model: Any, config: dict[str, Any]) -> int:
    got, keras_shapes = _named(config, inferred_inputs(config)), _called(model)
    for name, shapes in got.items():
        assert name in keras_shapes, name
        assert shapes == keras_shapes[name][: len(shapes)], (name, shapes, keras_shapes[name])
    return len(got)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MODELS))
def test_the_walk_gives_every_layer_the_shape_keras_calls_it_on(tmp_path: Path, case: str) -> None:
    """In a legacy ``.h5`` (no ``build_config``): exact shapes for the layers it follows
    (all but a few here), and the model scans safe and loads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MODELS[case]()
        path = tmp_path / f"{case}.h5"
        model.save(path)
    with h5py.File(path) as f:
        config = json.loads(f.attrs["model_config"])
    followed = _check_exact(model, config)
    called = _called(model)
    assert followed >= len(called) - 2, (followed, sorted(called))  # RNN cells: not followed
    assert ms.scan(path).verdict == "safe"
    loaded = ms.load(path)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]


def _legacy(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 Functional config as Keras 2 wrote it: ``[[layer, node, tensor, kwargs]]``
    per inbound node, tensors in kwargs as ``[layer, node, tensor]``."""

    def ref(t: Any) -> Any:
        if isinstance(t, dict) and t.get("class_name") == "__keras_tensor__":
            return list(t["config"]["keras_history"])
        if isinstance(t, list):
            return [ref(v) for v in t]
        return t

    for layer in config["config"]["layers"]:
        nodes = []
        for node in layer["inbound_nodes"]:
            first = node["args"][0]
            tensors = [ref(t) for t in (first if isinstance(first, list) else [first])]
            extra = {k: ref(v) for k, v in node["kwargs"].items()}
            nodes.append([[*t, extra] for t in tensors])
        layer["inbound_nodes"] = nodes
    return config


def test_keras_2_configs_are_followed_as_keras_reads_them() -> None:
    """Keras 2's inbound nodes (entries, kwargs holding tensors) give the same shapes, and
    Keras 3 reads the config back to the same model."""
    from keras.src.legacy.saving import saving_utils

    model = _nested_and_shared()  # (Keras 3 does not read tensors in Keras 2's kwargs)
    config = _legacy(
        json.loads(json.dumps({"class_name": "Functional", "config": model.get_config()}))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = saving_utils.model_from_config(json.loads(json.dumps(config)))
    assert _check_exact(rebuilt, config) >= len(_called(rebuilt)) - 2


def test_a_keras_2_first_layer_input_shape_builds_a_sequential() -> None:
    """Keras 2 wrote ``batch_input_shape`` on a Sequential's first layer; Keras 3 reads it as
    that layer's ``input_shape`` and adds ``InputLayer(shape=[None, 7])`` before it."""
    from keras.src.legacy.saving import saving_utils

    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": "Dense",
                    "config": {"name": "d", "units": 4, "batch_input_shape": [None, 7]},
                },
                {"class_name": "Dense", "config": {"name": "e", "units": 3}},
            ],
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = saving_utils.model_from_config(json.loads(json.dumps(config)))
    assert _check_exact(rebuilt, config) == 2


# -- hostile files ----------------------------------------------------------------------

WIDE = 1 << 20


def _kt(name: str, node: int = 0, tensor: int = 0) -> dict[str, Any]:
    """A Keras 3 tensor reference; the shape it records is not what Keras builds from (the
    tensor's is), so it lies here."""
    history = {"shape": [None, 1], "dtype": "float32", "keras_history": [name, node, tensor]}
    return {"class_name": "__keras_tensor__", "config": history}


def _node(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def _input(name: str, shape: list[Any]) -> dict[str, Any]:
    config = {"name": name, "batch_shape": shape}
    return {"class_name": "InputLayer", "name": name, "config": config, "inbound_nodes": []}


def _layer(cls: str, name: str, inbound: list[Any], **cfg: Any) -> dict[str, Any]:
    config = {"name": name, **cfg}
    return {"class_name": cls, "name": name, "config": config, "inbound_nodes": inbound}


def _model(layers: list[Any], ins: list[Any], outs: list[Any], name: str = "m") -> dict[str, Any]:
    config = {"name": name, "layers": layers, "input_layers": ins, "output_layers": outs}
    return {"class_name": "Functional", "config": config}


def _chain(shape: list[Any], *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """An Input of ``shape``, then each (class, config) called on the one before."""
    nodes, prev = [_input("x", shape)], "x"
    for i, (cls, cfg) in enumerate(layers):
        nodes.append(_layer(cls, f"l{i}", [_node(_kt(prev))], **cfg))
        prev = f"l{i}"
    return _model(nodes, [["x", 0, 0]], [[prev, 0, 0]])


def _sequential_config(*layers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "m", "layers": list(layers), **extra}}


def _dense(name: str, units: int, **extra: Any) -> dict[str, Any]:
    return {"class_name": "Dense", "config": {"name": name, "units": units, **extra}}


def _in(shape: list[Any]) -> dict[str, Any]:
    return {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": shape}}


DENSE = ("Dense", {"units": 1280})
_KERAS = {"module": "keras.layers"}
_CONV_LSTM = {
    "module": "keras.layers",
    "class_name": "ConvLSTM1D",
    "config": {"name": "c", "filters": 1, "kernel_size": 1},
}
FLAT = ("Flatten", {})
_sub = _model(
    [_input("j", [None, WIDE]), _layer("Activation", "act", [_node(_kt("j"))], activation="relu")],
    [["j", 0, 0]],
    [["act", 0, 0]],
    name="sub",
)
_sub.update(name="sub", inbound_nodes=[_node(_kt("x")), _node(_kt("sub", 0))])
_fake_built = _layer("Dense", "d", [_node(_kt("x"))], units=1280)
_fake_built["build_config"] = {"input_shape": [None, 1]}  # Keras' .h5 reader ignores it
_attention = {"class_name": "Attention", "config": {"name": "att"}}

HOSTILE: dict[str, Any] = {
    # red team, pass 9: a Dense fed by a wide Input, no build_config
    "functional-dense": _chain([None, WIDE], DENSE),
    "sequential-dense": _sequential_config(_in([None, WIDE]), _dense("d", 1280)),
    "keras-2-first-layer": _sequential_config(
        _dense("d", 1280, batch_input_shape=[None, WIDE]), _dense("e", 2)
    ),
    "build-input-shape": _sequential_config(
        _dense("d", 1280), _dense("e", 2), build_input_shape=[None, WIDE]
    ),
    "nested-sequential": _chain([None, WIDE], ("Sequential", {"layers": [_dense("d", 1280)]})),
    "conv-flatten-dense": _chain(
        [None, 1024, 1024, 3], ("Conv2D", {"filters": 1, "kernel_size": 1}), FLAT, DENSE
    ),
    "transpose-output-padding": _chain(
        [None, 512, 512, 3],
        ("Conv2DTranspose", {"filters": 1, "kernel_size": 1, "strides": 2, "output_padding": 1}),
        FLAT,
        DENSE,
    ),
    "stft-flatten-dense": _chain(
        [None, 65536, 1],
        ("STFTSpectrogram", {"frame_length": 16, "frame_step": 1, "mode": "log"}),
        FLAT,
        DENSE,
    ),
    # red team, pass 13: arguments Keras reads as whole numbers, given as true or a fraction
    "conv-kernel-true": _chain(
        [None, 512, 512, 3], ("Conv2D", {"filters": 1, "kernel_size": True}), FLAT, DENSE
    ),
    "conv-strides-true": _chain(
        [None, 512, 512, 3],
        ("Conv2D", {"filters": 1, "kernel_size": 1, "strides": True}),
        FLAT,
        DENSE,
    ),
    "pool-fraction": _chain(
        [None, 512, 512, 1], ("MaxPooling2D", {"pool_size": [1.5, 1.5], "strides": 1}), FLAT, DENSE
    ),
    "pool-true": _chain([None, 512, 512, 1], ("MaxPooling2D", {"pool_size": True}), FLAT, DENSE),
    "padding-true": _chain([None, 510, 510, 1], ("ZeroPadding2D", {"padding": True}), FLAT, DENSE),
    "upsampling-true": _chain([None, 512, 512, 1], ("UpSampling2D", {"size": True}), FLAT, DENSE),
    "cropping-true": _chain([None, 514, 514, 1], ("Cropping2D", {"cropping": True}), FLAT, DENSE),
    "reshape-true": _chain([None, 262144], ("Reshape", {"target_shape": [True, -1]}), DENSE),
    "concatenated-float-axis": _model(
        [
            _input("x", [None, WIDE // 8]),
            _layer("Concatenate", "j", [_node([_kt("x"), _kt("x")])], axis=-1.0),
            _layer("Dense", "d", [_node(_kt("j"))], units=1280),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    # red team, pass 14: axes Keras indexes with true or takes as 1.0 / "1"; LoRA kernels;
    # tensors named by false node and tensor indices
    "batchnorm-axis-float": _chain([None, 1 << 27], ("BatchNormalization", {"axis": 1.0})),
    "batchnorm-axis-string": _chain([None, 1 << 27], ("BatchNormalization", {"axis": "1"})),
    "layernorm-axis-true": _chain([None, 1 << 28], ("LayerNormalization", {"axis": True})),
    "dense-lora": _chain([None, 1], ("Dense", {"units": 1, "lora_rank": 1 << 28})),
    "embedding-lora": _chain(
        [None, 1], ("Embedding", {"input_dim": 1, "output_dim": 1, "lora_rank": 1 << 28})
    ),
    "conv-lora": _chain(
        [None, 4, 1], ("Conv1D", {"filters": 1, "kernel_size": 1, "lora_rank": 1 << 28})
    ),
    "dense-lora-wide-input": _chain([None, 1 << 20], ("Dense", {"units": 1, "lora_rank": 512})),
    "false-indices": _model(
        [
            _input("x", [None, WIDE // 8]),
            _layer("Dense", "d", [[["x", False, False, {}]]], units=4096),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    # red team, pass 15: a lookup's width from its OOV indices or vocabulary; LoRA over an
    # EinsumDense kernel's leading axes
    **{
        f"lookup-oov-{mode}": _chain(
            [None, 1],
            (
                "IntegerLookup",
                {"vocabulary": [1], "num_oov_indices": 200_000, "output_mode": mode},
            ),
            ("Dense", {"units": 8192}),
        )
        for mode in ("multi_hot", "one_hot", "count")
    },
    "lookup-vocabulary-multi-hot": _chain(
        [None, 1],
        (
            "StringLookup",
            {"vocabulary": [str(i) for i in range(600)], "output_mode": "multi_hot"},
        ),
        ("Dense", {"units": 500_000}),
    ),
    "einsum-lora": _chain(
        [None, 1],
        (
            "EinsumDense",
            {"equation": "ab,bcd->acd", "output_shape": [1 << 19, 1], "lora_rank": 1024},
        ),
    ),
    # red team, pass 16: a Pipeline builds its layers for what it is given
    "pipeline-dense": _chain(
        [None, WIDE],
        (
            "Pipeline",
            {"layers": [{**_KERAS, "class_name": "Dense", "config": {"name": "d", "units": 512}}]},
        ),
    ),
    "pipeline-second-dense": _chain(
        [None, WIDE],
        (
            "Pipeline",
            {
                "layers": [
                    {
                        **_KERAS,
                        "class_name": "Activation",
                        "config": {"name": "a", "activation": "relu"},
                    },
                    {**_KERAS, "class_name": "Dense", "config": {"name": "d", "units": 512}},
                ]
            },
        ),
    ),
    "pipeline-lora": _chain(
        [None, WIDE],
        (
            "Pipeline",
            {
                "layers": [
                    {
                        **_KERAS,
                        "class_name": "Dense",
                        "config": {"name": "d", "units": 1, "lora_rank": 300},
                    }
                ]
            },
        ),
    ),
    "lookup-embedding": _chain(
        [None, 1 << 18],
        ("StringLookup", {"vocabulary": ["a", "b"]}),
        ("Embedding", {"input_dim": 4, "output_dim": 1}),
        FLAT,
        DENSE,
    ),
    "bidirectional-convlstm": _chain(
        [None, 2, 1 << 17, 1],
        ("Bidirectional", {"layer": _CONV_LSTM}),
        FLAT,
        DENSE,
    ),
    "concatenated": _model(
        [
            _input("x", [None, WIDE // 2]),
            _layer("Concatenate", "j", [_node([_kt("x"), _kt("x")])], axis=-1),
            _layer("Dense", "d", [_node(_kt("j"))], units=1280),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    # red team, pass 11: layers that make a wide tensor from a narrow one, without weights
    "category-encoding": _chain(
        [None, 1], ("CategoryEncoding", {"num_tokens": WIDE, "output_mode": "multi_hot"}), DENSE
    ),
    "hashing": _chain([None, 1], ("Hashing", {"num_bins": WIDE, "output_mode": "one_hot"}), DENSE),
    "einsum": _chain(
        [None, 1], ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": [WIDE // 2]}), DENSE
    ),
    "resizing": _chain([None, 2, 2, 1], ("Resizing", {"height": 1024, "width": 1024}), FLAT, DENSE),
    "center-crop": _chain(
        [None, 4096, 4096, 1], ("CenterCrop", {"height": 1024, "width": 1024}), FLAT, DENSE
    ),
    "random-crop": _chain(
        [None, 4096, 4096, 1], ("RandomCrop", {"height": 1024, "width": 1024}), FLAT, DENSE
    ),
    "adaptive-pooling": _chain(
        [None, 2, 2, 1], ("AdaptiveAveragePooling2D", {"output_size": [1024, 1024]}), FLAT, DENSE
    ),
    "convlstm": _chain(
        [None, 2, 1024, 1024, 1],
        ("ConvLSTM2D", {"filters": 1, "kernel_size": 1, "padding": "same"}),
        FLAT,
        DENSE,
    ),
    "attention-scores": _model(
        [
            _input("q", [None, 1, 1]),
            _input("v", [None, WIDE, 1]),
            dict(
                _attention,
                name="att",
                inbound_nodes=[_node([_kt("q"), _kt("v")], return_attention_scores=True)],
            ),
            _layer("Dense", "d", [_node(_kt("att", 0, 1))], units=1280),
        ],
        [["q", 0, 0], ["v", 0, 0]],
        [["d", 0, 0]],
    ),
    "mel-spectrogram": _chain(  # 312 GiB in plain Keras
        [None, 16000],
        ("MelSpectrogram", {"num_mel_bins": 4096, "sequence_stride": 1, "fft_length": 2048}),
        FLAT,
        DENSE,
    ),
    "discretization": _chain(
        [None, WIDE],
        ("Discretization", {"bin_boundaries": [0.0], "output_mode": "one_hot"}),
        FLAT,
        DENSE,
    ),
    # red team, pass 12: attention scores as Keras writes them (attention_axes=[1]), a
    # recurrent layer called with sequences=, shape-keeping augmentation layers, a wrapper
    "mha-scores": _model(
        [
            _input("x", [None, 1024, 1]),
            _layer(
                "MultiHeadAttention",
                "att",
                [_node(_kt("x"), _kt("x"), return_attention_scores=True)],
                num_heads=32,
                key_dim=1,
                attention_axes=[1],
            ),
            _layer("Flatten", "f", [_node(_kt("att", 0, 1))]),
            _layer("Dense", "d", [_node(_kt("f"))], units=32),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    "keyword-sequences": _model(
        [
            _input("x", [None, 4, WIDE]),
            _layer("LSTM", "l", [_node(sequences=_kt("x"))], units=256),
        ],
        [["x", 0, 0]],
        [["l", 0, 0]],
    ),
    "augmentation": _chain([None, 1024, 1024, 3], ("RandomInvert", {}), FLAT, DENSE),
    "spectral-normalization": _chain(
        [None, 1024, 1024, 3],
        (
            "SpectralNormalization",
            {
                "layer": {
                    "module": "keras.layers",
                    "class_name": "Conv2D",
                    "config": {"name": "c", "filters": 1, "kernel_size": 1},
                }
            },
        ),
        FLAT,
        DENSE,
    ),
    "reversible-embedding": _chain(
        [None, 1], ("ReversibleEmbedding", {"input_dim": WIDE, "output_dim": 1280})
    ),
    # red team, pass 11: a build_config Keras' legacy reader ignores, a nested model's second
    # call, indices Keras reads from the end, a name given twice, upper-case arguments
    "fake-build-config": _model(
        [_input("x", [None, WIDE]), _fake_built], [["x", 0, 0]], [["d", 0, 0]]
    ),
    "nested-second-call": _model(
        [_input("x", [None, WIDE]), _sub, _layer("Dense", "d", [_node(_kt("sub", 1))], units=1280)],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    "negative-index": _model(
        [_input("x", [None, WIDE]), _layer("Dense", "d", [_node(_kt("x", -1))], units=1280)],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    "keras-2-negative-tensor": _model(
        [_input("x", [None, WIDE]), _layer("Dense", "d", [[["x", 0, -1, {}]]], units=1280)],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    "name-twice": _model(
        [
            _input("x", [None, 4]),
            _input("x", [None, WIDE]),
            _layer("Dense", "d", [_node(_kt("x"))], units=1280),
        ],
        [["x", 0, 0]],
        [["d", 0, 0]],
    ),
    "upper-case-channels-first": _chain(
        [None, WIDE, 2, 2],
        ("Conv2D", {"filters": 1280, "kernel_size": 1, "data_format": "CHANNELS_FIRST"}),
    ),
}


def _keras_builds(config: dict[str, Any]) -> int:
    """Elements plain Keras makes for the config (its legacy .h5 reader; no allocation)."""
    from keras.src.backend.common import global_state
    from keras.src.legacy.saving import saving_utils

    # (a plain StatelessScope initialises the variables it deferred when it exits)
    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with warnings.catch_warnings(), keras.StatelessScope(initialize_variables=False):
            warnings.simplefilter("ignore")
            model = saving_utils.model_from_config(json.loads(json.dumps(config)))
            return sum(int(np.prod(w.shape)) for w in model.weights)
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def _h5(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A legacy .h5 holding ``config`` and no weights (what Keras builds comes first)."""
    path = tmp_path / "hostile.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = keras.__version__
        f.attrs["backend"] = keras.backend.backend()
        f.create_group("model_weights").attrs["layer_names"] = np.array([], dtype="S1")
    return path


@pytest.mark.parametrize("case", quick_sample(sorted(HOSTILE)))
def test_a_layer_fed_by_a_wide_input_is_refused_by_scan_as_by_load(
    tmp_path: Path, case: str
) -> None:
    path = _h5(tmp_path, HOSTILE[case])
    made = _keras_builds(HOSTILE[case])
    assert made * 4 > 1 << 30, (case, made)  # the payload: over a GiB, from a few KB
    assert path.stat().st_size < 16 << 10
    report = ms.scan(path)  # sized, or refused as a graph Keras never writes
    reasons = ("declare at least", "cannot be followed")
    assert report.verdict == "unsafe" and any(r in str(report) for r in reasons), report
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)


def test_a_keras_archive_is_read_as_keras_reads_it(tmp_path: Path) -> None:
    """Red team pass 13 in a ``.keras`` archive: ``kernel_size: true`` on a Conv2D over a wide
    image, its ``build_config``s removed, a Dense after it: plain Keras makes over a GiB for the
    few weights stored; scan and load both refuse it."""
    x = keras.Input((4, 4, 3), name="x")
    y = L.Dense(2, name="d")(L.Flatten(name="f")(L.Conv2D(1, 1, name="c")(x)))
    plain = tmp_path / "plain.keras"
    keras.Model(x, y).save(plain)
    with zipfile.ZipFile(plain) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    for node in config["config"]["layers"]:
        node.pop("build_config", None)
        cfg = node["config"]
        if node["class_name"] == "InputLayer":
            cfg["batch_shape"] = [None, 512, 512, 3]
        cfg.update({"c": {"kernel_size": True}, "d": {"units": 1280}}.get(cfg["name"], {}))
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "hostile.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert _keras_builds(config) * 4 > 1 << 30
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "declare at least" in str(report), report
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)


def test_a_rank_that_doubles_at_each_layer_is_refused(tmp_path: Path) -> None:
    """Red team, pass 11: ``Dot(axes=1)([x, x])`` on a rank-R tensor has rank 2R - 3, so 26
    such layers made the walk build shapes of tens of millions of dimensions (60 s and 3.6 GiB
    for a 22 KB file). Pass 12: dropping such shapes let a Dense fed by a 66-dimension input
    go unsized. A tensor of more than MAX_RANK dimensions is refused."""

    layers = [("Dot", {"axes": 1})] * 26
    config = _model(
        [
            _input("x", [None, 2, 2, 2, 2]),
            *[
                _layer("Dot", f"l{i}", [_node([_kt(p), _kt(p)])], axes=1)
                for i, p in enumerate(["x", *[f"l{j}" for j in range(len(layers) - 1)]])
            ],
        ],
        [["x", 0, 0]],
        [[f"l{len(layers) - 1}", 0, 0]],
    )
    for hostile in (config, _chain([None, *[1] * 64, WIDE], DENSE)):
        report = ms.scan(_h5(tmp_path, hostile))
        assert report.verdict == "unsafe" and "dimensions (at most 64)" in str(report)


def test_a_dimension_past_any_size_saturates(tmp_path: Path) -> None:
    """Red team, pass 11: upsampling by 1e300 sixteen times made a 4,800-digit dimension,
    which the refusal could not print (reported as a damaged file). Dimensions saturate; the
    file is refused as growing its input."""
    config = _chain([None, 2, 2, 1], *[("UpSampling2D", {"size": [1e300, 1]})] * 16, FLAT, DENSE)
    path = _h5(tmp_path, config)
    report = ms.scan(path)
    reasons = ("multiplies the size of its input", "elements per sample")
    assert report.verdict == "unsafe" and any(r in str(report) for r in reasons), report
    with pytest.raises(ms.UnsafeModelError, match="multiplies the size|elements per sample"):
        ms.load(path)


def test_outputs_past_the_activation_limit_are_refused_with_their_channels(
    tmp_path: Path,
) -> None:
    """Red team, pass 12: the growth bound counted a resize's height x width, not its
    channels: Resizing(4000, 4000) of a 4096-channel input outputs 65 G elements per sample
    at the first predict. The walk knows every output shape; scan bounds them as load does."""
    config = _chain([None, 1, 1, 4096], ("Resizing", {"height": 4000, "width": 4000}))
    path = _h5(tmp_path, config)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "elements per sample" in str(report), report
    with pytest.raises(ms.UnsafeModelError, match="elements per sample"):
        ms.load(path)


def test_a_model_called_on_many_shapes_is_refused_past_the_walk_budget(tmp_path: Path) -> None:
    """Red team, pass 12: a Sequential without an input, of N layers, called on K inputs of
    K shapes is followed K times (K x N calls: 24 s for a 1.3 MB file at 2,000 x 2,000; Keras
    itself fails on it). Past CALLS_PER_NODE calls per node the walk refuses."""
    k = n = 300
    seq = _sequential_config(
        *[{"class_name": "ReLU", "config": {"name": f"r{i}"}} for i in range(n)]
    )
    seq.update(name="seq", inbound_nodes=[_node(_kt(f"x{i}")) for i in range(k)])
    seq["config"]["name"] = "seq"
    config = _model(
        [*[_input(f"x{i}", [None, i + 1]) for i in range(k)], seq],
        [[f"x{i}", 0, 0] for i in range(k)],
        [["seq", i, 0] for i in range(k)],
    )
    report = ms.scan(_h5(tmp_path, config))
    assert report.verdict == "unsafe" and "called more often than its size allows" in str(report)


def test_a_refusal_inside_a_wrapped_layer_is_not_taken_for_a_malformed_one() -> None:
    """Read-through: a wrapped layer's call (TimeDistributed, Pipeline) that the walk refuses
    raised inside the outer layer's rule, which took any ValueError for a malformed config
    and gave an unknown shape: the Dense after it went unsized."""
    from modelstore.security import kerassize

    reshape = {
        "module": "keras.layers",
        "class_name": "Reshape",
        "config": {"name": "r", "target_shape": [*[1] * 64, WIDE]},
    }
    for wrapper in ({"class_name": "TimeDistributed", "layer": reshape}, {"layers": [reshape]}):
        cls = "Pipeline" if "layers" in wrapper else "TimeDistributed"
        cfg = {k: v for k, v in wrapper.items() if k != "class_name"}
        config = _chain([None, 2, WIDE], (cls, cfg), DENSE)
        with pytest.raises(kerassize.SizeError, match="dimensions \\(at most 64\\)"):
            kerassize.check_config(config, [])

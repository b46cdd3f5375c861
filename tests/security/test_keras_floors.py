"""The config check's weight floors (``kerasweights.built_floor``), against Keras itself.

A layer's ``build_config`` makes Keras build it for the input shape it names before any weight
is read. ``scan`` has no Keras, so it sizes each layer from its config and that shape; a layer
it could not size was called safe by ``scan`` while ``load`` (which builds the model
statelessly) refused it: GroupNormalization, RMSNormalization, ConvLSTM's input kernel,
attention's projections, EinsumDense's input axes, an RNN's cell, Normalization,
AdditiveAttention. Two properties, each against Keras' own build:

- **sound**: no benign layer is given more weights than Keras makes (a false refusal);
- **tight**: for the layers sized from their input, the floor is within a few percent of what
  Keras makes (so a wide ``build_config`` over small stored weights is refused by ``scan``).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402
from modelstore.security import kerassize, kerasweights  # noqa: E402
from tests.sampling import quick_sample  # noqa: E402

L = keras.layers
C = 48  # input channels: large enough that a kernel's input axis dominates its size


def _seq(c: int = C) -> tuple[int, ...]:
    return (2, 5, c)


#: name -> (layer factory, the shape it is built for; None: called on (query, value) of 5 x C)
CASES: dict[str, tuple[Any, Any]] = {
    "dense": (lambda: L.Dense(8), (2, C)),
    "dense-no-bias": (lambda: L.Dense(8, use_bias=False), (2, C)),
    "dense-3d": (lambda: L.Dense(8), _seq()),
    "einsum": (lambda: L.EinsumDense("ab,bc->ac", output_shape=8), (2, C)),
    "einsum-seq": (lambda: L.EinsumDense("abc,cd->abd", output_shape=(None, 8)), _seq()),
    "einsum-ellipsis": (lambda: L.EinsumDense("...b,bc->...c", output_shape=8), _seq()),
    "einsum-heads": (lambda: L.EinsumDense("abc,cde->abde", output_shape=(5, 4, 6)), _seq()),
    "einsum-upper": (lambda: L.EinsumDense("AB,BC->AC", output_shape=8), (2, C)),
    "einsum-right": (lambda: L.EinsumDense("ab...,bc->ac...", output_shape=8), _seq()),
    "einsum-bias-only": (
        lambda: L.EinsumDense("abc,cd->abd", output_shape=(5, 8), bias_axes="bd"),
        _seq(),
    ),
    "einsum-left-bias": (
        lambda: L.EinsumDense("...b,bc->...c", output_shape=8, bias_axes="c"),
        (2, 3, 5, C),
    ),
    "conv1d": (lambda: L.Conv1D(8, 3), (2, 9, C)),
    "conv2d-groups": (lambda: L.Conv2D(8, 3, groups=4), (2, 9, 9, C)),
    "conv2d-first": (lambda: L.Conv2D(8, 3, data_format="channels_first"), (2, C, 9, 9)),
    "conv2d-transpose": (lambda: L.Conv2DTranspose(8, 3, use_bias=False), (2, 9, 9, C)),
    "conv3d": (lambda: L.Conv3D(4, 2), (2, 4, 4, 4, C)),
    "depthwise": (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (2, 9, 9, C)),
    "separable": (lambda: L.SeparableConv1D(8, 3), (2, 9, C)),
    "convlstm1d": (lambda: L.ConvLSTM1D(8, 3), (2, 3, 9, C)),
    "convlstm2d-first": (
        lambda: L.ConvLSTM2D(4, 3, data_format="channels_first"),
        (2, 3, C, 6, 6),
    ),
    "lstm": (lambda: L.LSTM(8), _seq()),
    "gru-no-bias": (lambda: L.GRU(8, use_bias=False), _seq()),
    "simple-rnn": (lambda: L.SimpleRNN(8), _seq()),
    "lstm-cell": (lambda: L.LSTMCell(8), (2, C)),
    "rnn-of-cell": (lambda: L.RNN(L.GRUCell(8)), _seq()),
    "rnn-no-bias-cell": (lambda: L.RNN(L.LSTMCell(8, use_bias=False)), _seq()),
    "rnn-stacked": (lambda: L.RNN([L.LSTMCell(8), L.SimpleRNNCell(4)]), _seq()),
    "bidirectional": (lambda: L.Bidirectional(L.GRU(8)), _seq()),
    "time-distributed": (lambda: L.TimeDistributed(L.Dense(8)), _seq()),
    "batch-norm": (lambda: L.BatchNormalization(), (2, 9, C)),
    "batch-norm-bare": (lambda: L.BatchNormalization(center=False, scale=False), (2, C)),
    "batch-norm-axis1": (lambda: L.BatchNormalization(axis=1), (2, C, 3)),
    "layer-norm": (lambda: L.LayerNormalization(), _seq()),
    "layer-norm-rms": (lambda: L.LayerNormalization(rms_scaling=True), _seq()),
    "layer-norm-center": (lambda: L.LayerNormalization(scale=False), _seq()),
    "layer-norm-axes": (lambda: L.LayerNormalization(axis=[1, 2]), _seq()),
    "group-norm": (lambda: L.GroupNormalization(groups=4), _seq()),
    "group-norm-bare": (lambda: L.GroupNormalization(groups=4, center=False), _seq()),
    "rms-norm": (lambda: L.RMSNormalization(), _seq()),
    "normalization": (lambda: L.Normalization(), _seq()),
    "normalization-axes": (lambda: L.Normalization(axis=(1, 2)), _seq()),
    "normalization-given": (lambda: L.Normalization(mean=0.5, variance=2.0), _seq()),
    "prelu": (lambda: L.PReLU(), (2, 3, C)),
    "prelu-shared": (lambda: L.PReLU(shared_axes=[1]), (2, 3, C)),
    # red team: Keras indexes shared axes from the alphas' list, so -1 and 0 are legal
    "prelu-shared-negative": (lambda: L.PReLU(shared_axes=[-1]), (2, 3, 4, C)),
    "prelu-shared-zero": (lambda: L.PReLU(shared_axes=[0]), (2, 3, C)),
    "mha": (lambda: L.MultiHeadAttention(2, 4), None),
    "mha-value-dim": (lambda: L.MultiHeadAttention(2, 4, value_dim=6, output_shape=10), None),
    "mha-no-bias": (lambda: L.MultiHeadAttention(2, 4, use_bias=False), None),
    "gqa": (lambda: L.GroupQueryAttention(4, 4, 2), None),
    "additive-attention": (lambda: L.AdditiveAttention(), None),
    "attention-no-scale": (lambda: L.AdditiveAttention(use_scale=False), None),
    "embedding": (lambda: L.Embedding(10, 8), (2, 5)),
    "dense-lora": (lambda: L.Dense(8, lora_rank=4), (2, C)),
    "conv1d-lora": (lambda: L.Conv1D(8, 3, lora_rank=2), (2, 9, C)),
    "conv2d-groups-lora": (lambda: L.Conv2D(8, 3, groups=4, lora_rank=2), (2, 9, 9, C)),
    "embedding-lora": (lambda: L.Embedding(10, 8, lora_rank=3), (2, 5)),
    "einsum-lora": (lambda: L.EinsumDense("ab,bc->ac", output_shape=8, lora_rank=2), (2, C)),
    "stft-log": (lambda: L.STFTSpectrogram(frame_length=100), (2, 400, 1)),
    "stft-real-fft": (lambda: L.STFTSpectrogram("real", 64, fft_length=256), (2, 400, 1)),
    "stft-imag": (lambda: L.STFTSpectrogram("imag", 32), (2, 400, 1)),
}
#: Sized only from their config: their floors may stay well under what Keras makes.
LOOSE = {"embedding", "normalization-given", "attention-no-scale"}


def _built(factory: Any, shape: Any) -> tuple[int, dict[str, Any]]:
    """(elements Keras makes, the layer's config as a file stores it)."""
    with warnings.catch_warnings():  # rms_scaling=True is deprecated, and still what it was
        warnings.simplefilter("ignore")
        layer = factory()
    if shape is None:
        q = keras.Input((5, C))
        wider = isinstance(layer, L.MultiHeadAttention)  # its value may be wider than the query
        v = keras.Input((5, C + 8 if wider else C))
        layer([q, v]) if isinstance(layer, L.AdditiveAttention) else layer(q, v)
    else:
        layer.build(shape)
    made = sum(int(np.prod(w.shape)) for w in layer.weights)
    return made, json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))


def _floor(node: dict[str, Any]) -> int:
    return sum(kerasweights.built_floor(c, cfg, b) for c, _, cfg, b in kerassize._nodes(node))


@pytest.mark.parametrize("case", sorted(CASES))
def test_floors_are_sound_and_tight_against_keras(case: str) -> None:
    factory, shape = CASES[case]
    made, node = _built(factory, shape)
    floor = _floor(node)
    assert floor <= made, f"{case}: floor {floor} > {made} made by Keras (a false refusal)"
    if case not in LOOSE:
        assert floor >= 0.9 * made, f"{case}: floor {floor}, Keras makes {made}"


# -- a file that names a wide input in a layer's build_config ----------------------------------

WIDE = 1 << 13  # 8,192 channels: a few MiB stored, hundreds of MiB built

#: name -> (the layer, the model input it is called on, how to widen its build config)
HOSTILE: dict[str, tuple[Any, tuple[int, ...], Any]] = {
    "group-norm": (
        lambda: L.GroupNormalization(groups=1, name="x"),
        (4,),
        lambda b: {"input_shape": [None, WIDE * 1024]},
    ),
    "rms-norm": (
        lambda: L.RMSNormalization(name="x"),
        (4,),
        lambda b: {"input_shape": [None, WIDE * 2048]},
    ),
    "convlstm": (
        lambda: L.ConvLSTM1D(64, 3, name="x"),
        (2, 6, 4),
        lambda b: {"input_shape": [None, 2, 6, WIDE]},
    ),
    "mha": (
        lambda: L.MultiHeadAttention(8, 64, name="x"),
        (3, 4),
        lambda b: {"shapes_dict": {"query_shape": [None, 3, WIDE], "value_shape": [None, 3, 4]}},
    ),
    "einsum": (
        lambda: L.EinsumDense("abc,cd->abd", output_shape=(None, 64), name="x"),
        (3, 4),
        lambda b: {"input_shape": [None, 3, WIDE * 16]},
    ),
    # red team, pass 9: spellings and wrappers the first version of these floors missed
    "einsum-upper": (
        lambda: L.EinsumDense("ABC,CD->ABD", output_shape=(None, 64), name="x"),
        (3, 4),
        lambda b: {"input_shape": [None, 3, WIDE * 16]},
    ),
    "time-distributed": (  # the wrapped layers' own build_config removed (below)
        lambda: L.TimeDistributed(L.Dense(64), name="x"),
        (3, 4),
        lambda b: {"input_shape": [None, 3, WIDE * 16]},
    ),
    "bidirectional": (
        lambda: L.Bidirectional(L.LSTM(32), name="x"),
        (3, 4),
        lambda b: {"input_shape": [None, 3, WIDE * 4]},
    ),
    "sequences-shape": (  # Keras writes it for an RNN called with an initial state
        lambda: L.LSTM(64, name="x"),
        (3, 4),
        lambda b: {"shapes_dict": {"sequences_shape": [None, 3, WIDE * 4]}},
    ),
    # red team, pass 10: a repeated axis (Keras makes one weight axis per listed axis), the
    # base Wrapper class, and an EinsumDense bias along an axis its kernel does not have
    "axis-twice": (
        lambda: L.LayerNormalization(axis=[-1, -1], name="x"),
        (4,),
        lambda b: {"input_shape": [None, WIDE]},
    ),
    "wrapper": (
        lambda: L.TimeDistributed(L.Dense(64), name="x"),  # renamed to the base class below
        (3, 4),
        lambda b: {"input_shape": [None, WIDE * 32]},
    ),
}


def _hostile(tmp_path: Path, case: str) -> tuple[Path, dict[str, Any]]:
    factory, shape, widen = HOSTILE[case]
    x = keras.Input(shape)
    layer = factory()
    y = layer(x, x) if isinstance(layer, L.MultiHeadAttention) else layer(x)
    plain = tmp_path / "plain.keras"
    keras.Model(x, y).save(plain)
    with zipfile.ZipFile(plain) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    node = next(n for n in config["config"]["layers"] if n["config"]["name"] == "x")
    node["build_config"] = widen(node["build_config"])
    if case == "wrapper":  # keras.layers.Wrapper builds its layer for its own input
        node["class_name"] = "Wrapper"
    for key in ("layer", "backward_layer"):  # a wrapper's layers: built for the wrapper's input
        inner = node["config"].get(key)
        if isinstance(inner, dict):
            inner.pop("build_config", None)
    members["config.json"] = json.dumps(config).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path = tmp_path / f"{case}.keras"
    path.write_bytes(out.getvalue())
    return path, node


@pytest.mark.parametrize("case", quick_sample(sorted(HOSTILE), every=4))
def test_a_wide_build_config_is_refused_by_scan_as_by_load(tmp_path: Path, case: str) -> None:
    """Keras builds the layer for the named shape (shown without allocating, in a stateless
    scope); ``scan`` says so without Keras, and ``load`` refuses before building anything."""
    path, node = _hostile(tmp_path, case)
    with keras.StatelessScope():
        layer = keras.saving.deserialize_keras_object(node)
        made = sum(int(np.prod(w.shape)) for w in layer.weights)
    stored = path.stat().st_size
    assert made * 4 > 32 * stored + (8 << 20), (case, made, stored)  # the payload: it fires
    report = ms.scan(path)  # the layer named: 'x', or the layer it wraps
    assert report.verdict == "unsafe" and "declare at least" in str(report), report
    with pytest.raises(ms.UnsafeModelError, match="declare at least"):
        ms.load(path)


def test_statistics_given_on_an_image_count_at_its_channels(tmp_path: Path) -> None:
    """Red team, pass 9 (older than these floors): ``Normalization(mean=127.5, ...)`` on a
    512 x 512 x 3 image broadcasts its statistics to (1, 1, 1, 3), and the config check charged
    them at the whole image (1.5 M elements for a model of 600 weights): a textbook model
    refused. With the layer's ``build_config`` they count at its kept axes; in a legacy
    ``.h5`` (none) at the model input's."""
    model = keras.Sequential(
        [
            keras.Input((512, 512, 3)),
            L.Normalization(mean=127.5, variance=127.5**2),
            L.Conv2D(4, 3, strides=8),
            L.GlobalAveragePooling2D(),
            L.Dense(3),
        ]
    )
    for name in ("image.keras", "image.h5"):  # .h5: no build_config, the model input's axes
        path = tmp_path / name
        model.save(path)
        assert ms.scan(path).verdict == "safe", name
        got = ms.load(path)
        assert [w.shape for w in got.weights] == [w.shape for w in model.weights]


def test_a_shape_without_the_channels_axis_is_sized_from_the_config() -> None:
    """Red team: a channels-first layer built for a 1-D shape raised IndexError (reported as a
    damaged file); Keras would not build it, so the config alone sizes it."""
    first = {"filters": 4, "kernel_size": 3, "data_format": "channels_first"}
    for cls, shape in [("Conv2D", [None]), ("ConvLSTM2D", [None, 3])]:
        alone = kerasweights.weight_floor(cls, first)
        assert kerasweights.built_floor(cls, first, {"input_shape": shape}) == alone


def test_an_einsum_bias_sized_by_its_output_shape_alone_counts() -> None:
    """Red team, pass 10: ``abc,cd->abd`` with ``output_shape=[2**26, 1]`` and ``bias_axes="b"``
    has a 1 x 1 kernel and a 2**26 bias, with or without a build shape."""
    cfg = {"equation": "abc,cd->abd", "output_shape": [1 << 26, 1], "bias_axes": "b"}
    assert kerasweights.weight_floor("EinsumDense", cfg) >= 1 << 26
    shapes = {"input_shape": [None, 1 << 26, 1]}
    assert kerasweights.built_floor("EinsumDense", cfg, shapes) >= 1 << 26


def test_statistics_after_a_reshape_count_at_the_input_size() -> None:
    """Red team, pass 10: without build_configs (a legacy .h5), a Reshape can move the input's
    elements onto the kept axis, so statistics count at the input's size again there."""

    def model(*middle: dict[str, Any]) -> dict[str, Any]:
        norm = {
            "class_name": "Normalization",
            "config": {"name": "n", "axis": [-1], "mean": 0.5, "variance": 2.0},
        }
        x = {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [None, 1 << 22, 1]}}
        return {"class_name": "Sequential", "config": {"name": "m", "layers": [x, *middle, norm]}}

    kerassize.check_config(model(), [])  # one channel: two statistics
    reshape = {"class_name": "Reshape", "config": {"name": "r", "target_shape": [1, 1 << 22]}}
    with pytest.raises(kerassize.SizeError, match="'n' \\(Normalization\\)"):
        kerassize.check_config(model(reshape), [])


def test_thousands_of_listed_dimensions_saturate_instead_of_multiplying() -> None:
    """Red team: the exact product of 30,000 repeated axes (or of a 30,000-dimension input)
    cost seconds, quadratic in the list, and its message could not print it. Products stop at
    kerasweights.SATURATED, far past anything stored, so the file is refused at once."""
    wide = [None, (1 << 31) - 1]
    norm = {"name": "n", "axis": [-1] * 30_000}
    assert kerasweights.built_floor("LayerNormalization", norm, {"input_shape": wide}) == (
        2 * kerasweights.SATURATED
    )
    layer = {
        "class_name": "LayerNormalization",
        "config": norm,
        "build_config": {"input_shape": wide},
    }
    x = {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": wide}}
    seq = {"class_name": "Sequential", "config": {"name": "m", "layers": [x, layer]}}
    with pytest.raises(kerassize.SizeError, match="'n' \\(LayerNormalization\\)"):
        kerassize.check_config(seq, [])
    x["config"]["batch_shape"] = [None, *[(1 << 31) - 1] * 30_000]
    # (the shape walk refuses a tensor of more than 64 dimensions first)
    with pytest.raises(kerassize.SizeError, match="30,001 dimensions \\(at most 64\\)"):
        kerassize.check_config(seq, [])

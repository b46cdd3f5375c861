"""Keras' output-shape rules of its built-in layers, read from a layer's config alone (no
Keras): what :mod:`.kerasshapes` follows a model's tensors with. Each rule gives the shape
Keras' ``compute_output_shape`` gives, or None where it is not followed here or not known
(an unknown dimension: None)."""

from __future__ import annotations

import math
from typing import Any

from .keraseinsum import einsum_output
from .kerasspatial import Out, Shape, conv_lstm, first_channels, flat, known, spatial, stft
from .kerasvocab import LOOKUPS, _int, output_mode
from .kerasweights import _prod

#: Layers whose output has their input's shape.
_SAME = frozenset(
    """
    Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU Dropout SpatialDropout1D
    SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout AlphaDropout
    BatchNormalization LayerNormalization GroupNormalization RMSNormalization
    UnitNormalization Normalization Rescaling ActivityRegularization Masking Identity
    RandomFlip RandomRotation RandomTranslation RandomZoom RandomContrast RandomBrightness
    RandomInvert AutoContrast RandomGrayscale RandomHue RandomColorJitter RandomSaturation
    RandomElasticTransform RandomGaussianBlur RandomErasing MixUp CutMix AugMix RandAugment
    Equalization RandomSharpness RandomColorDegeneration RandomPosterization RandomShear
    RandomPerspective Solarization
    """.split()  # noqa: SIM905 (a word list)
)
#: Arguments Keras reads as whole numbers (one, or nested lists of them) when it computes an
#: output shape or a weight's shape. It takes ``true`` as 1 and keeps a fraction, which its
#: arithmetic then floors: :func:`unreadable` finds the fractions, refused here.
_WHOLE = frozenset(
    """
    units filters kernel_size strides dilation_rate pool_size size padding cropping
    target_shape dims n output_padding output_size depth_multiplier groups height
    width frame_length frame_step fft_length num_mel_bins sequence_stride sequence_length
    num_tokens num_bins input_dim output_dim output_shape num_heads key_dim value_dim head_dim
    num_query_heads num_key_value_heads output_sequence_length max_tokens
    """.split()  # noqa: SIM905 (a word list)
)
_AXES = frozenset(("axis", "axes"))
_CHECKED = _WHOLE | _AXES
_MERGE = frozenset("Add Subtract Multiply Average Maximum Minimum".split())  # noqa: SIM905
_RNN = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1, "RNN": 1}  # -> states returned per cell


def output_of(
    cls: str, cfg: dict[str, Any], x: Any, args: list[Any], kwargs: dict[str, Any], walk: Any
) -> Out | None:
    g = cfg.get
    if cls in _MERGE or cls in ("Concatenate", "Dot"):
        return [_merged(cls, cfg, x)] if isinstance(x, list) and x and not flat(x) else None
    scores = kwargs.get("return_attention_scores")
    if cls in ("Attention", "AdditiveAttention"):
        if not (isinstance(x, list) and len(x) >= 2 and flat(x[0]) and flat(x[1])):
            return None
        query, value = x[0], x[1]
        out = [[*query[:-1], value[-1]]]
        key = x[2] if len(x) > 2 and flat(x[2]) else value
        if scores:  # (*batch dims, Tq, Tk): Keras' compute_output_spec
            return [*out, [*query[:-1], key[-2]]] if len(key) > 1 else None
        return out
    if cls in ("MultiHeadAttention", "GroupedQueryAttention", "GroupQueryAttention"):
        if not flat(x):
            return None
        shape = g("output_shape")
        out = [
            list(x)
            if shape is None
            else [*x[:-1], *(shape if isinstance(shape, list) else [shape])]
        ]
        if scores:
            keys = kwargs.get("key", kwargs.get("value", args[1] if len(args) > 1 else None))
            return [*out, _scores(cls, cfg, x, keys)]
        return out
    if not flat(x):
        return None
    if cls in _SAME:
        return [list(x)]
    if cls == "Dense":
        return [[*x[:-1], _int(g("units"))]]
    if cls == "Embedding":
        return [[*x, _int(g("output_dim"))]]
    if cls in LOOKUPS:
        return _looked_up(cls, cfg, x)
    if cls == "Flatten":
        rest = x[1:]
        return [[x[0], _prod(rest) if all(known(d) for d in rest) else None]]
    if cls == "Reshape":
        return [[x[0], *_reshaped(x[1:], g("target_shape"))]]
    if cls == "Permute":
        dims = g("dims")
        if not isinstance(dims, list) or sorted(dims) != list(range(1, len(x))):
            return None
        return [[x[0], *(x[d] for d in dims)]]
    if cls == "RepeatVector":
        return [[x[0], _int(g("n")), x[1]]] if len(x) == 2 else None
    if cls == "EinsumDense":
        return [einsum_output(g("equation"), g("output_shape"), x)]
    if cls in ("CategoryEncoding", "Hashing", "Discretization"):  # as wide as the bins
        return _encoded(cls, cfg, x)
    if cls == "MelSpectrogram":  # (batch, mel bins, frames)
        stride = _int(g("sequence_stride"))
        if len(x) != 2 or not stride:
            return None
        frames = (x[1] + stride + 1) // stride if known(x[1]) else None
        return [[x[0], _int(g("num_mel_bins")), frames]]
    if cls == "STFTSpectrogram":
        return stft(cfg, x)
    if cls in ("Resizing", "CenterCrop", "RandomCrop"):  # a batch of images, resized
        if len(x) != 4:
            return None
        size = [_int(g("height")), _int(g("width"))]
        return [[x[0], x[1], *size] if first_channels(cfg) else [x[0], *size, x[3]]]
    if cls.startswith("ConvLSTM"):
        return conv_lstm(cls, cfg, x)
    if cls in ("SpectralNormalization", "Wrapper", "Pipeline"):  # what they wrap, in turn
        inner = g("layers") if cls == "Pipeline" else [g("layer")]
        passed: Out | None = [list(x)]
        for layer in inner if isinstance(inner, list) else []:
            if not passed or not isinstance(layer, dict):
                return None
            # a Pipeline builds each of its layers for what the one before gives (red team
            # pass 16: they were never charged for it); a wrapper's layer: see passed_on
            passed = walk.call(layer, [passed[0]], {}, record=cls == "Pipeline")
        return passed
    if cls in _RNN or cls in ("Bidirectional", "TimeDistributed"):
        return _sequence(cls, cfg, x, walk)
    return spatial(cls, cfg, x)


def _sequence(cls: str, cfg: dict[str, Any], x: Shape, walk: Any) -> Out | None:
    """Recurrent layers, ``Bidirectional`` and ``TimeDistributed``."""
    g = cfg.get
    if cls == "TimeDistributed":
        inner = g("layer")
        if len(x) < 3 or not isinstance(inner, dict):
            return None
        out = walk.call(inner, [[x[0], *x[2:]]], {}, record=False)
        step = out[0] if out and len(out) == 1 else None
        return [[x[0], x[1], *step[1:]]] if flat(step) else None
    if cls == "Bidirectional":
        inner = g("layer")
        if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
            return None
        inner_cls = kind(inner)
        if inner_cls.startswith("ConvLSTM"):
            out = conv_lstm(inner_cls, inner["config"], x)
        else:
            out = _sequence(inner_cls, inner["config"], x, walk)
        if not out or inner["config"].get("return_state") or not flat(out[0]):
            return None
        mode = g("merge_mode", "concat")
        if mode is None:
            return [out[0], list(out[0])]
        last = out[0][-1]
        if mode == "concat":  # (Keras' compute_output_shape: twice the forward layer's)
            last = 2 * last if known(last) else None
        return [[*out[0][:-1], last]] if mode in ("concat", "sum", "ave", "mul") else None
    if cls not in _RNN or len(x) != 3:
        return None
    units, states = _int(g("units")), _RNN[cls]
    if cls == "RNN":
        units, states = _cell_units(g("cell"))  # (a stack's states: not followed)
    step = [x[0], units]
    out = [[x[0], x[1], units] if g("return_sequences") else step]
    return out + [list(step) for _ in range(states)] if g("return_state") else out


def _scores(cls: str, cfg: dict[str, Any], query: Shape, key: Any) -> Shape | None:
    """The attention scores' shape as Keras' ``compute_output_spec`` gives it (what the next
    layer is built for): MultiHeadAttention (batch, heads, Tq, Tq) whatever its attention
    axes; GroupQueryAttention (batch, query heads, Tq, Tk)."""
    if len(query) < 2:
        return None
    if cls == "MultiHeadAttention":
        return [query[0], _int(cfg.get("num_heads")), query[1], query[1]]
    tk = key[1] if flat(key) and len(key) > 1 else None
    return [query[0], _int(cfg.get("num_query_heads")), query[1], tk]


def _encoded(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """``compute_output_shape`` of CategoryEncoding, Hashing and Discretization."""
    mode = cfg.get("output_mode", "multi_hot" if cls == "CategoryEncoding" else "int")
    if mode == "int" and cls != "CategoryEncoding":
        return [list(x)]
    if mode not in ("one_hot", "multi_hot", "count", "tf_idf"):
        return None
    width = _int(cfg.get("num_tokens" if cls == "CategoryEncoding" else "num_bins"))
    bounds = cfg.get("bin_boundaries")
    if cls == "Discretization" and isinstance(bounds, list):
        width = len(bounds) + 1
    if cls != "Hashing" and mode == "one_hot" and (x[-1] != 1 or len(x) == 1):
        return [[*x, width]]
    if cls == "Discretization" and mode != "one_hot":  # the second axis dropped
        return [[x[0], *x[2:], width]] if len(x) >= 2 else None
    return [[*x[:-1], width]]


def _cell_units(cell: Any) -> tuple[int | None, int]:
    """(units, states) of an RNN's cell: the last cell of a stack outputs."""
    cfg = cell.get("config") if isinstance(cell, dict) else None
    if not isinstance(cfg, dict):
        return None, 1
    if kind(cell) == "StackedRNNCells":
        cells = cfg.get("cells")
        return (_cell_units(cells[-1])[0], 0) if isinstance(cells, list) and cells else (None, 0)
    return _int(cfg.get("units")), 2 if kind(cell) == "LSTMCell" else 1


def _merged(cls: str, cfg: dict[str, Any], shapes: list[Any]) -> Shape | None:
    if not all(flat(s) for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    if cls == "Dot":
        return _dot(cfg.get("axes"), shapes)
    if cls == "Concatenate":
        axis = cfg.get("axis", -1)
        if not isinstance(axis, int) or not -len(shapes[0]) <= axis < len(shapes[0]):
            return None
        out = list(shapes[0])  # Keras keeps the first input's other dimensions
        sizes = [s[axis] for s in shapes]
        out[axis] = sum(sizes) if all(known(d) for d in sizes) else None
        return out
    out = []
    for dims in zip(*shapes, strict=True):  # Keras' broadcasting of an elementwise merge
        if not all(known(d) for d in dims):
            out.append(None)
        else:
            distinct = set(dims)
            out.append(max(distinct) if len(distinct - {1}) <= 1 else None)
    return out


def _dot(axes: Any, shapes: list[Any]) -> Shape | None:
    if len(shapes) != 2:
        return None
    pair = [axes, axes] if isinstance(axes, int) else axes
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    a, b = (list(s) for s in shapes)
    if not all(isinstance(p, int) and -len(a) <= p < len(a) for p in pair):
        return None
    at = [p % len(a) for p in pair]  # (the two shapes are of one rank)
    if 0 in at:
        return None
    del a[at[0]], b[at[1]]
    out = a + b[1:]
    return out if len(out) > 1 else [*out, 1]


def _reshaped(shape: list[Any], target: Any) -> list[Any]:
    if not isinstance(target, list) or not all(_int(t) is not None or t == -1 for t in target):
        raise ValueError("target_shape")
    if -1 not in target:
        return list(target)
    fixed = _prod([t for t in target if t != -1])
    if target.count(-1) > 1 or not all(known(d) for d in shape) or fixed == 0:
        return [None if t == -1 else t for t in target]
    return [_prod(shape) // fixed if t == -1 else t for t in target]


def kind(node: Any) -> str:
    """The layer class a node names, as Keras resolves its plain name ('' if not plain)."""
    from .kerasaudit import plain_targets

    cls = node.get("class_name") if isinstance(node, dict) else None
    if not isinstance(cls, str):
        return ""
    targets = {t.rsplit(".", 1)[-1] for t in plain_targets(cls)}
    if targets and cls not in targets:
        cls = targets.pop() if len(targets) == 1 else ""
    cls = cls.replace("Convolution", "Conv")  # Keras' aliases: Convolution2D, MaxPool2D, ...
    if "Pooling" not in cls:
        cls = cls.replace("MaxPool", "MaxPooling").replace("AvgPool", "AveragePooling")
    return cls


def unreadable(cfg: dict[str, Any]) -> str | None:
    """What in a layer's arguments is refused, or None: a number with a fraction (or not
    finite) among its whole-number arguments (:data:`_WHOLE`; Keras floors what it computes
    from it), or an axis that is not an integer (Keras indexes with ``true``, takes ``1.0``
    and ``"1"`` in places; it writes integers)."""
    for key in _CHECKED.intersection(cfg):
        stack, value = [cfg[key]], cfg[key]
        while stack:
            v = stack.pop()
            if isinstance(v, list):
                stack.extend(v)
            elif key in _AXES and isinstance(v, (bool, float, str)):
                return f"{key}={repr(value)[:60]}, where Keras writes integer axes"
            elif isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
                return f"{key}={repr(value)[:60]}, where Keras reads whole numbers"
    return None


def _looked_up(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """``compute_output_shape`` of StringLookup, IntegerLookup and TextVectorization: an
    index per token, or a row as wide as the vocabulary (:func:`_depth`), or ``max_tokens``."""
    mode = output_mode(cfg) or "int"
    if cls == "TextVectorization":
        if mode == "int":
            return [[x[0], _int(cfg.get("output_sequence_length"))]]
        if cfg.get("split", "whitespace") is not None:
            x = [*x, None]
        elif len(x) <= 1:
            x = [*x, 1]
    if mode == "int":
        return [list(x)]
    if mode not in ("one_hot", "multi_hot", "count", "tf_idf"):
        return None
    depth = _int(cfg.get("max_tokens")) if cfg.get("pad_to_max_tokens") else _depth(cls, cfg)
    if mode == "one_hot" and not (len(x) > 1 and x[-1] == 1):
        return [[*x, depth]]
    return [[*x[:-1], depth]]


def _depth(cls: str, cfg: dict[str, Any]) -> int | None:
    """A lookup's vocabulary size as Keras builds the next layer for it: a vocabulary in the
    config and its OOV indices (Keras drops the OOV tokens found at its head, then adds them
    back; red team pass 15: 200,000 OOV indices made a 6 GiB Dense), else the
    ``vocabulary_size`` the config gives (what Keras sizes with until the assets are read)."""
    vocabulary = cfg.get("vocabulary")
    if not isinstance(vocabulary, list):
        return _int(cfg.get("vocabulary_size"))
    if cls == "TextVectorization":
        oov, token = 1, "[UNK]"
    else:
        oov = _int(cfg.get("num_oov_indices", 1)) or 0
        token = cfg.get("oov_token", "[UNK]" if cls == "StringLookup" else -1)
    return len(vocabulary) + (0 if vocabulary[:oov] == [token] * oov else oov)

"""Keras' output-shape rules of its built-in layers, read from a layer's config alone (no
Keras): what :mod:`.kerasshapes` follows a model's tensors with. Each rule gives the shape
Keras' ``compute_output_shape`` gives, or None where it is not followed here or not known
(an unknown dimension: None)."""

from __future__ import annotations

from typing import Any, TypeGuard

from .kerasvocab import _int
from .kerasweights import _prod, einsum_output

Shape = list[Any]  # batch first; each dimension an int or None
Out = list[Any]  # a layer call's output tensors: Shape or None each

#: Layers whose output has their input's shape.
_SAME = frozenset(
    """
    Activation ReLU LeakyReLU PReLU ELU Softmax ThresholdedReLU Dropout SpatialDropout1D
    SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout AlphaDropout
    BatchNormalization LayerNormalization GroupNormalization RMSNormalization
    UnitNormalization Normalization Rescaling ActivityRegularization Masking Identity
    RandomFlip RandomRotation RandomTranslation RandomZoom RandomContrast RandomBrightness
    """.split()  # noqa: SIM905 (a word list)
)
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
        if scores:  # (batch, Tq, Tv)
            return [*out, [query[0], query[1], value[1]]] if len(query) == len(value) == 3 else None
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
        if scores:  # (batch, heads, Tq, Tv), for the default attention axes
            keys = kwargs.get("value", args[1] if len(args) > 1 else None)
            heads = _int(g("num_heads", g("num_query_heads")))
            ok = flat(keys) and len(x) == len(keys) == 3 and g("attention_axes") is None
            return [*out, [x[0], heads, x[1], keys[1]]] if ok and flat(keys) else None
        return out
    if not flat(x):
        return None
    if cls in _SAME:
        return [list(x)]
    if cls == "Dense":
        return [[*x[:-1], _int(g("units"))]]
    if cls == "Embedding":
        return [[*x, _int(g("output_dim"))]]
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
    if cls in ("Resizing", "CenterCrop", "RandomCrop"):  # a batch of images, resized
        if len(x) != 4:
            return None
        size = [_int(g("height")), _int(g("width"))]
        return [[x[0], x[1], *size] if _first(cfg) else [x[0], *size, x[3]]]
    if cls.startswith("ConvLSTM"):
        return _conv_lstm(cls, cfg, x)
    if cls in _RNN or cls in ("Bidirectional", "TimeDistributed"):
        return _sequence(cls, cfg, x, walk)
    return _spatial(cls, cfg, x)


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
        out = _sequence(kind(inner), inner["config"], x, walk)
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


def _first(cfg: dict[str, Any]) -> bool:
    """Channels first? (Keras lower-cases the argument: red team, ``"CHANNELS_FIRST"``.)"""
    return str(cfg.get("data_format")).lower() == "channels_first"


def _conv_lstm(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """A ConvLSTM: the convolution's output at each step, the steps kept or not."""
    step = _spatial(f"Conv{cls[-2:]}", cfg, [x[0], *x[2:]]) if len(x) > 3 else None
    if not step or not flat(step[0]):
        return None
    last = step[0]
    out = [[x[0], x[1], *last[1:]] if cfg.get("return_sequences") else last]
    return [*out, list(last), list(last)] if cfg.get("return_state") else out


def _spatial(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """Convolutions, pooling, padding, cropping and upsampling: Keras'
    ``compute_conv_output_shape`` and ``compute_pooling_output_shape``."""
    g = cfg.get
    transpose = cls.endswith("Transpose")
    name = cls.removesuffix("Transpose")
    rank = {"1D": 1, "2D": 2, "3D": 3}.get(name[-2:])
    if rank is None or len(x) != rank + 2:
        return None
    first = _first(cfg)
    space: Any
    space, chans = (x[2:], x[1]) if first else (x[1:-1], x[-1])
    base = name[:-2]
    if transpose and base != "Conv":
        return None
    if base.startswith("Global"):
        out = [1] * rank if g("keepdims") else []
        return [[x[0], chans, *out] if first else [x[0], *out, chans]]
    if base in ("Conv", "SeparableConv", "DepthwiseConv"):
        kernel, strides = _per(g("kernel_size"), rank), _per(g("strides", 1), rank)
        dilation = _per(g("dilation_rate", 1), rank)
        if kernel is None or strides is None or dilation is None:
            return None
        sizes = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        if transpose:
            space = _transposed(space, sizes, strides, g("padding", "valid"), g("output_padding"))
        else:
            space = _windowed(space, sizes, strides, g("padding", "valid"))
        chans = _int(g("filters"))
        if base == "DepthwiseConv":
            chans = _times(x[1] if first else x[-1], _int(g("depth_multiplier", 1)))
    elif base in ("AdaptiveMaxPooling", "AdaptiveAveragePooling"):
        space = _per(g("output_size"), rank)
    elif base in ("MaxPooling", "AveragePooling"):
        pool = _per(g("pool_size", 2), rank)
        strides = _per(g("strides"), rank) if g("strides") is not None else pool
        if pool is None or strides is None:
            return None
        space = _windowed(space, pool, strides, g("padding", "valid"))
    elif base in ("UpSampling", "ZeroPadding", "Cropping"):
        space = _resized(base, cfg, space, rank)
    else:
        return None
    if space is None:
        return None
    return [[x[0], chans, *space] if first else [x[0], *space, chans]]


def _windowed(space: list[Any], window: list[int], strides: list[int], padding: Any) -> Any:
    padding = padding.lower() if isinstance(padding, str) else padding  # as Keras reads it
    if padding not in ("valid", "same", "causal") or 0 in strides:
        return None
    out: list[Any] = []
    for n, w, s in zip(space, window, strides, strict=True):
        if not known(n):
            out.append(None)
            continue
        size = (n - w) // s + 1 if padding == "valid" else (n - 1) // s + 1
        if size <= 0:
            return None  # Keras refuses it
        out.append(size)
    return out


def _transposed(
    space: list[Any], sizes: list[int], strides: list[int], padding: Any, extra: Any
) -> Any:
    """Keras' ``compute_conv_transpose_output_shape``, without an ``output_padding``."""
    padding = padding.lower() if isinstance(padding, str) else padding
    if padding not in ("valid", "same") or extra is not None:
        return None
    return [
        None if not known(n) else n * s if padding == "same" else (n - 1) * s + max(k, s)
        for n, k, s in zip(space, sizes, strides, strict=True)
    ]


def _resized(base: str, cfg: dict[str, Any], space: list[Any], rank: int) -> Any:
    """Upsampling multiplies each spatial size, padding adds, cropping subtracts."""
    key = {"UpSampling": "size", "ZeroPadding": "padding", "Cropping": "cropping"}[base]
    value = cfg.get(key, 2 if base == "UpSampling" else 1)
    if base == "UpSampling":
        per = [value] if rank == 1 and _int(value) is not None else _per(value, rank)
        return None if per is None else [_times(n, f) for n, f in zip(space, per, strict=True)]
    pairs = _pairs(value, rank)
    if pairs is None:
        return None
    sign = 1 if base == "ZeroPadding" else -1
    out = [n + sign * (a + b) if known(n) else None for n, (a, b) in zip(space, pairs, strict=True)]
    return None if any(d is not None and d <= 0 for d in out) else out


def _pairs(value: Any, rank: int) -> list[tuple[int, int]] | None:
    """Keras' padding and cropping arguments: an int, one int per axis, or pairs."""
    n = _int(value)
    if n is not None:
        return [(n, n)] * rank
    if not isinstance(value, list):
        return None
    if rank == 1 and len(value) == 2 and all(_int(v) is not None for v in value):
        return [(_int(value[0]) or 0, _int(value[1]) or 0)]
    if len(value) != rank:
        return None
    out = []
    for v in value:
        if _int(v) is not None:
            out.append((_int(v) or 0, _int(v) or 0))
        elif isinstance(v, list) and len(v) == 2 and all(_int(i) is not None for i in v):
            out.append((_int(v[0]) or 0, _int(v[1]) or 0))
        else:
            return None
    return out


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
    pair = [axes, axes] if isinstance(axes, int) and not isinstance(axes, bool) else axes
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


def _per(value: Any, rank: int) -> list[int] | None:
    """An int-or-tuple argument, one int per spatial axis."""
    n = _int(value)
    if n is not None:
        return [n] * rank
    if isinstance(value, list) and len(value) == rank and all(_int(v) for v in value):
        return [_int(v) or 0 for v in value]
    return None


def _times(n: Any, factor: int | None) -> int | None:
    return n * factor if known(n) and factor is not None else None


def known(d: Any) -> bool:
    return _int(d) is not None


def flat(shape: Any) -> TypeGuard[list[Any]]:
    return (
        isinstance(shape, list)
        and bool(shape)
        and all(d is None or _int(d) is not None for d in shape)
    )


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

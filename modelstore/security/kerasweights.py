"""How many weights a Keras layer has at least, from its config alone (no Keras): the lower
bounds :func:`.kerassize.check_config` adds up and compares with what the file stores."""

from __future__ import annotations

import re
from typing import Any

from .keraseinsum import einsum_axes, einsum_sizes, kernel_sizes
from .kerasspatial import fft_length
from .kerasvocab import _int


def _ints(value: Any) -> list[int]:
    """The integers of an int-or-tuple argument (``kernel_size=3`` or ``[3, 3]``), nested."""
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v)]
    n = _int(value)
    return [] if n is None else [n]


#: Where a product of declared sizes stops growing: far past any allocation, and small enough
#: that a config listing thousands of dimensions costs no more than reading them (red team:
#: 30,000 repeated axes made the exact product cost seconds, quadratic in the list).
SATURATED = 1 << 80


def _prod(values: list[int]) -> int:
    """The product of non-negative sizes, at most :data:`SATURATED` (0 if any is 0)."""
    values = list(values)
    if 0 in values:
        return 0
    out = 1
    for v in values:
        out *= v
        if out > SATURATED:
            return SATURATED
    return out


def _einsum_kernel(
    equation: Any, output_shape: Any, input_shape: list[Any] | None = None, bias_axes: Any = None
) -> int:
    """EinsumDense's kernel and bias as Keras sizes them (``_analyze_split_string``): each
    kernel axis takes the output's size where the output has it (``output_shape``, after the batch and
    any elided axes), else the input's; unknown sizes (no built ``input_shape``: the batch
    alone elided) count 1. 0 where Keras would not build the layer."""
    parts = einsum_axes(equation, output_shape, input_shape)
    sizes = None if parts is None else kernel_sizes(parts)
    if parts is None or sizes is None:
        return 0
    outs, out_at = parts[2], parts[4]
    bias = 0  # one per output element along its axes (red team: sized by output_shape alone)
    if isinstance(bias_axes, str) and bias_axes and all(c in out_at for c in bias_axes):
        ats = [out_at[c] for c in bias_axes]
        if all(-len(outs) <= at < len(outs) for at in ats):
            bias = _prod([_dim(outs[at]) or 1 for at in ats])
    return _prod(sizes) + bias


def weight_floor(cls: str, cfg: dict[str, Any]) -> int:
    """Weights (elements) the layer has at least, from its config alone (inputs of size 1)."""
    g = cfg.get
    bias = g("use_bias", True) is not False
    if cls == "Dense":
        units = _int(g("units")) or 0
        return units * (2 if bias else 1)
    if cls in ("Embedding", "ReversibleEmbedding"):  # (untied: a reverse kernel as large)
        n = (_int(g("input_dim")) or 0) * (_int(g("output_dim")) or 0)
        return n * (2 if cls == "ReversibleEmbedding" and g("tie_weights") is False else 1)
    if cls.startswith("Conv") and cls[4:6] in ("1D", "2D", "3D") and "LSTM" not in cls:
        filters = _int(g("filters")) or 0
        return filters * _prod(_ints(g("kernel_size"))) + (filters if bias else 0)
    if cls.startswith("SeparableConv"):
        dm, filters = _int(g("depth_multiplier")) or 1, _int(g("filters")) or 0
        return _prod(_ints(g("kernel_size"))) * dm + dm * filters
    if cls.startswith("DepthwiseConv"):
        return _prod(_ints(g("kernel_size"))) * (_int(g("depth_multiplier")) or 1)
    if cls.startswith("ConvLSTM"):
        filters = _int(g("filters")) or 0
        return 4 * filters * filters * _prod(_ints(g("kernel_size")))
    gates = {
        "LSTM": 4,
        "LSTMCell": 4,
        "GRU": 3,
        "GRUCell": 3,
        "SimpleRNN": 1,
        "SimpleRNNCell": 1,
    }.get(cls)
    if gates:
        units = _int(g("units")) or 0
        return gates * units * (units + 1)  # recurrent kernel and (at least) the input kernel
    if cls == "MultiHeadAttention":
        heads, key = _int(g("num_heads")) or 0, _int(g("key_dim")) or 0
        value = _int(g("value_dim")) or key
        return heads * (2 * key + 2 * value)
    if cls == "EinsumDense":
        return _einsum_kernel(g("equation"), g("output_shape"), None, g("bias_axes"))
    if cls == "STFTSpectrogram":  # a real and an imaginary (frame, 1, fft // 2 + 1) kernel
        kernels = 1 if g("mode", "log") in ("real", "imag") else 2
        return kernels * (_int(g("frame_length", 256)) or 0) * (fft_length(cfg) // 2 + 1)
    if cls in ("GroupedQueryAttention", "GroupQueryAttention"):
        head = _int(g("head_dim")) or 0
        return head * (
            2 * (_int(g("num_query_heads")) or 0) + 2 * (_int(g("num_key_value_heads")) or 0)
        )
    return 0


#: The shapes a layer's ``build_config`` gives, by the argument Keras builds it with
#: (``input_shape``; ``query_shape``, ``value_shape`` and ``key_shape`` for attention).
Shapes = dict[str, list[Any]]


def built_shapes(node: dict[str, Any]) -> Shapes | None:
    """What Keras builds a layer from when it loads (``Layer.build_from_config``: the
    ``input_shape`` if the config has one, else ``build(**shapes_dict)``), whether or not any
    node of the model reaches the layer (red team); flat shapes only (None: none). A list of
    input shapes (``[query, value, key]`` of ``AdditiveAttention``) is named by position."""
    build = node.get("build_config")
    if not isinstance(build, dict):
        return None
    found: Any = build.get("shapes_dict")
    if "input_shape" in build:
        shape = build["input_shape"]
        several = isinstance(shape, list) and not _flat(shape)
        found = dict(zip(_POSITIONS, shape, strict=False)) if several else {"input_shape": shape}
    if not isinstance(found, dict):
        return None
    out = {k: v for k, v in found.items() if isinstance(k, str) and _flat(v)}
    return out or None


_POSITIONS = ("query_shape", "value_shape", "key_shape")


def _flat(shape: Any) -> bool:
    return isinstance(shape, list) and bool(shape) and not isinstance(shape[0], list)


def built_floor(cls: str, cfg: dict[str, Any], shapes: Shapes | None) -> int:
    """Weights (elements) the layer has at least when built from the shapes of its
    ``build_config`` (a kernel takes its input's channels); :func:`weight_floor` else."""
    floor = weight_floor(cls, cfg)
    if not shapes:
        return floor + _lora(cls, cfg, None)
    if cls in _ATTENTION:  # (no LoRA)
        return max(floor, _attention(cls, cfg, shapes))
    if cls == "AdditiveAttention" and cfg.get("use_scale", True) is not False:
        return _dim(shapes.get("query_shape", [0])[-1])  # a scale per query feature
    # an RNN called with an initial state is built from build(sequences_shape, ...)
    shape = shapes.get("input_shape", shapes.get("sequences_shape"))
    built = floor if shape is None else max(floor, _from_input(cls, cfg, shape))
    return built + _lora(cls, cfg, shape)


def _lora(cls: str, cfg: dict[str, Any], shape: list[Any] | None) -> int:
    """A ``lora_rank`` r adds a kernel of r columns over the layer kernel's leading axes
    and one of r rows over its last axis (Keras' ``enable_lora``)."""
    g, r = cfg.get, _int(cfg.get("lora_rank")) or 0
    if not r:
        return 0
    at = 1 if str(g("data_format")).lower() == "channels_first" else -1
    chans = max(_dim(shape[at]) if shape and _index(at, shape) else 1, 1)
    if cls == "Embedding":
        return r * ((_int(g("input_dim")) or 0) + (_int(g("output_dim")) or 0))
    if cls.startswith("Conv") and cls[4:6] in ("1D", "2D", "3D") and cls[6:] == "":
        rows = _prod(_ints(g("kernel_size"))) * max(chans // max(_int(g("groups")) or 1, 1), 1)
        return r * (rows + (_int(g("filters")) or 0))
    if cls == "EinsumDense":
        sizes: list[int] = einsum_sizes(g("equation"), g("output_shape"), shape) or [1]
        return r * (_prod(sizes[:-1]) + sizes[-1])
    return r * (chans + (_int(g("units")) or 1)) if cls == "Dense" else 0


_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_ATTENTION = ("MultiHeadAttention", "GroupedQueryAttention", "GroupQueryAttention")


def _from_input(cls: str, cfg: dict[str, Any], shape: list[Any]) -> int:
    """The weights a layer built for the input ``shape`` has, at least (0: not known here)."""
    g = cfg.get
    first = str(g("data_format")).lower() == "channels_first"  # Keras lower-cases it
    at = (2 if cls.startswith("ConvLSTM") else 1) if first else -1
    chans = _dim(shape[at]) if _index(at, shape) else 0  # (Keras would not build it)
    bias = g("use_bias", True) is not False
    units, filters, kernel = (
        _int(g("units")) or 0,
        _int(g("filters")) or 0,
        _prod(_ints(g("kernel_size"))),
    )
    if cls == "Dense":
        return (chans + bias) * units
    if cls.startswith("ConvLSTM"):  # input and recurrent kernels, four gates
        return 4 * filters * kernel * (chans + filters)
    if cls.startswith("Conv") and cls[4:6] in ("1D", "2D", "3D"):
        groups = max(_int(g("groups")) or 1, 1)
        return (kernel * (chans // groups) + bias) * filters
    if cls.startswith(("DepthwiseConv", "SeparableConv")):
        depthwise = kernel * chans * (_int(g("depth_multiplier")) or 1)
        if cls.startswith("SeparableConv"):  # and the pointwise kernel
            return depthwise + chans * (_int(g("depth_multiplier")) or 1) * filters
        return depthwise
    gates = _GATES.get(cls.removesuffix("Cell"))
    if gates:  # input and recurrent kernels
        return gates * units * (chans + units)
    if cls == "RNN":
        return _rnn_input(g("cell"), chans)
    if cls == "EinsumDense":
        return _einsum_kernel(g("equation"), g("output_shape"), shape, g("bias_axes"))
    return _per_axis(cls, cfg, shape)


def _per_axis(cls: str, cfg: dict[str, Any], shape: list[Any]) -> int:
    """Normalisations (per element of the normalised axes) and PReLU (per input element)."""
    g = cfg.get
    center, scale = g("center", True) is not False, g("scale", True) is not False
    per = {
        "BatchNormalization": 2 + center + scale,  # and the moving mean and variance
        "LayerNormalization": 1 if g("rms_scaling") else center + scale,
        "GroupNormalization": center + scale,
        "RMSNormalization": 1,
        # adapted mean and variance, unless the config gives them (counted apart)
        "Normalization": 2 if g("mean") is None and g("variance") is None else 0,
    }.get(cls)
    if per is not None:
        return per * axes_size(g("axis", -1), shape)
    if cls == "PReLU":  # one alpha per input element, one along each shared axis, as Keras
        alphas = [_dim(d) for d in shape[1:]]  # indexes them (axis i is alphas[i - 1])
        shared = g("shared_axes")
        for i in shared if isinstance(shared, list) else [] if shared is None else [shared]:
            if not _index(i - 1 if isinstance(i, int) else None, alphas):
                return 0  # Keras would not build it
            alphas[i - 1] = 1
        return _prod(alphas)
    return 0


def axes_size(axis: Any, shape: list[Any]) -> int:
    """Elements of a weight with one axis per listed axis of ``shape``, as Keras shapes a
    normalisation's (a repeated axis repeats: red team, ``axis=[-1, -1]`` is C x C; 0: an
    axis out of range or unknown)."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not axes or not all(_index(a, shape) for a in axes):
        return 0
    return _prod([_dim(shape[a]) for a in axes])


_WRAPPERS = ("Bidirectional", "SpectralNormalization", "TimeDistributed", "Wrapper", "Pipeline")


def passed_on(cls: str, cfg: dict[str, Any], shapes: Shapes | None) -> list[tuple[Any, Shapes]]:
    """The layers a wrapper builds for its own input (red team: a wrapper's ``build_config``
    sized the layer it wraps, which had none): ``Bidirectional``, ``SpectralNormalization``
    and the base ``Wrapper`` pass theirs on, ``TimeDistributed`` without its time axis, a
    ``Pipeline`` to its first layer."""
    shape = shapes.get("input_shape", shapes.get("sequences_shape")) if shapes else None
    if shape is None or cls not in _WRAPPERS:
        return []
    if cls == "TimeDistributed":
        shape = [shape[0], *shape[2:]]
    layers = cfg.get("layers") if cls == "Pipeline" else None
    first = layers[0] if isinstance(layers, list) and layers else None
    inner = [first] if cls == "Pipeline" else [cfg.get("layer"), cfg.get("backward_layer")]
    return [(node, {"input_shape": shape}) for node in inner if isinstance(node, dict)]


def _rnn_input(cell: Any, chans: int) -> int:
    """The input kernel of an ``RNN``'s (first) cell, bar the one input channel the cell's own
    floor counts; nothing if the cell has a ``build_config`` of its own (built from that)."""
    if isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells":
        cells = (
            cell.get("config", {}).get("cells") if isinstance(cell.get("config"), dict) else None
        )
        cell = cells[0] if isinstance(cells, list) and cells else None
    if (
        not isinstance(cell, dict)
        or "build_config" in cell
        or not isinstance(cell.get("config"), dict)
    ):
        return 0
    gates = _GATES.get(str(cell.get("class_name")).removesuffix("Cell"), 0)
    return gates * max(chans - 1, 0) * (_int(cell["config"].get("units")) or 0)


def _attention(cls: str, cfg: dict[str, Any], shapes: Shapes) -> int:
    """Attention's four projections, from the query's, value's and key's feature sizes."""
    g = cfg.get
    query, value = (_dim(shapes.get(k, [0])[-1]) for k in ("query_shape", "value_shape"))
    key = _dim(shapes["key_shape"][-1]) if "key_shape" in shapes else value
    if cls == "MultiHeadAttention":
        heads, key_dim = _int(g("num_heads")) or 0, _int(g("key_dim")) or 0
        value_dim = _int(g("value_dim")) or key_dim
        out = _prod(_ints(g("output_shape"))) if g("output_shape") is not None else query
        return heads * (key_dim * (query + key) + value_dim * (value + out))
    head = _int(g("head_dim")) or 0
    q_heads, kv_heads = _int(g("num_query_heads")) or 0, _int(g("num_key_value_heads")) or 0
    return head * (2 * q_heads * query + kv_heads * (key + value))


def _dim(value: Any) -> int:
    """A known dimension, or 0."""
    return _int(value) or 0


def _index(axis: Any, shape: list[Any]) -> bool:
    return isinstance(axis, int) and not isinstance(axis, bool) and -len(shape) <= axis < len(shape)


def itemsize(dtype: Any) -> int:
    """Bytes per element of a dtype by its name (``"float64"``: 8, ``"bfloat16"``: 2,
    ``"float8_e4m3fn"``: 1, ``"bool"``: 1); 4 for a name without a width."""
    name = str(getattr(dtype, "name", dtype))
    if name == "bool":
        return 1
    bits = re.search(r"\d+", name)
    return max(int(bits.group()) // 8, 1) if bits else 4

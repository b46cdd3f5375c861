"""How many weights a Keras layer has at least, from its config alone (no Keras): the lower
bounds :func:`.kerassize.check_config` adds up and compares with what the file stores."""

from __future__ import annotations

import re
from typing import Any

from .kerasvocab import _int


def _ints(value: Any) -> list[int]:
    """The integers of an int-or-tuple argument (``kernel_size=3`` or ``[3, 3]``), nested."""
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v)]
    n = _int(value)
    return [] if n is None else [n]


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _einsum_kernel(equation: Any, output_shape: Any) -> int:
    """EinsumDense's kernel takes the output's size for each of its axes the output shares
    (``"ab,bc->ac"`` with ``output_shape=[64]``: c = 64), the input's (unknown: 1) otherwise."""
    if not isinstance(equation, str) or not re.fullmatch(r"[a-z.]+,[a-z]+->[a-z.]+", equation):
        return 0
    _, kernel, out = re.split(",|->", equation)
    dims = _ints(output_shape)
    if out.startswith("..."):  # the shape names the output's last axes, else all but the batch
        letters = out[3:][-len(dims) :] if dims else ""
    else:
        letters = out[1:].replace("...", "")[: len(dims)]
    sizes = dict(zip(letters, dims, strict=False))
    return _prod([sizes.get(c, 1) for c in kernel])


def weight_floor(cls: str, cfg: dict[str, Any]) -> int:
    """Weights (elements) the layer has at least, from its config alone (inputs of size 1)."""
    g = cfg.get
    bias = g("use_bias", True) is not False
    if cls == "Dense":
        units = _int(g("units")) or 0
        return units * (2 if bias else 1)
    if cls == "Embedding":
        return (_int(g("input_dim")) or 0) * (_int(g("output_dim")) or 0)
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
        return _einsum_kernel(g("equation"), g("output_shape"))
    if cls == "STFTSpectrogram":  # (frame_length, 1, fft_length // 2 + 1) kernels
        frame = _int(g("frame_length")) or 0
        return frame * ((_int(g("fft_length")) or frame) // 2 + 1)
    if cls in ("GroupedQueryAttention", "GroupQueryAttention"):
        head = _int(g("head_dim")) or 0
        return head * (
            2 * (_int(g("num_query_heads")) or 0) + 2 * (_int(g("num_key_value_heads")) or 0)
        )
    return 0


def built_floor(cls: str, cfg: dict[str, Any], shape: list[Any] | None) -> int:
    """Weights (elements) the layer has at least when built from the input ``shape`` of its
    ``build_config`` (its kernel takes the input's channels); :func:`weight_floor` else."""
    floor = weight_floor(cls, cfg)
    if shape is None:
        return floor
    g = cfg.get
    chans = _int(shape[1] if g("data_format") == "channels_first" else shape[-1]) or 0
    kernel = 0
    if cls == "Dense":
        kernel = chans * (_int(g("units")) or 0)
    elif cls.startswith("Conv") and cls[4:6] in ("1D", "2D", "3D") and "LSTM" not in cls:
        groups = max(_int(g("groups")) or 1, 1)
        kernel = _prod(_ints(g("kernel_size"))) * (chans // groups) * (_int(g("filters")) or 0)
    elif cls.startswith(("DepthwiseConv", "SeparableConv")):
        kernel = _prod(_ints(g("kernel_size"))) * chans * (_int(g("depth_multiplier")) or 1)
        if cls.startswith("SeparableConv"):  # and the pointwise kernel
            kernel += chans * (_int(g("depth_multiplier")) or 1) * (_int(g("filters")) or 0)
    elif cls in ("LSTM", "GRU", "SimpleRNN"):  # the input kernel
        kernel = {"LSTM": 4, "GRU": 3}.get(cls, 1) * chans * (_int(g("units")) or 0)
    elif cls == "BatchNormalization" and _index(g("axis", -1), shape):  # 4 per channel
        kernel = 4 * (_int(shape[g("axis", -1)]) or 0)
    elif cls == "LayerNormalization" and g("axis", -1) == -1:  # gamma and beta
        kernel = 2 * chans
    elif cls == "PReLU" and not g("shared_axes"):  # one alpha per input element
        kernel = _prod([_int(d) or 1 for d in shape[1:]])
    return max(floor, kernel)


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


#: Eighths of a byte per kernel element of each quantisation mode (int4 packs two into a
#: byte; GPTQ and AWQ down to 2 bits; a mode not known here: one bit); float8 keeps its
#: kernel at the source dtype.
_MODE_EIGHTHS = {"int8": 8, "int4": 4}
_LEAST_EIGHTHS = 1


def width(cfg: dict[str, Any]) -> int:
    """Eighths of a byte per weight, at least, of a layer's dtype policy (red team: the size
    checks compared element counts whatever the dtype): ``"float64"`` 64, ``"mixed_float16"``
    32 (its variables are float32), int8-quantised 8, int4 4, a policy map the least of its
    policies, anything not known here 1."""
    return _eighths(cfg.get("dtype"))


def _eighths(dtype: Any) -> int:
    if dtype is None:
        return 32
    if isinstance(dtype, str):
        mode, _, source = dtype.rpartition("_from_")
        if mode:
            return _quantised(mode, source)
        return 32 if dtype.startswith("mixed_") else 8 * itemsize(dtype)
    if not isinstance(dtype, dict) or not isinstance(dtype.get("config"), dict):
        return _LEAST_EIGHTHS
    cls, cfg = dtype.get("class_name"), dtype["config"]
    if cls in ("DTypePolicy", "FloatDTypePolicy"):
        return _eighths(cfg.get("name"))
    if cls == "DTypePolicyMap":
        inner = cfg.get("policy_map")
        values = list(inner.values()) if isinstance(inner, dict) else []
        return min(_eighths(p) for p in [cfg.get("default_policy"), *values])
    mode, source = cfg.get("mode"), cfg.get("source_name")
    if isinstance(mode, str) and isinstance(source, str):
        return _quantised(mode, source)
    return _LEAST_EIGHTHS


def _quantised(mode: str, source: str) -> int:
    mode = mode.split("/")[0]  # "int4/128": int4 in groups of 128
    if mode == "float8":
        return _eighths(source)
    return _MODE_EIGHTHS.get(mode, _LEAST_EIGHTHS)

"""Keras' output shapes of its spatial layers (convolutions and their transposes, ConvLSTM,
pooling, padding, cropping, upsampling), read from a layer's config alone: the part of
:mod:`.kerasrules` that follows images, volumes and sequences through their windows."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from .kerasvocab import _int

Shape = list[Any]  # batch first; each dimension an int or None
Out = list[Any]  # a layer call's output tensors: Shape or None each


def first_channels(cfg: dict[str, Any]) -> bool:
    """Channels first? (Keras lower-cases the argument: red team, ``"CHANNELS_FIRST"``.)"""
    return str(cfg.get("data_format")).lower() == "channels_first"


def conv_lstm(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """A ConvLSTM: the convolution's output at each step, the steps kept or not."""
    step = spatial(f"Conv{cls[-2:]}", cfg, [x[0], *x[2:]]) if len(x) > 3 else None
    if not step or not flat(step[0]):
        return None
    last = step[0]
    out = [[x[0], x[1], *last[1:]] if cfg.get("return_sequences") else last]
    return [*out, list(last), list(last)] if cfg.get("return_state") else out


def spatial(cls: str, cfg: dict[str, Any], x: Shape) -> Out | None:
    """Convolutions, pooling, padding, cropping and upsampling: Keras'
    ``compute_conv_output_shape`` and ``compute_pooling_output_shape``."""
    g = cfg.get
    transpose = cls.endswith("Transpose")
    name = cls.removesuffix("Transpose")
    rank = {"1D": 1, "2D": 2, "3D": 3}.get(name[-2:])
    if rank is None or len(x) != rank + 2:
        return None
    first = first_channels(cfg)
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


def stft(cfg: dict[str, Any], x: Shape) -> Out | None:
    """``STFTSpectrogram``'s ``compute_output_shape``: frames of ``frame_length`` every
    ``frame_step`` over time, ``fft_length // 2 + 1`` bins per channel (twice for "stft")."""
    g = cfg.get
    frame, step = _int(g("frame_length", 256)), _int(g("frame_step"))
    if len(x) != 3 or not frame:
        return None
    step = step or frame // 2
    bins = fft_length(cfg) // 2 + 1
    bins *= 2 if g("mode", "log") == "stft" else 1
    first = first_channels(cfg)
    time, chans = (x[2], x[1]) if first else (x[1], x[2])
    frames = _windowed([time], [frame], [step], g("padding", "valid"))
    if frames is None:
        return None
    if g("expand_dims"):
        return [[x[0], chans, frames[0], bins] if first else [x[0], frames[0], bins, chans]]
    wide = _times(chans, bins)
    return [[x[0], wide, frames[0]] if first else [x[0], frames[0], wide]]


def fft_length(cfg: dict[str, Any]) -> int:
    """``STFTSpectrogram``'s FFT length: as given, else Keras' power of two at or above the
    frame length."""
    frame = _int(cfg.get("frame_length", 256)) or 0
    given = _int(cfg.get("fft_length"))
    if given is not None:
        return given
    return 2 ** math.ceil(math.log2(frame)) if frame else 0


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
    """Keras' ``compute_conv_transpose_output_shape`` (``sizes`` are the dilated kernel)."""
    padding = padding.lower() if isinstance(padding, str) else padding
    if padding not in ("valid", "same"):
        return None
    pads: list[int | None] = [None] * len(space)
    if extra is not None:  # Keras: one int, or one per axis, each below its stride
        each = [extra] * len(space) if _int(extra) is not None else extra
        if not isinstance(each, list) or len(each) != len(space):
            return None
        pads = [_int(v) for v in each]
        if any(p is None or p >= s for p, s in zip(pads, strides, strict=True)):
            return None  # Keras refuses it
    out: list[int | None] = []
    for n, k, s, p in zip(space, sizes, strides, pads, strict=True):
        if not known(n):
            out.append(None)
        elif p is None:
            out.append(n * s if padding == "same" else (n - 1) * s + max(k, s))
        else:
            out.append((n - 1) * s + (k % 2 if padding == "same" else k) + p)
    return out


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

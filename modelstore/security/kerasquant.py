"""What a Keras layer's weights weigh, from its config alone (no Keras): the width of its
dtype policy, and the scales, zero points and group indices a GPTQ, AWQ or int4 quantisation
adds per group of kernel rows (:func:`least_eighths`, which :func:`.kerassize.check_config`
compares with the bytes the file stores).

Red team, pass 14: a ``"gptq/4/1"`` policy was charged an eighth of a byte per kernel element
while Keras makes, per group, a float32 scale and a uint8 zero point (``_gptq_build``): with
groups of one row, 44 eighths per element, and a layer's ``quantization_config`` (a
``GPTQConfig``, ``AWQConfig`` or ``Int4QuantizationConfig``, which Keras prefers to the
policy) may give a group size below one (``0.001``: a thousand groups per row). Everything
here is a lower bound of what Keras makes for every class and mode it builds (a mode Keras
refuses gets the least), so a benign quantised model is never refused."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .keraseinsum import einsum_axes
from .kerasmaps import MapScope, covers_every_path
from .kerasvocab import _int
from .kerasweights import SATURATED, Shapes, _prod, built_floor, itemsize


class Policy(NamedTuple):
    """One dtype policy a layer may have: eighths of a byte per weight, at least, and for the
    modes that add tensors per group of kernel rows (``"gptq"``, ``"awq"``, ``"int4"``) the
    mode, the weight bits and the group size (int4: the block size; None: none given, so
    int4 is per channel and GPTQ or AWQ need the layer's ``quantization_config``), and the
    eighths of its scales (made at the policy's source dtype)."""

    eighths: int
    mode: str | None = None
    bits: Any = None
    group: Any = None
    scale: int = 32


#: A policy Keras would refuse, or one not known here: one bit per weight and nothing more.
_LEAST = Policy(1)
#: The config class Keras reads a mode's bits and group size from in preference to the policy
#: (``gptq_core.get_group_size_for_layer``, ``awq_core``, ``get_block_size_for_layer``).
_CONFIGS = {"gptq": "GPTQConfig", "awq": "AWQConfig", "int4": "Int4QuantizationConfig"}
#: Layers that make their weights themselves, under their own path (a policy map's entries
#: are looked up by it): the ones quantised here, where the charges differ most.
OWN_PATH = frozenset({"Dense", "EinsumDense", "Embedding", "ReversibleEmbedding"})
_ATTENTION = ("MultiHeadAttention", "GroupedQueryAttention", "GroupQueryAttention")


def width(cfg: dict[str, Any]) -> int:
    """Eighths of a byte per weight, at least, of a layer's dtype policy (red team: the size
    checks compared element counts whatever the dtype): ``"float64"`` 64, ``"mixed_float16"``
    32 (its variables are float32), int8-quantised 8, int4, AWQ and 4-bit GPTQ 4 (two
    kernel elements packed in a byte), 2-, 3- and 8-bit GPTQ 8 (a byte each), float8 its
    source dtype's, a policy map the least of its policies, anything Keras would refuse or
    not known here 1."""
    return min(p.eighths for group in _effective(cfg) for p in group)


def least_eighths(
    cls: str,
    cfg: dict[str, Any],
    shapes: Shapes | None,
    scope: MapScope | None = None,
) -> int:
    """Eighths of a byte the layer's weights take at least when built for ``shapes``: its
    :func:`.kerasweights.built_floor` at the policy's :func:`width`, plus what a quantisation
    adds (:func:`_grouped`) for the classes that quantise their kernels (Dense, EinsumDense
    and the attention layers made of them: GPTQ, AWQ and int4; Embedding and
    ReversibleEmbedding: int4). The least over the policies the layer may have (a policy
    map's). The width never exceeds a kernel element's, so the bias and LoRA kernels (at
    their source dtype) are never charged more than Keras makes."""
    floor = built_floor(cls, cfg, shapes)
    return max(
        min(floor * p.eighths + _grouped(cls, cfg, shapes, p) for p in group)
        for group in _effective(cfg, cls, scope)
    )


# -- the policy, read as Keras reads it ----------------------------------------------------


def _effective(
    cfg: dict[str, Any], cls: str = "", scope: MapScope | None = None
) -> list[list[Policy]]:
    """The policies the layer may be built with, one group per dtype Keras may give it (a
    policy map's: each entry that may apply, :func:`_candidates`); in a group, its policy
    with the bits and group size of the layer's ``quantization_config`` where Keras takes
    them from there (both, where the config's class is not certain). The layer is charged
    the least of a group (what is uncertain there is how Keras reads the config) and the
    most over the groups (which entry applies depends on the layer's path)."""
    groups = []
    for dtype in _candidates(cfg, cls, scope):
        out = []
        for p in _policies(dtype):
            if p.mode is None:
                out.append(p)
                continue
            node = cfg.get("quantization_config")
            for applies in _config_applies(node, _CONFIGS[p.mode]):
                if not applies:  # GPTQ and AWQ without a group size: Keras raises
                    out.append(_LEAST if p.mode != "int4" and p.group is None else p)
                    continue
                inner = node.get("config") if isinstance(node, dict) else None
                out.append(_from_config(p, inner if isinstance(inner, dict) else {}))
        groups.append(out)
    return groups


def _candidates(cfg: dict[str, Any], cls: str, scope: MapScope | None) -> list[Any]:
    """The dtypes Keras may give the layer: its ``dtype``, or for a ``DTypePolicyMap`` the
    entries it may resolve for the layer's path (``Layer.variable_dtype`` and friends look
    ``self.path`` up in the map). Red team: charged at the least of the map's entries, a
    3 KB ``.keras`` storing nothing whose Dense had ``{"zzz.*": int4}`` over a GPTQ default
    made plain Keras build 1.34 GB and scanned safe.

    A layer that makes its weights itself (:data:`OWN_PATH`) has a path ending in its name
    (``name`` or ``<scopes>/name``; the scopes are not followed here): the entries whose key
    may resolve for such a path (:func:`.kerasmaps.may_resolve`; a key not analysed
    counts; without a ``scope``, every entry), and the default unless a key covers every path (``.*``; a newline in a layer
    name escapes it). Any other layer (attention, recurrent layers, wrappers) has sublayers
    that look up paths of their own: every entry, and the default."""
    dtype = cfg.get("dtype")
    if not (isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicyMap"):
        return [dtype]
    inner = dtype.get("config")
    inner = inner if isinstance(inner, dict) else {}
    entries = inner.get("policy_map")
    if not isinstance(entries, dict) or not entries:
        return [inner.get("default_policy")]
    name = cfg.get("name")
    if scope is None or cls not in OWN_PATH or not isinstance(name, str) or "/" in name:
        return [inner.get("default_policy"), *entries.values()]
    out = [v for k, v in entries.items() if scope.may_resolve(k, name) is not False]
    # (a layer whose path is empty, a top-level one named "", takes the default unlooked-up)
    if name == "" or not any(covers_every_path(k) for k in entries) or scope.newline():
        out.append(inner.get("default_policy"))
    return out


def _policies(dtype: Any) -> list[Policy]:
    if dtype is None:
        return [Policy(32)]
    if isinstance(dtype, str):  # "<mode>_from_<source>", split as Keras splits it
        parts = dtype.split("_from_")
        if len(parts) == 2:
            return [_quantised(*parts)]
        if len(parts) > 2 or dtype.startswith(("int8", "float8", *_CONFIGS)):
            return [_LEAST]  # Keras refuses it
        return [Policy(_named(dtype))]
    if not isinstance(dtype, dict) or not isinstance(dtype.get("config"), dict):
        return [_LEAST]
    cls, cfg = dtype.get("class_name"), dtype["config"]
    if cls in ("DTypePolicy", "FloatDTypePolicy"):
        return [Policy(_named(cfg.get("name")))]
    if cls == "DTypePolicyMap":  # (which one a layer gets depends on its path)
        inner = cfg.get("policy_map")
        values = list(inner.values()) if isinstance(inner, dict) else []
        return [p for d in [cfg.get("default_policy"), *values] for p in _policies(d)]
    mode, source = cfg.get("mode"), cfg.get("source_name")  # (no source: the global policy's)
    if isinstance(mode, str) and (source is None or isinstance(source, str)):
        return [_quantised(mode, source)]
    return [_LEAST]


def _named(name: Any) -> int:
    """Eighths per variable element of a plain policy by its name (``DTypePolicy._parse_name``:
    a mixed policy's variables are float32; None is the global policy, float32), 1 for a
    name that is not a string."""
    if name is None:
        return 32
    if not isinstance(name, str):
        return _LEAST.eighths
    return 32 if name.startswith("mixed_") else 8 * itemsize(name)


def _quantised(mode: str, source: str | None) -> Policy:
    """A quantised policy's mode as Keras' policy classes parse it (``Int4DTypePolicy``:
    ``"int4/<block>"``; ``GPTQDTypePolicy``, ``AWQDTypePolicy``: ``"<mode>/<bits>/<group>"``,
    each part through ``int()``; a bare ``"int4"``, ``"gptq"`` or ``"awq"`` is a
    ``QuantizedDTypePolicy``, which names no group)."""
    parts = mode.split("/")
    base = parts[0]
    scale = _named(source)  # the source dtype's variables
    if base == "float8":  # the kernel stays at the source dtype
        return Policy(scale)
    if base == "int8":
        return Policy(8)
    if base not in _CONFIGS:
        return _LEAST
    if len(parts) == 1:
        return Policy(4, base, scale=scale)
    if base == "int4":
        block = _whole(parts[1]) if len(parts) == 2 else None
        if block is None or block < -1 or block == 0:
            return _LEAST
        return Policy(4, base, 4, block, scale)
    bits, group = (_whole(parts[1]), _whole(parts[2])) if len(parts) == 3 else (None, None)
    if bits is None or group is None or group < -1 or group == 0:
        return _LEAST
    if bits not in ((4,) if base == "awq" else (2, 3, 4, 8)):
        return _LEAST
    return Policy(4 if bits == 4 else 8, base, bits, group, scale)


def _from_config(p: Policy, cfg: dict[str, Any]) -> Policy:
    """``p`` with the bits and group size a quantisation config gives (or its defaults),
    validated as its ``__init__`` validates them (any JSON number: a fraction passes; then
    Keras divides by it); one Keras would refuse gets the least."""
    if p.mode == "int4":
        block = cfg.get("block_size")  # (None: per channel)
        try:
            bad = block is not None and block != -1 and block <= 0
        except TypeError:
            return _LEAST
        return _LEAST if bad else p._replace(group=block)
    bits, group = cfg.get("weight_bits", 4), cfg.get("group_size", 128)
    try:
        bad = group < -1 or group == 0 or bits not in ([4] if p.mode == "awq" else [2, 3, 4, 8])
    except TypeError:
        return _LEAST
    return _LEAST if bad else p._replace(eighths=4 if bits == 4 else 8, bits=bits, group=group)


def _whole(text: str) -> int | None:
    """``int(text)`` as Keras takes a mode's parts (signs, spaces, underscores), or None."""
    try:
        return int(text)
    except ValueError:
        return None


def _config_applies(node: Any, wanted: str) -> set[bool]:
    """Whether Keras deserialises ``node`` to the ``wanted`` config class: ``{True}``,
    ``{False}``, or both where the audit says the name may resolve either way (the spelled
    class name and what the audit resolves it to, as :func:`.kerassize._resolved`)."""
    if not isinstance(node, dict) or not isinstance(node.get("class_name"), str):
        return {False}
    from .kerasaudit import canonical, plain_targets

    cls, module = node["class_name"], node.get("module")
    targets = [
        *plain_targets(cls),
        *([canonical(f"{module}.{cls}")] if isinstance(module, str) else []),
    ]
    names = {cls.rsplit(".", 1)[-1], *(t.rsplit(".", 1)[-1] for t in targets if t)}
    return {name == wanted for name in names}


# -- what a quantisation adds ---------------------------------------------------------------


def _grouped(cls: str, cfg: dict[str, Any], shapes: Shapes | None, p: Policy) -> int:
    """Eighths of a byte a quantised layer makes beyond ``built_floor * p.eighths``: packed
    kernels rounded up to whole bytes, a scale (at the source dtype: ``p.scale``) and a zero
    point (a byte) per unit and group of kernel rows, a float32 group index per row (AWQ: and
    a scale per row).
    Exact for Dense, the embeddings and an EinsumDense whose kernel's dimensions are all
    known; for attention (and an EinsumDense built for an unknown shape), scales and zero
    points for at least kernel elements / group size groups."""
    if p.mode is None:
        return 0
    g = cfg.get
    shape = shapes.get("input_shape", shapes.get("sequences_shape")) if shapes else None
    if cls == "Dense":  # kernel (input width, units), as built_floor: an unknown width is 1
        last = _int(shape[-1]) if isinstance(shape, list) and shape else None
        return _linear(p, max(last or 0, 1), _int(g("units")) or 0)
    if cls in ("Embedding", "ReversibleEmbedding"):
        if p.mode != "int4":  # Keras refuses GPTQ and AWQ embeddings
            return 0
        rows, cols = _int(g("input_dim")) or 0, _int(g("output_dim")) or 0
        reverse = cls == "ReversibleEmbedding" and g("tie_weights") is False  # as weight_floor
        return _embedding(p, rows, cols, reverse)
    if cls == "EinsumDense":
        dims, out = _einsum_kernel(g("equation"), g("output_shape"), shape)
        known = [d for d in dims if d is not None]
        if len(known) < len(dims):
            return _at_least(p, _prod([1 if d is None else d for d in dims]))
        split = _split(p, known, out) if known else None
        return 0 if split is None else _linear(p, *split)
    if cls in _ATTENTION:  # EinsumDense projections, made with the layer's policy
        return _at_least(p, built_floor(cls, cfg, shapes))  # (kernels only: no bias)
    return 0


def _linear(p: Policy, rows: int, cols: int) -> int:
    """A Dense or EinsumDense kernel of ``rows x cols`` (``_gptq_build``, ``_awq_build``,
    ``_int4_build``; Dense: input features by units), grouped along its rows, packing two
    columns in a byte at 4 bits."""
    packed = p.mode == "int4" or p.bits == 4
    out = 4 * rows * (cols % 2) if packed else 0  # an odd column count rounds up
    if p.mode == "int4" and (p.group is None or p.group == -1):
        return out + p.scale * cols  # a scale per unit
    n = 1 if p.group == -1 else _groups(rows, p.group)
    per_row = 32 + (p.scale if p.mode == "awq" else 0)  # g_idx (and AWQ's awq_scales)
    return out + (p.scale + 8) * n * cols + per_row * rows


def _embedding(p: Policy, rows: int, cols: int, reverse: bool) -> int:
    """An int4 Embedding (``_int4_build``): ``input_dim`` rows packed along ``output_dim``,
    grouped along ``output_dim``; a ReversibleEmbedding's untied reverse table as much
    again, bar the group index (its zero point is at the source dtype, not a byte)."""
    tables = 2 if reverse else 1
    out = tables * 4 * rows * (cols % 2)
    if p.group is None or p.group == -1:
        return out + tables * p.scale * rows
    zeros = 8 + (p.scale if reverse else 0)
    return out + (tables * p.scale + zeros) * rows * _groups(cols, p.group) + 32 * cols


def _at_least(p: Policy, kernel: int) -> int:
    """Scales and zero points of at least ``kernel / group`` groups (``columns x
    ceil(rows / group)`` is never fewer, however Keras splits the kernel); none per
    channel."""
    if p.group is None or p.group == -1:
        return 0
    return (p.scale + 8) * _groups(kernel, p.group, ceil=False)


def _groups(rows: int, group: Any, *, ceil: bool = True) -> int:
    """``math.ceil(rows / group)`` as Keras computes the groups (a fraction divides as a float),
    or its floor; 0 where Keras would fail (a NaN, an infinite quotient, a negative group),
    at most :data:`SATURATED`. (A float quotient past 2**53 may round up by one: only for
    layers far past any stored size.)"""
    if isinstance(group, int):  # (bool too: Keras divides by True as by 1)
        if group <= 0:
            return 0
        return min(-(-rows // group) if ceil else rows // group, SATURATED)
    try:
        q = rows / group
        n = int(math.ceil(q) if ceil else math.floor(q))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return 0
    return min(max(n, 0), SATURATED)


def _einsum_kernel(
    equation: Any, output_shape: Any, input_shape: Any
) -> tuple[list[int | None], list[bool]]:
    """EinsumDense's kernel dimensions (None: unknown) and, for each, whether the output has
    its axis (as ``keraseinsum.kernel_sizes``, a known 0 kept); none where Keras would not
    build it."""
    parts = einsum_axes(equation, output_shape, input_shape)
    if parts is None:
        return [], []
    kernel, shape, outs, in_at, out_at = parts
    dims: list[int | None] = []
    for c in kernel:
        where, at = (outs, out_at[c]) if c in out_at else (shape, in_at.get(c))
        if at is None or not -len(where) <= at < len(where):
            return [], []
        dims.append(_int(where[at]))
    return dims, [c in out_at for c in kernel]


def _split(p: Policy, dims: list[int], out: list[bool]) -> tuple[int, int] | None:
    """The (rows, columns) Keras flattens an EinsumDense kernel to: int4, the axes the output
    lacks by the others; GPTQ and AWQ, a 2-D kernel as it is and a 3-D one at its largest
    axis (the first such: rows the first axis if it is the largest, else the first two);
    None where Keras refuses (GPTQ or AWQ of another rank)."""
    if p.mode == "int4":
        rows = _prod([d for d, kept in zip(dims, out, strict=True) if not kept])
        return rows, _prod([d for d, kept in zip(dims, out, strict=True) if kept])
    if len(dims) == 2:
        return dims[0], dims[1]
    if len(dims) != 3:
        return None
    if dims.index(max(dims)) == 0:
        return dims[0], dims[1] * dims[2]
    return dims[0] * dims[1], dims[2]

"""Bound what a Keras config makes Keras allocate by what the file stores.

Keras builds a model from its config (and randomly initialises every variable) before it
reads a single stored weight, so a 12 KB ``.keras`` file declaring ``Dense(units=5e7)`` makes
a plain ``keras.saving.load_model`` allocate gigabytes, and ``RepeatVector(n=5e7)`` or
``UpSampling2D(size=10000)`` allocates them at the first predict. Two checks, both before the
model is built:

- :func:`check_config` reads the config alone (no Keras, so ``scan``, ``inspect`` and the
  gate run it): a lower bound of the weights each size-bearing layer declares (Dense, Embedding,
  convolutions, recurrent layers and cells, attention) must be covered by the weights the file
  stores; layers that grow their input (repeat, upsampling, transposed and dilated
  convolutions, padding, fixed output sizes, one-hot encodings) and input shapes are bounded.
- :func:`~.kerasbuild.declared_by` (in :mod:`.kerasbuild`; ``load`` only, Keras imported)
  builds the model the way Keras' loader will, inside Keras' ``StatelessScope`` so that no variable is initialised, then requires every
  variable of real size to match a stored dataset of the same size and bounds every layer
  output Keras can infer from the declared input shapes.

Weights that *are* stored are already bounded by the container checks (sizes declared vs.
stored in :mod:`.kerasfile` and :mod:`.zipcheck`), so a file can only make Keras allocate about
what it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .kerasmaps import MapScope
from .kerasquant import least_eighths
from .kerasshapes import AmbiguousGraph, follow
from .kerasvocab import PAD_FACTOR, _int, made_at_init, output_mode, padded
from .kerasweights import (
    Shapes,
    _ints,
    _prod,
    axes_size,
    built_floor,
    built_shapes,
    passed_on,
)

#: Weights (elements) a config may declare beyond what the file stores, for rounding and for
#: small state Keras keeps outside the weights file (seed generators and the like).
SLACK = 1 << 20
#: Elements one layer may output per sample, whatever its input: 2**26 (256 MiB of float32),
#: or ACTIVATION_FACTOR times the elements the model's inputs declare, if more.
ACTIVATION_LIMIT = 1 << 26
ACTIVATION_FACTOR = 64
#: How many times one layer may multiply the size of its input (upsampling, repeats,
#: transposed-convolution strides), and all such layers of a model together.
GROWTH_LIMIT = 1 << 12
TOTAL_GROWTH_LIMIT = 1 << 20
#: A declared input dimension above this is absurd (TensorFlow indexes with int32).
MAX_DIM = (1 << 31) - 1
#: Layers that move elements onto an axis, or make a wide one, without weights to show for it.
_MOVES_AXES = frozenset(
    """
    Reshape Flatten Permute Concatenate Dot RepeatVector CategoryEncoding Hashing HashedCrossing
    StringLookup IntegerLookup TextVectorization
    """.split()  # noqa: SIM905 (a word list)
)
#: Output modes in which a preprocessing layer emits a vector as long as its vocabulary.
_VECTOR_MODES = ("one_hot", "multi_hot", "count", "tf_idf")


class SizeError(ValueError):
    """The config declares sizes the file cannot back; the message names layer and sizes."""


# -- reading the config ------------------------------------------------------------------


def _dim_ok(value: Any) -> bool:
    """An unknown dimension, or a whole number up to MAX_DIM."""
    n = _int(value)
    return value is None or (n is not None and n <= MAX_DIM)


def layers(config: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(class name, layer name, config) of every object node in a model config, nested
    layers (Bidirectional, TimeDistributed, RNN cells, models inside models) included."""
    for cls, name, cfg, _ in _nodes(config):
        yield cls, name, cfg


def _nodes(
    config: Any, inferred: dict[int, Shapes] | None = None
) -> Iterator[tuple[str, str, dict[str, Any], Shapes | None]]:
    """:func:`layers`, each with the input shape Keras builds it for, at least: of the one
    its ``build_config`` names, the one ``inferred`` (:func:`.kerasshapes.inferred_inputs`)
    follows to it and the one its wrapper passes on, the one that makes it largest (red
    team: Keras' legacy reader, which reads an ``.h5`` and any layer without a ``module``,
    ignores ``build_config``, so a small one named there must not hide the input's width)."""
    inferred = inferred or {}
    stack = [config]
    inherited: dict[int, Shapes] = {}  # id of a wrapped layer's node -> its wrapper's shapes
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            cls, cfg = node.get("class_name"), node.get("config")
            if isinstance(cls, str) and isinstance(cfg, dict):
                found = [built_shapes(node), inferred.get(id(node)), inherited.get(id(node))]
                shapes = [s for s in found if s]
                name = cfg.get("name")
                plain = _resolved(cls, node.get("module"), cfg, shapes[0] if shapes else None)
                built = max(shapes, key=lambda s: _charged(plain, cfg, s)) if shapes else None
                inherited.update((id(inner), s) for inner, s in passed_on(plain, cfg, built))
                yield plain, name if isinstance(name, str) else "?", cfg, built
            stack.extend(node.values())


def _charged(cls: str, cfg: dict[str, Any], shapes: Shapes) -> int:
    """What the layer is charged for when built for ``shapes``: its weights and any given
    statistics (:func:`has_statistics`)."""
    stats = _statistics_size(cfg, shapes) or 0 if has_statistics(cls, cfg) else 0
    return built_floor(cls, cfg, shapes) + stats


def _resolved(cls: str, module: Any, cfg: dict[str, Any], built: Shapes | None) -> str:
    """The class a node names, as Keras resolves it, not as it is spelled (red team:
    ``"mean_io_u"`` is ``MeanIoU``): of what the audit says the name resolves to, the one
    the file would make allocate most (the spelling itself, if nothing else)."""
    from .kerasaudit import canonical, plain_targets

    # Keras aliases Convolution2D, SeparableConvolution1D, ... to the Conv classes
    names = [cls.rsplit(".", 1)[-1].replace("Convolution", "Conv")]
    targets = [
        *plain_targets(cls),
        *([canonical(f"{module}.{cls}")] if isinstance(module, str) else []),
    ]
    names += [t.rsplit(".", 1)[-1] for t in targets if t]
    return max(names, key=lambda c: built_floor(c, cfg, built) + made_at_init(c, cfg))


def growth(cls: str, cfg: dict[str, Any]) -> tuple[int, int]:
    """(factor, fixed): how many times the layer multiplies its input's size per sample, and
    how many elements per sample it outputs (or pads to) whatever its input."""
    g = cfg.get
    factor, fixed = 1, 0
    if cls == "RepeatVector":
        fixed = _int(g("n")) or 0
    elif cls.startswith("UpSampling"):
        factor = _prod(_ints(g("size")))
    elif cls.startswith("Conv") and cls.endswith("Transpose"):
        factor = _prod(_ints(g("strides")))
    elif cls.startswith("ZeroPadding"):
        pads = g("padding")
        per_dim = pads if isinstance(pads, (list, tuple)) else [pads]
        fixed = _prod([sum(_ints(p)) + 1 for p in per_dim])
    elif cls.startswith(("AdaptiveMaxPooling", "AdaptiveAveragePooling")):
        fixed = _prod(_ints(g("output_size")))
    elif cls in ("Resizing", "CenterCrop"):
        fixed = (_int(g("height")) or 1) * (_int(g("width")) or 1)
    elif cls == "Reshape":
        fixed = _prod(_ints(g("target_shape")))
    elif cls == "CategoryEncoding":
        fixed = _int(g("num_tokens")) or 0
    elif cls in ("Hashing", "HashedCrossing") and output_mode(cfg) in _VECTOR_MODES:
        fixed = _int(g("num_bins")) or 0
    elif (
        cls in ("StringLookup", "IntegerLookup", "TextVectorization")
        and output_mode(cfg) in _VECTOR_MODES
    ):
        fixed = _int(g("max_tokens")) or 0
    if cls == "TextVectorization":
        fixed = max(fixed, _int(g("output_sequence_length")) or 0)
    dilation = _ints(g("dilation_rate"))
    if any(d > 1 for d in dilation):  # "same" padding pads the input by the dilated kernel
        kernel = _ints(g("kernel_size")) or [1] * len(dilation)
        if len(kernel) == 1:
            kernel = kernel * len(dilation)
        fixed = max(fixed, _prod([(k - 1) * d + 1 for k, d in zip(kernel, dilation)]))
    return factor, fixed


def input_shapes(config: Any) -> list[tuple[str, list[Any]]]:
    """(layer name, declared shape) of every input the config declares."""
    out = []
    for _, name, cfg in layers(config):
        shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
        if isinstance(shape, list):
            out.append((name, shape))
    return out


def declared_shapes(config: Any) -> Iterator[list[Any]]:
    """Every shape the config declares for something's input, batch first: inputs'
    ``batch_shape`` / ``batch_input_shape``, layers' ``input_shape`` and the input shapes of
    their ``build_config`` (Keras builds a layer from it before calling it)."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key in ("batch_shape", "batch_input_shape", "input_shape"):
                shape = node.get(key)
                if isinstance(shape, list) and shape and not isinstance(shape[0], list):
                    yield shape
                elif key == "input_shape" and isinstance(shape, (list, dict)):
                    values = shape.values() if isinstance(shape, dict) else shape
                    yield from (s for s in values if isinstance(s, list) and s)
            stack.extend(node.values())


def declared_batch(config: Any) -> int:
    """The largest batch any declared shape fixes (0: none does)."""
    return max([_int(shape[0]) or 0 for shape in declared_shapes(config)] or [0])


#: Config arguments that size a layer, shown in refusals.
_SIZE_ARGS = tuple(
    """
    units input_dim output_dim filters kernel_size depth_multiplier num_heads key_dim
    value_dim head_dim num_query_heads num_key_value_heads n size strides dilation_rate
    padding height width target_shape num_tokens num_bins max_tokens num_oov_indices ngrams
    output_sequence_length output_shape frame_length fft_length num_classes num_thresholds
    """.split()  # noqa: SIM905 (a word list: one line per argument would not fit the module)
)


def _what(cls: str, name: str, cfg: dict[str, Any]) -> str:
    """``'dense' (Dense, units=50000000)``: the layer and the arguments that size it."""
    args = [
        f"{k}={json.dumps(cfg[k])[:60]}"
        for k in _SIZE_ARGS
        if k in cfg and not isinstance(cfg[k], str)
    ]
    return f"{name!r} ({', '.join([cls, *args])})"


def _shapes_text(built: Shapes) -> str:
    """``the input [None, 96]`` or ``query_shape [None, 5, 96], value_shape [...]``."""
    if list(built) == ["input_shape"]:
        return f"the input {built['input_shape'][:8]!r}"
    return ", ".join(f"{k} {v[:8]!r}" for k, v in built.items())


def _mib(elements: int, itemsize: int = 4) -> str:
    size = elements * itemsize  # integers throughout: a declared size may exceed any float
    return f"{size >> 20:,} MiB as float32" if size >= 1 << 20 else f"{size:,} bytes as float32"


def has_statistics(cls: str, cfg: dict[str, Any]) -> bool:
    """A Normalization given its mean or variance: Keras broadcasts them to its input's kept
    axes when it builds the layer, as tensors."""
    return cls == "Normalization" and (
        cfg.get("mean") is not None or cfg.get("variance") is not None
    )


def _statistics_size(cfg: dict[str, Any], built: Shapes | None) -> int | None:
    """The elements of a Normalization's broadcast mean, when the config alone fixes them:
    the kept axes of the input its ``build_config`` names (what Keras broadcasts to; red team:
    a scalar mean on a 512 x 512 x 3 image is 3 elements, not the image), or one kept axis and
    a list of k > 1 values, which Keras broadcasts to nothing larger (a shorter list, a scalar
    or several kept axes broadcast to the input's size, unknown here: None)."""
    axis, mean = cfg.get("axis", -1), cfg.get("mean")
    shape = built.get("input_shape") if built else None
    if shape is not None:  # Keras keeps no axis for None; 0: it would not build
        return 1 if axis is None else max(axes_size(axis, shape), 1)
    one_axis = (isinstance(axis, int) and not isinstance(axis, bool)) or (
        isinstance(axis, list) and len(axis) == 1
    )
    if one_axis and isinstance(mean, list) and len(mean) > 1:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean):
            return len(mean)
    return None


def _state_count(cls: str) -> int:
    """States a recurrent layer keeps: an LSTM two (h, c), others one."""
    return 2 if "LSTM" in cls else 1


def _state_units(cfg: dict[str, Any]) -> int:
    return _int(cfg.get("units")) or _int(cfg.get("filters")) or 1


def check_config(
    config: Any, stored: list[int], where: str = "the model config", *, held_ratio: float = 1.0
) -> None:
    """Refuse a config whose layers declare more weights than the file stores, or that
    multiplies or fixes activation sizes past the limits; ``stored`` lists the sizes of the
    stored weight datasets in float32 elements (bytes / 4: :func:`stored_sizes
    <.kerasfile.stored_sizes>`), ``held_ratio`` the bytes the file spends on the config per
    byte of it (a compressed member: below 1). Raises :class:`SizeError`."""
    total_stored = sum(stored)
    input_elements = 0
    declared_inputs = input_shapes(config)
    for name, shape in declared_inputs:
        dims = [d for d in shape[1:] if d is not None]
        if not all(_dim_ok(d) for d in shape):
            raise SizeError(
                f"{where}: input {name!r} declares the shape {shape[:8]!r}; dimensions must "
                f"be whole numbers up to {MAX_DIM}"
            )
        input_elements = max(input_elements, _prod([int(d) for d in dims]))
    for shape in declared_shapes(config):
        if not all(_dim_ok(d) for d in shape if not isinstance(d, list)):
            raise SizeError(
                f"{where}: a layer declares the input shape {shape[:8]!r}; dimensions must "
                f"be whole numbers up to {MAX_DIM}"
            )
    act_limit = max(ACTIVATION_LIMIT, ACTIVATION_FACTOR * input_elements)
    batch = max(declared_batch(config), 1)
    floor, biggest, total_growth = 0, (0, ""), 1
    constants: list[tuple[int | None, Any, str]] = []
    pad, held, widest = 0, 0, (0, "")
    moved = False  # whether a layer moves elements onto an axis (below)
    try:
        walk = follow(config)
    except AmbiguousGraph as e:  # (refused, not guessed)
        raise SizeError(f"{where}: its layer graph cannot be followed: {e}") from None
    inferred, maps = walk.found, MapScope(config)  # (policy maps: kerasquant)
    for cls, name, cfg, built in _nodes(config, inferred):
        moved = moved or cls in _MOVES_AXES
        layer_pad, layer_held = padded(cls, cfg)  # vocabularies: fixed-width string arrays
        pad, held = pad + layer_pad, held + layer_held
        widest = max(widest, (layer_pad, _what(cls, name, cfg)))
        # in float32 elements (32 eighths of a byte): a float64 layer's count twice, a
        # quantised one's with its scales and zero points per group (red team)
        n = least_eighths(cls, cfg, built, maps) // 32 + made_at_init(cls, cfg)
        state = 0
        if cfg.get("stateful"):  # (for truth, as Keras tests it) batch x units, made at build
            state = batch * _state_units(cfg)
            n += _state_count(cls) * state  # ConvLSTM's spatial size is counted at load
        inner: Any = cfg.get("layer") if cls == "Bidirectional" else None
        inner_cfg = inner.get("config") if isinstance(inner, dict) else None
        if isinstance(inner_cfg, dict) and inner_cfg.get("stateful"):  # its backward copy's
            n += _state_count(str(inner.get("class_name"))) * batch * _state_units(inner_cfg)
        floor += n
        if n > biggest[0]:
            what = _what(cls, name, cfg)
            biggest = (n, f"{what} built for {_shapes_text(built)}" if built else what)
        if has_statistics(cls, cfg):
            constants.append(
                (_statistics_size(cfg, built), cfg.get("axis", -1), _what(cls, name, cfg))
            )
        factor, fixed = growth(cls, cfg)
        fixed = max(fixed, state)
        if factor > GROWTH_LIMIT:
            raise SizeError(
                f"{where}: layer {_what(cls, name, cfg)} multiplies the size of its input by "
                f"{factor:,} (at most {GROWTH_LIMIT:,} is accepted): it would allocate that much "
                f"at predict"
            )
        total_growth = min(total_growth * factor, TOTAL_GROWTH_LIMIT + 1)  # over: refused below
        if fixed > act_limit:
            raise SizeError(
                f"{where}: layer {_what(cls, name, cfg)} outputs or pads to {fixed:,} elements per "
                f"sample ({_mib(fixed)}; at most {act_limit:,} are accepted for this model's "
                f"inputs): it would allocate that much at predict"
            )
    if total_growth > TOTAL_GROWTH_LIMIT:
        raise SizeError(
            f"{where}: its layers multiply the size of their input by {total_growth:,} in all "
            f"(at most {TOTAL_GROWTH_LIMIT:,} is accepted)"
        )
    held = int(held * held_ratio)  # what the file holds: a deflated vocabulary holds less
    if pad > SLACK + PAD_FACTOR * held:
        raise SizeError(
            f"{where}: layer {widest[1]} pads its vocabulary and special tokens to "
            f"{widest[0]:,} characters ({_mib(widest[0]).replace('float32', 'numpy strings')}; "
            f"the layers' {held:,} characters allow {SLACK + PAD_FACTOR * held:,}): Keras makes "
            f"every entry as long as the longest when it constructs the layer"
        )
    # the model inputs' kept axes bound a layer's only if no layer moves elements onto them
    # (red team, pass 10: a Reshape put 2**26 elements on the last axis)
    inputs = [] if moved else [shape for _, shape in declared_inputs]
    for known, axis, what in constants:
        # a Normalization given its statistics broadcasts them to its input's kept axes when
        # it is built, as tensors (mean and variance); unless the config fixes their size
        # (no build_config: a legacy .h5), they count at the model inputs' kept axes (a
        # scalar mean on an image is its channels, not the image) or, where a layer moves
        # elements between axes, the largest input's elements, times the model's growth.
        # (The load's build counts them exactly.)
        kept = 1 if axis is None else max([axes_size(axis, i) for i in inputs] or [0])
        each = 2 * (known or min(act_limit, max(kept or input_elements, 1) * total_growth))
        floor += each
        if each > biggest[0]:
            biggest = (each, what)
    if floor > total_stored + SLACK:
        n, what = biggest
        raise SizeError(
            f"{where}: its layers declare at least {floor:,} weights ({_mib(floor)}; layer "
            f"{what} alone {n:,}) but the file stores {total_stored:,}: Keras would "
            f"allocate and initialise them before reading the file's weights"
        )
    n, what, shape = walk.widest  # load bounds the same outputs, from Keras' own shapes
    if n > act_limit:
        raise SizeError(
            f"{where}: layer {what} outputs the shape {shape[:8]!r} ({n:,} elements per "
            f"sample, {_mib(n)}; at most {act_limit:,} are accepted for this model's inputs): "
            f"predict would allocate that much"
        )

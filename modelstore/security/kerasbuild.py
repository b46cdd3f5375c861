"""Build a Keras model from its config without allocating it, and check what the build declares.

:func:`declared_by` (``load`` only, Keras imported) builds the model the way Keras' loader
will, inside Keras' ``StatelessScope`` so that no variable is initialised, and bounds every
layer output it infers; :func:`match` then requires every variable of real size to match a
stored dataset of the same size and at least its item size. The Keras-free config check and the limits are in
:mod:`.kerassize`."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .kerassize import (
    ACTIVATION_FACTOR,
    ACTIVATION_LIMIT,
    SLACK,
    SizeError,
    _mib,
    declared_batch,
    layers,
)
from .kerasvocab import _int
from .kerasweights import _prod, itemsize

#: A built variable this large (elements) must match a stored dataset of the same size.
MATCH_MIN = 1 << 16
#: The name under which the check build deserialises every built-in ``Normalization``.
_SHAPE_ONLY = "modelstore>ShapeOnlyNormalization"
_NORMALIZATION = "keras.layers.Normalization"

#: (owning layer, shape, elements, kind, item size) of what the build declares, of a kind:
#: a variable of the model, whose values the file stores (STORED); a tensor the real load
#: makes that the file does not store (MADE: statistics given in the config, stateful RNN
#: states), which counts towards the total only; a variable of a layer the model does not
#: keep, one of the model's own of its shape and width standing for it (TRANSIENT: the copy of
#: its layer Bidirectional makes before its forward and backward ones), which Keras builds and
#: drops, counted apart.
Declared = tuple[str, tuple[int, ...], int, str, int]
STORED, MADE, TRANSIENT = "stored", "made", "transient"
#: (elements, item size) of a dataset the file stores
Stored = tuple[int, int]


def declared_by(
    config: dict[str, Any],
    legacy: bool,
    where: str = "the model config",
    *,
    activations: bool = True,
    safe: bool = True,
    keep: list[Any] | None = None,
) -> list[Declared]:
    """Build ``config`` as Keras' loader would, inside Keras' StatelessScope (no variable is
    initialised): every variable it declares, and (``activations``) every layer output Keras
    infers bounded by the activation limit. No stored sizes are needed, so this can run while
    the HDF5 guard child walks the weights; :func:`match` then compares the variables with
    them before anything allocates. Call it only on a config the audit accepted: it runs
    Keras' deserialisation.

    Two kinds of layer make tensors, not deferred variables, when Keras builds them, so the
    check build makes them differently and counts them (kind ``MADE``): a ``Normalization``
    given its statistics broadcasts them to its input's kept axes (the check build declares
    them as uninitialised variables of that shape instead), and a stateful RNN makes its
    states, ``batch x state size`` each (the check build is not stateful; the states' shapes
    are inferred symbolically).

    ``keep``: when the check build is the model itself (no copy was changed for it), for a
    ``.keras`` config or a legacy ``.h5`` one (built by Keras' own legacy reader, as its
    ``.h5`` loader builds it), ``(model, variables)`` is appended to it, the model with every
    variable it made uninitialised, for the load to fill from the stored weights
    (``formats/keras/reuse.py``, ``reuse_h5.py``) rather than build the model again."""
    model, made = _build(config, legacy, safe)
    try:
        declared = _variables(model, made)
        if any(cfg.get("stateful") for _, _, cfg in layers(config)):  # as Keras tests it
            declared += _states(model, config)
        if activations:
            _bound_outputs(model, where)
        if keep is not None and _for_check(config) == config:
            keep.append((model, made))
        return declared
    finally:
        del model, made


def _build(config: dict[str, Any], legacy: bool, safe: bool) -> tuple[Any, list[Any]]:
    """The model, and the variables its build made (uninitialised, and left out of Keras'
    list of variables to initialise)."""
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    text = json.dumps(_for_check(config))  # a private copy, decoded the way the loader decodes it
    try:
        with StatelessScope(initialize_variables=False), _shape_only_scope():
            if legacy:
                from keras.src.legacy.saving import json_utils, saving_options, saving_utils

                with saving_options.keras_option_scope(
                    use_legacy_config=True
                ):  # as the loader does
                    model = saving_utils.model_from_config(json_utils.decode(text))
            else:
                from keras.src.saving.serialization_lib import (
                    ObjectSharingScope,
                    deserialize_keras_object,
                )

                cfg = json.loads(text)
                cfg["compile_config"] = None  # the optimizer's state follows the variables
                with ObjectSharingScope():
                    model = deserialize_keras_object(cfg, safe_mode=safe)
        before = {id(v) for v in pending}
        made = global_state.get_global_attribute("uninitialized_variables", []) or []
        return model, [v for v in made if id(v) not in before]
    finally:
        # the variables made here stay uninitialised: never let a later scope initialise them
        global_state.set_global_attribute("uninitialized_variables", pending)


def _for_check(config: Any) -> Any:
    """The copy the check build makes: not stateful (a stateful RNN makes its states from
    tensors, which Keras' StatelessScope cannot defer; :func:`_states` counts them), and every
    built-in ``Normalization`` made by :func:`_shape_only_normalization`."""
    if isinstance(config, list):
        return [_for_check(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {
        k: (False if k == "stateful" and v else _for_check(v))  # Keras tests truthiness
        for k, v in config.items()
    }
    if _is_normalization(out):  # looked up by this name (registered) and by class name (legacy)
        out["class_name"] = out["registered_name"] = _SHAPE_ONLY
    return out


def _is_normalization(node: dict[str, Any]) -> bool:
    """Whether Keras resolves the node to its ``Normalization``, however it is spelled (red
    team: ``{"module": "keras", "class_name": "layers.Normalization"}``): what the audit
    resolves, not the spelling. A node registered under another name is refused by the
    audit before any build."""
    from .kerasaudit import canonical, plain_targets

    name, module = node.get("class_name"), node.get("module")
    if not isinstance(name, str) or "config" not in node:
        return False
    targets = set(plain_targets(name))
    if isinstance(module, str):
        targets.add(canonical(f"{module}.{name}") or "")
    return _NORMALIZATION in targets


@functools.cache
def _shape_only_normalization() -> type:
    """A ``Normalization`` that, when built, declares its statistics as variables of their
    exact shape (uninitialised in the check build) and makes no tensor: Keras' own either
    broadcasts the given statistics to that shape or, for adapted ones, reads the fresh
    variables (``finalize_state``), which in a StatelessScope runs their initialiser. Called,
    it keeps its input's shape, as Keras' does."""
    from keras import ops
    from keras.layers import Normalization

    class ShapeOnlyNormalization(Normalization):  # type: ignore[misc]
        statistics_given = False

        def build(self, input_shape: Any) -> None:
            given = (self.input_mean, self.input_variance)  # type: ignore[has-type]
            self.statistics_given = given[0] is not None
            self.input_mean = self.input_variance = None  # Keras' own checks, variables only
            try:
                super().build(input_shape)
            finally:
                self.input_mean, self.input_variance = given

        def finalize_state(self) -> None:
            return None

        def call(self, inputs: Any) -> Any:
            return ops.cast(inputs, self.compute_dtype)

    return ShapeOnlyNormalization


@contextmanager
def _shape_only_scope() -> Iterator[None]:
    """Keras' custom-object scope (thread-local) with :data:`_SHAPE_ONLY` added to any the
    caller has open."""
    from keras.src.backend.common import global_state
    from keras.src.saving.object_registration import CustomObjectScope

    current = global_state.get_global_attribute("custom_objects_scope_dict", {}) or {}
    with CustomObjectScope({**current, _SHAPE_ONLY: _shape_only_normalization()}):
        yield


def _variables(model: Any, made: list[Any]) -> list[Declared]:
    """Every variable the build made (the model's, and any a layer no node reaches made: red
    team, Keras builds such a layer too); the innermost layer owns it. A shape-only
    ``Normalization``'s statistics are not stored when the config gives them."""
    owner: dict[int, tuple[str, str]] = {}
    for layer in _all_layers(model):  # outer layers first: inner ones overwrite
        kind = MADE if getattr(layer, "statistics_given", False) else STORED
        for v in getattr(layer, "weights", None) or []:
            what = f"{_kind(layer)} {layer.name!r}, variable {getattr(v, 'name', '?')!r}"
            owner[id(v)] = (what, kind)
    out = []
    weights = list(getattr(model, "weights", []))
    seen = {id(v) for v in weights}
    for v in [*weights, *(v for v in made if id(v) not in seen)]:
        shape = tuple(int(d) for d in v.shape)
        what, kind = owner.get(id(v), (repr(getattr(v, "path", "?")), TRANSIENT))
        out.append((what, shape, _prod(list(shape)), kind, itemsize(v.dtype)))
    # a transient variable is a copy (Bidirectional's of its layer): one of the model's own of
    # its shape and width stands for it, once; else it must be stored (red team: a layer no
    # output depends on, kept alive by its input, would get a free allowance)
    twins = Counter((d[1], d[4]) for d in out if d[3] == STORED)
    for i, d in enumerate(out):
        if d[3] == TRANSIENT:
            if twins[(d[1], d[4])] > 0:
                twins[(d[1], d[4])] -= 1
            else:
                out[i] = (d[0], d[1], d[2], STORED, d[4])
    return out


def _states(model: Any, config: dict[str, Any]) -> list[Declared]:
    """The states every RNN layer of a model with a stateful layer would make, for the largest
    batch the config declares or the layer was built with: inferred symbolically, none made. (Every RNN layer, not only the
    stateful ones: wrappers rename the layers they copy.) Without a declared batch Keras
    refuses a stateful RNN before making anything."""
    from keras import tree
    from keras.src.backend import compute_output_spec

    declared = declared_batch(config)
    out = []
    for layer in _all_layers(model):
        cell = getattr(layer, "cell", None)
        if cell is None or not callable(getattr(layer, "get_initial_state", None)):
            continue
        # and the batch the layer was built with: Keras builds it from its build_config,
        # whatever the Input says (red team)
        shapes = (getattr(layer, "_build_shapes_dict", None) or {}).values()
        built = [_int(s[0]) or 0 for s in shapes if isinstance(s, (list, tuple)) and s]
        batch = max([declared, *built])
        if batch <= 0:
            continue
        for t in tree.flatten(compute_output_spec(layer.get_initial_state, batch)):
            shape = tuple(int(d) if d is not None else 1 for d in getattr(t, "shape", ()))
            state = (f"{_kind(layer)} {layer.name!r}, state", shape, _prod(list(shape)), MADE)
            out.append((*state, itemsize(getattr(t, "dtype", "float32"))))
    return out


def _kind(layer: Any) -> str:
    name = type(layer).__name__
    return "Normalization" if name == "ShapeOnlyNormalization" else name


def match(declared: list[Declared], stored: list[Stored], where: str) -> None:
    """Every variable of real size must match a stored dataset of its element count whose
    items are at least as wide (red team: a ``float64`` layer over ``uint8`` datasets makes
    Keras allocate 8 bytes for each stored one), and all of them together must fit the bytes
    the file stores; so must the transient ones, apart. Raises :class:`SizeError`."""
    available = Counter(stored)
    held = sum(n * size for n, size in stored)
    for path, shape, n, kind, size in sorted(declared, key=lambda d: -d[2]):
        if kind != STORED:
            continue
        if n < MATCH_MIN:
            break
        fits = [s for (m, s), left in available.items() if m == n and s >= size and left > 0]
        if not fits:
            raise SizeError(
                f"{where}: layer {path} has the shape {list(shape)} ({n:,} elements of "
                f"{size} bytes, {_mib(n, size).replace(' as float32', '')}) but the file stores "
                f"no weight of that size and width (it stores {held:,} bytes in {len(stored)} "
                f"arrays): Keras would allocate it before reading the file's weights"
            )
        available[(n, min(fits))] -= 1
    transient = [
        (n * size, path, shape) for path, shape, n, kind, size in declared if kind == TRANSIENT
    ]
    if transient and sum(t[0] for t in transient) > held + 4 * SLACK:
        n, path, shape = max(transient)
        raise SizeError(
            f"{where}: layers the model does not keep (no node reaches them, or a wrapper "
            f"copied them) make {sum(t[0] for t in transient):,} bytes, more than the "
            f"{held:,} the file stores (the largest, {path}, has the shape {list(shape)}): "
            f"Keras would allocate them while it builds the model"
        )
    total = sum(n * size for _, _, n, kind, size in declared if kind != TRANSIENT)
    if total > held + 4 * SLACK:
        extra = [(n * size, path) for path, _, n, kind, size in declared if kind == MADE]
        also = ""
        if extra:
            n, path = max(extra)
            also = (
                f", of which {sum(e for e, _ in extra):,} in tensors the file does not store "
                f"(statistics given in the config, RNN states; the largest, {path}: {n:,})"
            )
        raise SizeError(
            f"{where}: the model's variables hold {total:,} bytes "
            f"({total >> 20:,} MiB{also}) but the file stores {held:,}: Keras would allocate "
            f"them before reading the file's weights"
        )


def _bound_outputs(model: Any, where: str) -> None:
    inputs = [t for t in getattr(model, "inputs", None) or [] if hasattr(t, "shape")]
    input_elements = max([_known(t.shape) for t in inputs] or [0])
    limit = max(ACTIVATION_LIMIT, ACTIVATION_FACTOR * input_elements)
    for layer in _all_layers(model):
        for node in getattr(layer, "_inbound_nodes", []) or []:
            for t in getattr(node, "output_tensors", []) or []:
                n = _known(getattr(t, "shape", ()))
                if n > limit:
                    raise SizeError(
                        f"{where}: layer {layer.name!r} ({type(layer).__name__}) outputs the shape "
                        f"{list(t.shape)} ({n:,} elements per sample, {_mib(n)}; at most {limit:,} "
                        f"are accepted for this model's inputs): predict would allocate that much"
                    )


def _known(shape: Any) -> int:
    """Elements per sample, counting unknown dimensions as 1."""
    dims = list(shape)[1:] if shape else []
    return _prod([int(d) for d in dims if d is not None])


def _all_layers(model: Any) -> Iterator[Any]:
    """The model, then every layer in it: those of models inside it and the layers wrappers
    hold (Bidirectional's two copies, TimeDistributed's layer)."""
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        inner = [getattr(layer, a, None) for a in ("forward_layer", "backward_layer", "layer")]
        stack.extend(getattr(layer, "layers", None) or [])
        stack.extend(i for i in inner if i is not None and hasattr(i, "weights"))

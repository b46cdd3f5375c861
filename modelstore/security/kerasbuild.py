"""Build a Keras model from its config without allocating it, and check what the build declares.

:func:`declared_by` (``load`` only, Keras imported) builds the model the way Keras' loader
will, inside Keras' ``StatelessScope`` so that no variable is initialised, and bounds every
layer output it infers; :func:`match` then requires every variable of real size to match a
stored dataset of the same size. The Keras-free config check and the limits are in
:mod:`.kerassize`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from .kerassize import ACTIVATION_FACTOR, ACTIVATION_LIMIT, SLACK, SizeError, _mib, _prod

#: A built variable this large (elements) must match a stored dataset of the same size.
MATCH_MIN = 1 << 16


def declared_by(
    config: dict[str, Any],
    legacy: bool,
    where: str = "the model config",
    *,
    activations: bool = True,
    safe: bool = True,
) -> list[tuple[str, tuple[int, ...], int]]:
    """Build ``config`` as Keras' loader would, inside Keras' StatelessScope (no variable is
    initialised): every variable it declares, and (``activations``) every layer output Keras
    infers bounded by the activation limit. No stored sizes are needed, so this can run while
    the HDF5 guard child walks the weights; :func:`match` then compares the variables with
    them before anything allocates. Call it only on a config the audit accepted: it runs
    Keras' deserialisation."""
    model = _build(config, legacy, safe)
    try:
        declared = _variables(model)
        if activations:
            _bound_outputs(model, where)
        return declared
    finally:
        del model


def _build(config: dict[str, Any], legacy: bool, safe: bool) -> Any:
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    text = json.dumps(_stateless(config))  # a private copy, decoded the way the loader decodes it
    try:
        with StatelessScope(initialize_variables=False):
            if legacy:
                from keras.src.legacy.saving import json_utils, saving_options, saving_utils

                with saving_options.keras_option_scope(
                    use_legacy_config=True
                ):  # as the loader does
                    return saving_utils.model_from_config(json_utils.decode(text))
            from keras.src.saving.serialization_lib import (
                ObjectSharingScope,
                deserialize_keras_object,
            )

            cfg = json.loads(text)
            cfg["compile_config"] = None  # the optimizer's state follows the model's variables
            with ObjectSharingScope():
                return deserialize_keras_object(cfg, safe_mode=safe)
    finally:
        # the variables made here stay uninitialised: never let a later scope initialise them
        global_state.set_global_attribute("uninitialized_variables", pending)


def _stateless(config: Any) -> Any:
    """A copy without ``stateful=True``: a stateful RNN makes its state variables from tensors
    (bounded by :func:`check_config`), which Keras' StatelessScope cannot defer. They are not
    weights, so the check loses nothing."""
    if isinstance(config, list):
        return [_stateless(v) for v in config]
    if isinstance(config, dict):
        return {
            k: (False if k == "stateful" and v else _stateless(v))  # Keras tests truthiness
            for k, v in config.items()
        }
    return config


def _variables(model: Any) -> list[tuple[str, tuple[int, ...], int]]:
    """(owning layer, shape, elements) of every variable; the innermost layer owns it."""
    owner: dict[int, str] = {}
    for layer in _all_layers(model):  # outer layers first: inner ones overwrite
        for v in getattr(layer, "weights", None) or []:
            owner[id(v)] = (
                f"{type(layer).__name__} {layer.name!r}, variable {getattr(v, 'name', '?')!r}"
            )
    out = []
    for v in getattr(model, "weights", []):
        shape = tuple(int(d) for d in v.shape)
        out.append((owner.get(id(v), repr(getattr(v, "path", "?"))), shape, _prod(list(shape))))
    return out


def match(declared: list[tuple[str, tuple[int, ...], int]], stored: list[int], where: str) -> None:
    available = Counter(stored)
    for path, shape, n in sorted(declared, key=lambda d: -d[2]):
        if n < MATCH_MIN:
            break
        if available[n] <= 0:
            raise SizeError(
                f"{where}: layer {path} has the shape "
                f"{list(shape)} ({n:,} elements, {_mib(n)}) but the file stores no weight of that "
                f"size (it stores {sum(stored):,} elements in {len(stored)} arrays): Keras would "
                f"allocate it before reading the file's weights"
            )
        available[n] -= 1
    total = sum(n for _, _, n in declared)
    if total > sum(stored) + SLACK:
        raise SizeError(
            f"{where}: the model's variables hold {total:,} elements ({_mib(total)}) but the file "
            f"stores {sum(stored):,}"
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
    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(getattr(layer, "layers", None) or [])

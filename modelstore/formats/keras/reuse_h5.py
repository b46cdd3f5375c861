"""Finish a legacy ``.h5`` full-model load from the size check's own build (reuse.py's
counterpart for HDF5 files), so that Keras builds the model once.

The load's size check builds the model from the file's ``model_config`` the way Keras' legacy
loader does (``legacy_h5_format.load_model_from_hdf5``), inside ``StatelessScope``: every
layer and every variable, none initialised. ``keras.saving.load_model`` then built it all
again, initialised every variable at random and overwrote it with the stored weights. Here
the check build is made before ``check_load`` (:func:`check_build`, which ``check_load``
takes as its ``early`` build) and kept; :func:`from_build` then finishes it as the legacy
loader finishes its own: Keras' own ``load_weights_from_hdf5_group`` reads the weights into it
inside a second ``StatelessScope`` that records each assignment (with the legacy-config and
safe-mode scopes the loader has); each variable is then created once, from its stored value
(or its initialiser, for any the file does not store); then the model is compiled from the
``training_config`` the audit read (safe mode pinned, the custom objects the loader would
pass), and the optimizer's weights are loaded as the legacy loader loads them.

Only for a model config the check build did not change (``declared_by``'s ``keep``), with no
audit finding (safe mode on), on the TensorFlow backend, with the Keras internals this calls
present with the arguments it passes, and no top-level layer with a ``finalize_state`` (the
legacy loader calls it after the weights: preprocessing layers); otherwise the caller loads with
``keras.saving.load_model`` as before. The weights are read through
:func:`~modelstore.security.kerasfile.open_h5`, the checks' own open (the HDF5 guard and the
link, storage, filter and size checks of the file version opened), by Keras' readers, which
refuse soft and external links.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ...errors import FormatError, UnsafeModelError
from ...security.kerasaudit import Audit
from .loading import _pinned_safe_mode
from .reuse import _initialise, recorded

#: The callables of Keras this relies on: module, name, the arguments it passes them.
_CALLS = (
    ("legacy_h5_format", "load_weights_from_hdf5_group", {"group", "model"}),
    ("legacy_h5_format", "load_optimizer_weights_from_hdf5_group", {"group"}),
    ("saving_utils", "compile_args_from_training_config", {"training_config", "custom_objects"}),
    ("saving_utils", "try_build_compiled_arguments", {"model"}),
    ("saving_lib", "safe_get_h5_group", {"parent", "name"}),
    ("json_utils", "decode", {"json_string"}),
    ("saving_options", "keras_option_scope", {"use_legacy_config"}),
)


class H5Build:
    """The check build of an ``.h5`` file's model config, as ``check_load`` takes an early
    build: ``result`` (config, safe mode, declared variables or what the build raised) and
    ``kept`` (the built model and its uninitialised variables, when the build is the model)."""

    def __init__(self) -> None:
        self.result: tuple[dict[str, Any], bool, Any] | None = None
        self.kept: list[Any] = []


def _internals() -> dict[str, Any] | None:
    """Keras' modules this calls, when each has what is called, with those arguments."""
    try:
        import keras
        from keras.src.backend.common.stateless_scope import StatelessScope
        from keras.src.legacy.saving import (
            json_utils,
            legacy_h5_format,
            saving_options,
            saving_utils,
        )
        from keras.src.saving import saving_lib
    except ImportError:
        return None
    if keras.backend.backend() != "tensorflow" or StatelessScope is None:
        return None
    found = {
        "legacy_h5_format": legacy_h5_format,
        "saving_utils": saving_utils,
        "saving_lib": saving_lib,
        "json_utils": json_utils,
        "saving_options": saving_options,
    }
    for module, name, args in _CALLS:
        call = getattr(found[module], name, None)
        try:
            if call is None or not set(inspect.signature(call).parameters) >= args:
                return None
        except (TypeError, ValueError):
            return None
    return found


def check_build(configs: list[tuple[str, dict[str, Any], bool]], found: Audit) -> H5Build | None:
    """The load-time check build of the ``model_config`` as ``check_load`` makes it (same
    place name, safe mode on), its model kept: for a file with no audit finding, on a Keras
    this module can finish it with; None otherwise (``check_load`` builds as usual). What the
    build raises is kept for ``check_load`` to raise where it would have built."""
    from ...security.kerasbuild import declared_by

    config = next((c for name, c, _ in configs if name == "model_config"), None)
    if found.findings or config is None or _internals() is None:
        return None
    early = H5Build()
    outcome: Any
    try:
        with _pinned_safe_mode(True):
            outcome = declared_by(
                config, True, "the model config (model_config)", safe=True, keep=early.kept
            )
    except Exception as e:  # raised again by check_load, where its build would have been
        outcome = e
    early.result = (config, True, outcome)
    return early


def from_build(
    path: Path, early: H5Build | None, configs: list[tuple[str, dict[str, Any], bool]]
) -> Any:
    """The model :func:`check_build` kept, finished with the weights of the file at ``path``
    as ``keras.saving.load_model`` finishes its own; None where this cannot be done (the
    caller loads as usual). Call it with safe mode pinned on, after ``check_load`` accepted
    the build. Raises what Keras' loader raises for weights that do not fit."""
    from ...security.kerasfile import KerasFileError, open_h5

    if early is None or not early.kept or early.result is None or early.result[1] is not True:
        return None
    keras_ = _internals()
    if keras_ is None:
        return None
    model, made = early.kept.pop()
    if any(hasattr(x, "finalize_state") for x in [model, *model.layers]):
        return None  # the loader calls it after the weights: a preprocessing layer's state
    training = next((c for name, c, _ in configs if name == "training_config"), None)
    error: Exception | None = None
    try:
        with open_h5(path, "h5") as f:  # the checks' own open (cached per file version)
            try:
                if ("training_config" in f.attrs) != (training is not None):
                    return None  # an attribute the audit read no config from (empty)
                return _finish(keras_, f, model, made, training)
            except Exception as e:  # Keras' own error, not open_h5's rewording of it
                error = e
    except KerasFileError as e:  # the file changed since the checks (red team): as they say
        if e.kind == "suspicious":
            raise UnsafeModelError(f"{path}: refusing to load: {e}") from None
        raise FormatError(f"{path}: {e}") from None
    if error is not None:
        raise error
    return None


def _finish(
    keras_: dict[str, Any], f: Any, model: Any, made: list[Any], training: dict[str, Any] | None
) -> Any:
    """``load_model_from_hdf5`` from "set weights" on, for the check's model."""
    from keras.src.backend.common import global_state
    from keras.src.saving import object_registration
    from keras.src.saving.serialization_lib import SafeModeScope

    h5format, utils = keras_["legacy_h5_format"], keras_["saving_utils"]
    # the custom objects the loader merges when it starts (thread-local ones last)
    tlco = global_state.get_global_attribute("custom_objects_scope_dict", {}) or {}
    custom_objects = {**object_registration.GLOBAL_CUSTOM_OBJECTS, **tlco}

    def fill() -> None:  # the weights, each assignment recorded, no variable made
        with keras_["saving_options"].keras_option_scope(use_legacy_config=True):
            with SafeModeScope(True):
                group = keras_["saving_lib"].safe_get_h5_group(f, "model_weights")
                h5format.load_weights_from_hdf5_group(group, model)

    made, values = recorded(made, fill)
    if not _initialise(made, values):
        return None
    if training is None:
        from absl import logging

        logging.warning(  # as the legacy loader says it
            "No training configuration found in the save file, so the model was *not* "
            "compiled. Compile it manually."
        )
        return model
    # the audited config, decoded as the loader decodes the attribute
    training_config = keras_["json_utils"].decode(json.dumps(training))
    with SafeModeScope(True):
        model.compile(**utils.compile_args_from_training_config(training_config, custom_objects))
        utils.try_build_compiled_arguments(model)
        if "optimizer_weights" in f:
            _optimizer_weights(h5format, f, model)
    return model


def _optimizer_weights(h5format: Any, f: Any, model: Any) -> None:
    """The optimizer's state, exactly as ``load_model_from_hdf5`` sets it."""
    from absl import logging
    from keras.src import optimizers

    try:
        if isinstance(model.optimizer, optimizers.Optimizer):
            model.optimizer.build(model._trainable_variables)
        else:
            model.optimizer._create_all_weights(model._trainable_variables)
    except (NotImplementedError, AttributeError):
        logging.warning(
            "Error when creating the weights of optimizer {}, making it impossible to "
            "restore the saved optimizer state. As a result, your model is starting with "
            "a freshly initialized optimizer."
        )
    values = h5format.load_optimizer_weights_from_hdf5_group(f)
    try:
        model.optimizer.set_weights(values)
    except ValueError:
        logging.warning(
            "Error in loading the saved optimizer state. As a result, your model is "
            "starting with a freshly initialized optimizer."
        )

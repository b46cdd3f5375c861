"""Finish a ``.keras`` load from the size check's own build, so that Keras builds it once.

The load's size check (:func:`~modelstore.security.kerasbuild.declared_by`) builds the model
from the archive's config the way Keras' loader does, inside ``StatelessScope``: every layer
and every variable, none initialised. ``keras.saving.load_model`` then built it all again and
initialised every variable at random before overwriting it with the stored weights. Here the
check's model is finished instead, as ``saving_lib._load_model_from_fileobj`` finishes the
model it builds: the weights and assets are read by Keras' own ``_load_state`` in a second
``StatelessScope`` that records each assignment; each of the build's variables is then
created once, from its stored value (or from its initialiser, for any Keras does not store);
then the model is compiled from the config's ``compile_config`` (safe mode pinned; the
optimizer needs real variables to build) and the state the compile added (the optimizer's)
is read by the same walk.

Only for a config the check build did not change (no ``Normalization`` given statistics, no
stateful layer: :func:`~modelstore.security.kerasbuild.declared_by`'s ``keep``), with no
audit finding (safe mode on), on the TensorFlow backend, with the Keras internals this relies
on present; otherwise :func:`finish` returns None and the caller loads with
``keras.saving.load_model`` as before. The config was read from the checked archive; the
weights are read, as Keras reads them, from the file the caller names, and only if its
weights member is the one the checks saw.
"""

from __future__ import annotations

import inspect
import io
import zipfile
from collections.abc import Callable
from typing import Any

from ...errors import IntegrityError

#: ``saving_lib._load_state``'s and ``_load_container_state``'s keyword arguments, as this
#: module calls them.
_LOAD_STATE_ARGS = {
    "weights_store",
    "skip_mismatch",
    "assets_store",
    "inner_path",
    "visited_saveables",
    "failed_saveables",
    "error_msgs",
}


def _internals() -> Any:
    """Keras' saving module when it has what this relies on, else None."""
    try:
        import keras
        from keras.src.backend.common import global_state
        from keras.src.backend.common.stateless_scope import StatelessScope
        from keras.src.saving import saving_lib
    except ImportError:
        return None
    if keras.backend.backend() != "tensorflow" or global_state is None or StatelessScope is None:
        return None
    needed = (
        "_load_state",
        "_load_container_state",
        "_walk_saveable",
        "_raise_loading_failure",
        "H5IOStore",
        "DiskIOStore",
        "is_memory_sufficient",
    )
    if not all(hasattr(saving_lib, n) for n in needed):
        return None
    for load in (saving_lib._load_state, saving_lib._load_container_state):
        if not set(inspect.signature(load).parameters) >= _LOAD_STATE_ARGS:
            return None
    return saving_lib


def finish(
    path: str,
    built: tuple[Any, list[Any]],
    config: dict[str, Any],
    member: tuple[int, int, int, int] | None,
) -> Any:
    """The model of ``built`` (the check build of ``config``, and the variables it made)
    with the weights and assets of the archive at ``path``, as ``keras.saving.load_model``
    would return it; None where this cannot be done (the caller loads as usual). Call it with
    Keras' safe mode pinned on, after the size check has matched the build with the stored
    weights, and ``member`` what the checked archive recorded of its weights (size, stored
    size, CRC, offset): an archive that now says otherwise was rewritten since the checks
    (IntegrityError: the caller's consistent read starts again), and no more than the checked
    size is inflated. Raises what Keras' loader raises for weights that do not fit."""
    saving_lib = _internals()
    if saving_lib is None:
        return None
    from keras.src.saving.keras_saveable import KerasSaveable
    from keras.src.saving.serialization_lib import SafeModeScope

    model, made = built
    failed: set[Any] = set()
    errors: dict[Any, Any] = {}
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        if "model.weights.h5" not in names or not saving_lib.is_memory_sufficient(model):
            return None  # Keras' loader extracts the weights to disk first: let it
        i = zf.getinfo("model.weights.h5")
        if (i.file_size, i.compress_size, i.CRC, i.header_offset) != member:
            raise IntegrityError(f"{path}: the archive changed while it was loaded")
        with zf.open(i) as stream:  # at most what was checked, its CRC checked at the end
            data = stream.read(i.file_size + 1)
        if len(data) != i.file_size:
            raise IntegrityError(f"{path}: the archive changed while it was loaded")
        store = saving_lib.H5IOStore(io.BytesIO(data), mode="r")
        del data
        assets = (  # as Keras' loader decides (modelstore's entry counts too)
            saving_lib.DiskIOStore("assets", archive=zf, mode="r") if len(names) > 3 else None
        )

        visited: set[int] = set()

        def load_state(saveable: Any, inner_path: str) -> None:
            # as Keras' _load_state walks a child: a saveable, or a container of them
            load = saving_lib._load_state
            if not isinstance(saveable, KerasSaveable):
                load = saving_lib._load_container_state
            load(
                saveable,
                weights_store=store,
                assets_store=assets,
                inner_path=inner_path,
                skip_mismatch=False,
                visited_saveables=visited,
                failed_saveables=failed,
                error_msgs=errors,
            )

        try:
            # the model's own state, each assignment recorded, none made
            made, values = recorded(made, lambda: load_state(model, ""))
            if not _initialise(made, values):
                return None
            compile_config = config.get("compile_config")
            if compile_config:  # as Keras' loader has it: compiled, then the optimizer's state
                saveables = _saveables(model)
                with SafeModeScope(True):
                    model.compile_from_config(compile_config)
                model.compiled = True
                for attr, saveable in _saveables(model).items():  # what the compile added
                    if saveables.get(attr) is not saveable:
                        load_state(saveable, attr)
        finally:
            store.close()
            if assets is not None:
                assets.close()
    if failed:
        saving_lib._raise_loading_failure(errors)
    return model


def recorded(made: list[Any], fill: Callable[[], Any]) -> tuple[list[Any], dict[int, Any]]:
    """Run ``fill`` inside a ``StatelessScope`` that records each assignment and makes no
    variable: (``made`` and the variables ``fill`` made, the assignments by variable);
    Keras' list of uninitialised variables is left as it was."""
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with StatelessScope(initialize_variables=False) as scope:
            fill()
        before = {id(v) for v in pending}
        now = global_state.get_global_attribute("uninitialized_variables", []) or []
        return [*made, *(v for v in now if id(v) not in before)], scope.state_mapping
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def _initialise(made: list[Any], values: dict[int, Any]) -> bool:
    """Create each variable the build made once: from the value the load assigned it, or
    from its initialiser where the file stores none (as Keras' load leaves it). False if an
    assignment went to a variable not among them."""
    for variable in made:
        value = values.pop(id(variable), None)
        if value is None:
            variable._deferred_initialize()
        else:
            variable._initialize(value)
            variable._initializer = None
    return not values


def _saveables(model: Any) -> dict[str, Any]:
    """The model's attributes Keras' ``_load_state`` walks into: saveables, and containers
    holding any."""
    from keras.src.saving import saving_lib
    from keras.src.saving.keras_saveable import KerasSaveable

    def holds(obj: Any) -> bool:
        if isinstance(obj, KerasSaveable):
            return True
        if isinstance(obj, dict):
            obj = list(obj.values())
        return isinstance(obj, (list, tuple)) and any(isinstance(o, KerasSaveable) for o in obj)

    return {k: v for k, v in saving_lib._walk_saveable(model) if holds(v)}


def from_early(path: str, early: Any, configs: list[tuple[str, dict[str, Any], bool]]) -> Any:
    """:func:`finish` for the model an ``EarlyBuild`` kept, if it built exactly this archive's
    config in safe mode (what the size check used); None otherwise."""
    kept, result = getattr(early, "kept", None), getattr(early, "result", None)
    if not kept or result is None or result[1] is not True:
        return None
    config = next((c for name, c, _ in configs if name == "config.json"), None)
    if config is None or result[0] != config:
        return None
    return finish(path, kept.pop(), config, getattr(early, "member", None))

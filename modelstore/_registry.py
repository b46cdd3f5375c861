"""Which backend handles which file or object.

The built-in backends are one visible table of import strings; a backend module is imported
the first time it is needed (backend modules import no framework at module level). Third-party
backends come from the ``modelstore.backends`` entry-point group, read on the first lookup
that the built-ins and ``register()`` cannot answer, never at import.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BackendWarning, FormatError, RegistryError, UnsupportedModelError

if TYPE_CHECKING:
    from .backends._base import Backend

ENTRY_POINT_GROUP = "modelstore.backends"


@dataclass(frozen=True)
class BackendEntry:
    """One row of the table: name, ``"module:Class"``, the extra that installs it, suffixes."""

    name: str
    target: str
    extra: str | None
    suffixes: tuple[str, ...]


#: Built-in backends, in the order they are tried for sniffing and for saving objects.
BUILTIN: tuple[BackendEntry, ...] = (
    BackendEntry("safetensors", "modelstore.backends.safetensors_:SafetensorsBackend", "torch",
                 (".safetensors",)),
    BackendEntry("torch", "modelstore.backends.torch_:TorchBackend", "torch", (".pt", ".pth")),
    BackendEntry("sklearn", "modelstore.backends.sklearn_:SklearnBackend", "sklearn",
                 (".joblib", ".pkl", ".pickle")),
    BackendEntry("keras", "modelstore.backends.keras_:KerasBackend", "keras",
                 (".keras", ".h5", ".hdf5", ".weights.h5")),
    BackendEntry("onnx", "modelstore.backends.onnx_:OnnxBackend", "onnx", (".onnx",)),
)


class Registry:
    def __init__(self, builtin: tuple[BackendEntry, ...] = BUILTIN) -> None:
        self._entries: dict[str, BackendEntry | Backend] = {e.name: e for e in builtin}
        self._builtin = frozenset(e.name for e in builtin)
        self._instances: dict[str, Backend] = {}
        self._plugins_read = False
        self._lock = threading.RLock()

    # -- table -------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._read_plugins()
        return list(self._entries)

    def register(self, backend: Any, *, clobber: bool = False) -> None:
        instance = _instantiate(backend)
        with self._lock:
            if instance.name in self._entries and not clobber:
                kind = "built-in" if instance.name in self._builtin else "registered"
                msg = (
                    f"a {kind} backend is already named {instance.name!r}; choose another name, "
                    f"or pass clobber=True to replace it"
                )
                raise RegistryError(msg)
            self._entries[instance.name] = instance
            self._instances[instance.name] = instance

    def unregister(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)
            self._instances.pop(name, None)

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._entries:
                self._read_plugins()
            if name not in self._entries:
                known = ", ".join(self._entries)
                raise FormatError(f"unknown format {name!r}; known formats: {known}")
            if name not in self._instances:
                entry = self._entries[name]
                assert isinstance(entry, BackendEntry)
                self._instances[name] = _instantiate(_import(entry.target))
            return self._instances[name]

    def all(self) -> list[Backend]:
        self._read_plugins()
        out = []
        for name in list(self._entries):
            try:
                out.append(self.get(name))
            except (ImportError, RegistryError, FormatError) as e:
                warnings.warn(f"backend {name!r} cannot be used: {e}", BackendWarning, stacklevel=3)
        return out

    # -- lookups -----------------------------------------------------------------------
    def for_suffix(self, path: Path) -> list[str]:
        """Backend names whose suffix matches ``path``, longest suffix first."""
        name = path.name.lower()
        for attempt in range(2):
            hits = []
            for key, entry in self._entries.items():
                for s in entry.suffixes:
                    if name.endswith(s.lower()):
                        hits.append((len(s), key))
            if hits or attempt:
                return [k for _, k in sorted(hits, key=lambda h: -h[0])]
            self._read_plugins()
        return []

    def sniff(self, path: Path, head: bytes) -> str | None:
        for backend in self.all():
            try:
                if backend.sniff(path, head):
                    return backend.name
            except (OSError, ValueError):
                continue
        return None

    def for_object(self, obj: Any, action: str = "save") -> Backend:
        for attempt in range(2):
            for name in list(self._entries):
                if attempt == 0 and name not in self._builtin and name not in self._instances:
                    continue
                backend = self.get(name)
                if backend.can_save(obj) if action == "save" else backend.can_predict(obj):
                    return backend
            self._read_plugins()
        msg = (
            f"no backend can {action} an object of type {type(obj).__module__}.{type(obj).__qualname__}; "
            f"supported: torch modules and dicts of tensors, scikit-learn estimators, Keras models "
            f"(formats: {', '.join(self._entries)})"
        )
        raise UnsupportedModelError(msg)

    # -- plugins -----------------------------------------------------------------------
    def _read_plugins(self) -> None:
        with self._lock:
            if self._plugins_read:
                return
            self._plugins_read = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    instance = _instantiate(ep.load())
                except Exception as e:  # a broken plugin must not break modelstore
                    warnings.warn(f"modelstore backend plugin {ep.name!r} ({ep.value}) failed to load: "
                                  f"{type(e).__name__}: {e}", BackendWarning, stacklevel=4)
                    continue
                if instance.name in self._entries:
                    warnings.warn(f"modelstore backend plugin {ep.value} is named {instance.name!r}, "
                                  f"which is taken; it was ignored", BackendWarning, stacklevel=4)
                    continue
                self._entries[instance.name] = instance
                self._instances[instance.name] = instance


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _instantiate(backend: Any) -> Backend:
    from .backends._base import Backend

    if isinstance(backend, str):
        backend = _import(backend)
    instance = backend() if isinstance(backend, type) else backend
    if not isinstance(instance, Backend):
        raise RegistryError(f"{backend!r} is not a modelstore Backend (subclass modelstore.backends.Backend)")
    if not instance.name or not instance.name.replace("_", "").isalnum():
        raise RegistryError(f"backend {type(instance).__name__} needs a short lowercase name")
    if any(not s.startswith(".") for s in instance.suffixes):
        raise RegistryError(f"backend {instance.name!r}: suffixes must start with a dot")
    return instance


REGISTRY = Registry()

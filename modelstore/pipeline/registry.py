"""Which backend handles which file or object.

The built-in backends are one visible table of import strings; a backend module is imported
the first time it is needed (backend modules import no framework at module level). Third-party
backends are added by ``register()``, or read from the ``modelstore.backends`` entry-point
group by an explicit :func:`refresh_backends` call, never as a side effect of reading a file:
the folder a model sits in is often the working directory, and then on ``sys.path``, so a
``*.dist-info`` planted beside a model must never be imported. Only installed distributions
count (their ``*.dist-info`` folder lies in site-packages, the standard library or a folder a
``.pth`` file there adds; see :mod:`modelstore.security.origin`), and their entry-point module
must be imported from such a place too.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendWarning, FormatError, RegistryError, UnsupportedModelError

if TYPE_CHECKING:
    from ..formats.base import Backend

ENTRY_POINT_GROUP = "modelstore.backends"
#: Suffixes modelstore itself writes beside models: no registered backend may claim them.
RESERVED_SUFFIXES = (".modelstore.json", ".index.json")


@dataclass(frozen=True)
class BackendEntry:
    """One row of the table: name, ``"module:Class"``, the extra that installs it, suffixes."""

    name: str
    target: str
    extra: str | None
    suffixes: tuple[str, ...]


#: Built-in backends, in the order they are tried for sniffing and for saving objects.
BUILTIN: tuple[BackendEntry, ...] = (
    BackendEntry(
        "safetensors",
        "modelstore.formats.safetensors.backend:SafetensorsBackend",
        "torch",
        (".safetensors", ".safetensors.index.json"),
    ),
    BackendEntry(
        "torch",
        "modelstore.formats.torch.backend:TorchBackend",
        "torch",
        (".pt", ".pth", ".bin.index.json"),
    ),
    BackendEntry(
        "sklearn",
        "modelstore.formats.sklearn.backend:SklearnBackend",
        "sklearn",
        (".joblib", ".pkl", ".pickle"),
    ),
    BackendEntry(
        "keras",
        "modelstore.formats.keras.backend:KerasBackend",
        "keras",
        (".keras", ".h5", ".hdf5", ".weights.h5"),
    ),
    BackendEntry("onnx", "modelstore.formats.onnx.backend:OnnxBackend", "onnx", (".onnx",)),
    BackendEntry(
        "numpy", "modelstore.formats.numpy.backend:NumpyBackend", "numpy", (".npy", ".npz")
    ),
    BackendEntry(
        "xgboost", "modelstore.formats.xgboost.backend:XGBoostBackend", "xgboost", (".ubj",)
    ),
    BackendEntry(
        "lightgbm", "modelstore.formats.lightgbm.backend:LightGBMBackend", "lightgbm", (".lgb",)
    ),
    BackendEntry("skops", "modelstore.formats.skops.backend:SkopsBackend", "skops", (".skops",)),
    BackendEntry("pt2", "modelstore.formats.torch.pt2:Pt2Backend", "torch", (".pt2",)),
    BackendEntry("gguf", "modelstore.formats.gguf.backend:GGUFBackend", "numpy", (".gguf",)),
)


class Registry:
    def __init__(self, builtin: tuple[BackendEntry, ...] = BUILTIN) -> None:
        self._entries: dict[str, BackendEntry | Backend] = {e.name: e for e in builtin}
        self._builtin = frozenset(e.name for e in builtin)
        self._instances: dict[str, Backend] = {}
        self._plugins: dict[str, str] = {}  # entry point value -> the backend name it added
        self._lock = threading.RLock()
        #: bumped on every change of the table: caches keyed on it (predict) start afresh
        self.generation = 0

    # -- table -------------------------------------------------------------------------
    def names(self) -> list[str]:
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
            self.generation += 1

    def unregister(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)
            self._instances.pop(name, None)
            self._plugins = {value: n for value, n in self._plugins.items() if n != name}
            self.generation += 1

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._entries:
                known = ", ".join(self._entries)
                msg = (
                    f"unknown format {name!r}; known formats: {known} (installed plugins are added "
                    f"by modelstore.refresh_backends())"
                )
                raise FormatError(msg)
            if name not in self._instances:
                entry = self._entries[name]
                assert isinstance(entry, BackendEntry)
                self._instances[name] = _instantiate(_import(entry.target))
            return self._instances[name]

    def all(self) -> list[Backend]:
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
        hits = []
        for key, entry in list(self._entries.items()):
            for s in entry.suffixes:
                if name.endswith(s.lower()):
                    hits.append((len(s), key))
        return [k for _, k in sorted(hits, key=lambda h: -h[0])]

    def sniff(self, path: Path, head: bytes) -> str | None:
        for backend in self.all():
            try:
                if backend.sniff(path, head):
                    return backend.name
            except (OSError, ValueError):
                continue
        return None

    def for_object(self, obj: Any, action: str = "save") -> Backend:
        """The backend that saves (or runs) ``obj``: of those able to, the highest
        ``priority``; among equals the first in the table (built-ins first)."""
        able = []
        for name in list(self._entries):
            backend = self.get(name)
            if backend.exports_to and action == "save":
                continue  # an export target saves other frameworks' objects only when asked
            if backend.can_save(obj) if action == "save" else backend.can_predict(obj):
                able.append(backend)
        if able:
            return max(able, key=lambda b: b.priority)  # max keeps the first of equals
        msg = (
            f"no backend can {action} an object of type {type(obj).__module__}.{type(obj).__qualname__}; "
            f"supported: torch modules and dicts of tensors, scikit-learn estimators, Keras models "
            f"(formats: {', '.join(self._entries)})"
        )
        hint = next(
            (h for h in (self.get(n).object_hint(obj) for n in list(self._entries)) if h), None
        )
        if hint and action == "save":
            msg = f"a {type(obj).__qualname__} cannot be saved as a model: {hint}"
        raise UnsupportedModelError(msg)

    def entry_file(self, names: list[str]) -> tuple[Backend, str] | None:
        """The backend and main file of a folder holding ``names``, if a backend claims it."""
        for backend in self.all():
            found = backend.entry_file(names)
            if found is not None:
                return backend, found
        return None

    def alternatives(self, name: str) -> list[str]:
        """Names a save to ``name`` may have written the model under instead."""
        out: list[str] = []
        for key in self.for_suffix(Path(name)):
            out += self.get(key).alternatives(name)
        return out

    # -- plugins -----------------------------------------------------------------------
    def refresh(self) -> list[str]:
        """Read the installed plugins' entry points; the names of the backends added."""
        from importlib.metadata import distributions

        from ..security.origin import installed_locations

        installed_locations.cache_clear()  # a plugin may have been installed since
        added: list[str] = []
        with self._lock:
            seen: set[str] = set()
            for dist in distributions():
                points = _plugin_entry_points(dist)
                if not points:
                    continue
                folder = _dist_folder(dist)
                if folder is None:
                    for ep in points:
                        _warn(
                            f"modelstore backend plugin {ep.value} was skipped: {_not_installed(dist)}"
                        )
                    continue
                key = _dist_key(dist)
                if key in seen:
                    continue  # an earlier copy on sys.path wins, as it would for an import
                seen.add(key)
                for ep in points:
                    name = self._load_plugin(ep)
                    if name:
                        added.append(name)
        return added

    def _load_plugin(self, ep: Any) -> str | None:
        if ep.value in self._plugins:
            return None  # read by an earlier refresh
        try:
            instance = _instantiate(_load_entry_point(ep.value))
        except Exception as e:  # a broken or refused plugin must not break modelstore
            _warn(
                f"modelstore backend plugin {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
            )
            return None
        if instance.name in self._entries:
            _warn(
                f"modelstore backend plugin {ep.value} is named {instance.name!r}, which is taken; it was ignored"
            )
            return None
        self._plugins[ep.value] = instance.name
        self._entries[instance.name] = instance
        self._instances[instance.name] = instance
        self.generation += 1
        return instance.name


def _warn(message: str) -> None:
    # refresh_backends -> Registry.refresh -> here: the caller's line is three frames up
    warnings.warn(message, BackendWarning, stacklevel=4)


def _plugin_entry_points(dist: Any) -> list[Any]:
    try:
        return list(dist.entry_points.select(group=ENTRY_POINT_GROUP))
    except Exception:  # a malformed entry_points.txt: no plugin from it
        return []


def _dist_folder(dist: Any) -> Path | None:
    """The folder holding the distribution's metadata, if it is an installed location."""
    from ..security.origin import is_installed_location

    try:
        folder = Path(dist.locate_file(""))
    except Exception:
        return None
    return folder if folder.is_dir() and is_installed_location(folder) else None


def _not_installed(dist: Any) -> str:
    path = getattr(dist, "_path", None)  # PathDistribution's folder; other kinds have none
    where = os.path.abspath(str(path)) if path is not None else "(no folder)"
    return (
        f"its metadata {where} is not in an installed location (site-packages or the standard "
        f"library), so it may be a file beside a model rather than a package you installed; "
        f"install it with pip to use it"
    )


def _dist_key(dist: Any) -> str:
    name = ""
    try:
        name = str(dist.metadata["Name"] or "")
    except Exception:
        pass
    return name.lower().replace("-", "_").replace(".", "_") or str(getattr(dist, "_path", id(dist)))


def _load_entry_point(value: str) -> Any:
    """``module:attr.attr`` imported through the origin check (no folder on sys.path is trusted)."""
    from ..security.origin import import_trusted

    module_name, _, attrs = value.partition(":")
    obj: Any = import_trusted(module_name.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _instantiate(backend: Any) -> Backend:
    from ..formats.base import Backend

    if isinstance(backend, str):
        backend = _import(backend)
    instance = backend() if isinstance(backend, type) else backend
    if not isinstance(instance, Backend):
        raise RegistryError(
            f"{backend!r} is not a modelstore Backend (subclass modelstore.backends.Backend)"
        )
    if not instance.name or not instance.name.replace("_", "").isalnum():
        raise RegistryError(f"backend {type(instance).__name__} needs a short lowercase name")
    if any(not s.startswith(".") for s in instance.suffixes):
        raise RegistryError(f"backend {instance.name!r}: suffixes must start with a dot")
    if type(instance).__module__.split(".")[0] != "modelstore":
        claimed = [
            s for s in instance.suffixes if any(s.lower().endswith(r) for r in RESERVED_SUFFIXES)
        ]
        if claimed:
            msg = (
                f"backend {instance.name!r} claims {', '.join(claimed)}, which modelstore reserves "
                f"for its own files ({', '.join(RESERVED_SUFFIXES)}); choose another suffix"
            )
            raise RegistryError(msg)
    if type(instance.priority) is not int:
        raise RegistryError(f"backend {instance.name!r}: priority must be an int")
    return instance


REGISTRY = Registry()


def refresh_backends() -> list[str]:
    """Add the backends of installed plugins (the ``modelstore.backends`` entry-point group).

    Plugins are never read as a side effect of ``load``, ``inspect`` or ``scan``: call this
    once, after installing a plugin. Only installed distributions are read (their metadata
    in site-packages, the standard library or a folder a ``.pth`` file there adds), and their
    module is imported only from such a place: a ``*.dist-info`` or module in the working
    directory or another ``sys.path`` folder is skipped with a :class:`BackendWarning` saying
    why, as is a plugin that fails to load or whose name is taken. Calling it again reads
    plugins installed since.

    Returns
    -------
    The names of the backends this call added.

    Examples
    --------
    >>> ms.refresh_backends()
    ['myformat']
    """
    return REGISTRY.refresh()

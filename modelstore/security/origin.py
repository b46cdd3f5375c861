"""Import a module only from the standard library or the installed packages.

A model's folder is often the working directory (notebooks, ``python -m``, ``python -c``), and
then ``''`` or the folder itself is first on ``sys.path``: a ``fractions.py`` or a
``sklearn/`` planted beside the model would be imported in place of the real one the first
time anything imports that name. :func:`import_trusted` decides where a module *would* come
from without importing it (``importlib.util.find_spec`` on a top-level name imports nothing;
on ``a.b`` it imports ``a``, so each parent is checked, then imported, level by level) and
imports it only when every level comes from a trusted place:

- a built-in or frozen module;
- a file whose import root is an *installed location*: the standard library
  (``sysconfig``'s ``stdlib``/``platstdlib`` of the base interpreter, their ``lib-dynload``,
  the ``pythonXY.zip``), a site-packages directory (``site.getsitepackages()``,
  ``sysconfig``'s ``purelib``/``platlib``, the user site when it is enabled), or a folder
  that a ``.pth`` file in one of those adds (how legacy editable installs are found).

The import root is the ``sys.path`` entry the file was found under (for ``a.b.c`` in
``ROOT/a/b/c.py``, ``ROOT``), compared after resolving links, so a planted file never passes
because its folder happens to sit inside an installed location. A module already in
``sys.modules`` is trusted only if its ``__spec__``/``__file__`` passes the same check.
What a trusted module imports in turn is found the same way: while it is imported,
``sys.path`` holds only installed locations (and modelstore's own root), so ``numpy.random``
importing ``secrets`` never finds a ``secrets.py`` planted in the working directory. Modules
installed through an editable-install import hook, not a ``.pth`` folder, are not trusted.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import MissingDependencyError, UnsafeModelError

__all__ = [
    "import_trusted",
    "installed_locations",
    "is_installed_location",
    "trusted_origin",
    "untrusted_reason",
]


#: The folder the running modelstore package was imported from.
_OWN_ROOT = os.path.realpath(Path(__file__).resolve().parents[2])


@functools.lru_cache(maxsize=1)
def installed_locations() -> frozenset[str]:
    """Resolved paths of the standard library, site-packages and their ``.pth`` folders."""
    base = {
        "base": sys.base_prefix,
        "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix,
        "installed_platbase": sys.base_exec_prefix,
    }
    stdlib = {
        sysconfig.get_path("stdlib", vars=base),
        sysconfig.get_path("platstdlib", vars=base),
        os.path.dirname(os.__file__),
    }
    roots = set(stdlib) | {os.path.join(p, "lib-dynload") for p in stdlib}
    roots.add(
        os.path.join(
            sys.base_prefix, "lib", f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
        )
    )
    sites = set(site.getsitepackages()) | {
        sysconfig.get_path("purelib"),
        sysconfig.get_path("platlib"),
    }
    if site.ENABLE_USER_SITE:
        sites.add(site.getusersitepackages())
    for folder in list(sites):
        sites.update(_pth_folders(folder))
    return frozenset(os.path.realpath(p) for p in roots | sites if p)


def _pth_folders(site_dir: str) -> list[str]:
    """Folders the ``.pth`` files of an installed site directory put on ``sys.path``."""
    try:
        names = sorted(n for n in os.listdir(site_dir) if n.endswith(".pth"))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            lines = Path(site_dir, name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                folder = os.path.join(site_dir, line)
                if os.path.isdir(folder):
                    found.append(folder)
    return found


def is_installed_location(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (a ``sys.path`` entry) is the stdlib, a site-packages or a ``.pth`` folder."""
    return os.path.realpath(os.fspath(folder)) in installed_locations()


def _spec_problem(name: str, spec: Any) -> str | None:
    """Why the module ``name`` described by ``spec`` is not from an installed place (None: it is)."""
    loader = getattr(spec, "loader", None)
    if spec.origin in ("built-in", "frozen") or loader in (
        importlib.machinery.BuiltinImporter,
        importlib.machinery.FrozenImporter,
    ):
        return None
    depth = name.count(".") + 1
    locations = list(spec.submodule_search_locations or [])
    if spec.origin is None or not spec.has_location:
        if not locations:
            return "it has no file to check where it comes from"
        # a namespace package: every folder of it must sit under an installed root
        files = [os.path.join(p, "__init__.py") for p in locations]
    else:
        files = [spec.origin]
    for file in files:
        problem = _file_problem(name, os.path.abspath(file), depth, package=bool(locations))
        if problem:
            return problem
    return None


def _file_problem(name: str, file: str, depth: int, *, package: bool) -> str | None:
    path = Path(file)
    levels = depth if package else depth - 1  # ROOT/a/b/__init__.py or ROOT/a/b.py
    if len(path.parents) <= levels:
        return f"it would come from {file}, which is not inside a package folder"
    root = path.parents[levels]
    expected = name.split(".")[:-1] if not package else name.split(".")
    found = list(path.relative_to(root).parts[:-1])
    stem = path.name.split(".")[0]
    if found != expected or (not package and stem != name.rpartition(".")[2]):
        return f"it would come from {file}, which is not where the module {name} lives in a package"
    # modelstore's own modules come from where the running modelstore does (a checkout, too)
    own = name.split(".")[0] == "modelstore" and os.path.realpath(root) == _OWN_ROOT
    if not own and not is_installed_location(root):
        return (
            f"it would come from {file}, outside the standard library and the installed packages "
            f"(its folder {root} is not a site-packages directory)"
        )
    return None


def _find(name: str) -> Any:
    """The spec ``name`` would be imported from; its parent must already be imported."""
    module = sys.modules.get(name)
    if module is not None:
        spec = getattr(module, "__spec__", None)
        if spec is None:
            file = getattr(module, "__file__", None)
            if file is None:
                return (
                    importlib.machinery.ModuleSpec(name, None, origin="built-in")
                    if name in sys.builtin_module_names
                    else importlib.machinery.ModuleSpec(name, None)
                )
            return importlib.util.spec_from_file_location(name, file)
        return spec
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def untrusted_reason(module_name: str) -> str | None:
    """Why ``module_name`` would not come from an installed place (None: it would), importing nothing.

    A dotted name whose parent is not imported yet is looked for in the parent's folders
    (what its import would use unless the parent changes its ``__path__``, which
    :func:`import_trusted` checks again after importing the parent).
    """
    parts = module_name.split(".")
    if not all(p.isidentifier() for p in parts):
        return f"{module_name!r} is not a module name"
    spec = None
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if i == 1 or ".".join(parts[: i - 1]) in sys.modules:
            spec = _find(name)
        else:
            search = list(getattr(spec, "submodule_search_locations", None) or [])
            spec = importlib.machinery.PathFinder.find_spec(name, search) if search else None
        if spec is None:
            return f"no module named {name} is installed"
        problem = _spec_problem(name, spec)
        if problem:
            return f"module {name}: {problem}"
    return None


def trusted_origin(module_name: str) -> bool:
    """Whether ``module_name`` and every parent would come from the stdlib or installed packages."""
    return untrusted_reason(module_name) is None


def import_trusted(module_name: str) -> ModuleType:
    """Import ``module_name`` only if it, and each parent first, comes from an installed place.

    Raises :class:`UnsafeModelError` naming the file it would come from when a level is
    outside the standard library and the installed packages (nothing from it is imported),
    and :class:`MissingDependencyError` when the module is not installed at all.
    """
    known = _VERIFIED.get(module_name)
    if known is not None and sys.modules.get(module_name) is known:
        return known  # this very module object passed before (a module's file never changes)
    parts = module_name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise UnsafeModelError(f"{module_name!r} is not a module name", untrusted=[module_name])
    module: ModuleType | None = None
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        known = _VERIFIED.get(name)
        if known is not None and sys.modules.get(name) is known:
            module = known
            continue
        spec = _find(name)  # the parent, if any, is imported and was checked at the level before
        if spec is None:
            msg = f"no module named {name} is installed; install the package that provides it"
            raise MissingDependencyError(msg, name=name)
        _refuse(name, _spec_problem(name, spec))
        with _installed_path_only():
            module = importlib.import_module(name)
        # what was imported is what was checked, unless the folder changed in between
        _refuse(name, _spec_problem(name, _find(name)))
        _VERIFIED[name] = module
    assert module is not None
    return module


_PATH_LOCK = threading.RLock()


@contextlib.contextmanager
def _installed_path_only() -> Iterator[None]:
    """``sys.path`` without the working directory and other folders outside the installed
    locations, for the duration of one trusted import (and everything it imports in turn)."""
    with _PATH_LOCK:
        saved = list(sys.path)
        sys.path[:] = [
            p for p in saved if p and (is_installed_location(p) or os.path.realpath(p) == _OWN_ROOT)
        ]
        try:
            yield
        finally:
            sys.path[:] = saved


#: Modules that passed, by name: the same object still in sys.modules needs no second look.
_VERIFIED: dict[str, ModuleType] = {}


def _refuse(name: str, problem: str | None) -> None:
    if problem:
        msg = f"refused to import {name}: {problem}; move the file away or run from another folder"
        raise UnsafeModelError(msg, untrusted=[name])

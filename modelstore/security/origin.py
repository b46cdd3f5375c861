"""Import a module named by a file only if it comes from installed code.

A notebook, ``python -m`` or ``python -c`` puts the working directory first on ``sys.path``;
if that is the folder a model came in, a planted ``fractions.py`` or ``sklearn/`` would be
imported by a pickle that names ``fractions.Fraction``. :func:`import_trusted` checks, level
by level and before importing anything, that each package would come from the standard
library, a built-in or frozen module, or a site-packages directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import site
import sys
import sysconfig
from functools import lru_cache
from types import ModuleType

from ..errors import UnsafeModelError


@lru_cache(maxsize=1)
def trusted_roots() -> tuple[str, ...]:
    """Directories installed code lives in: the stdlib and every site-packages."""
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(paths[key])
    for getter in (site.getsitepackages, lambda: [site.getusersitepackages()]):
        try:
            roots.update(getter())
        except Exception:  # some embedded interpreters lack them
            pass
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        roots.add(os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    real = {os.path.realpath(r) for r in roots if r}
    return tuple(sorted(r.rstrip(os.sep) + os.sep for r in real))


def _trusted_file(path: str | None) -> bool:
    if path is None:
        return False
    real = os.path.realpath(path)
    return any(real.startswith(root) for root in trusted_roots())


def _spec_trusted(spec: object) -> tuple[bool, str]:
    origin = getattr(spec, "origin", None)
    if origin in ("built-in", "frozen"):
        return True, origin
    if origin is None or origin == "namespace":
        locations = list(getattr(spec, "submodule_search_locations", None) or [])
        return bool(locations) and all(_trusted_file(loc) for loc in locations), ", ".join(locations)
    return _trusted_file(origin), str(origin)


def _module_trusted(module: ModuleType) -> tuple[bool, str]:
    spec = getattr(module, "__spec__", None)
    if spec is not None:
        return _spec_trusted(spec)
    if module.__name__ in sys.builtin_module_names:
        return True, "built-in"
    file = getattr(module, "__file__", None)
    return _trusted_file(file), str(file)


def import_trusted(name: str) -> ModuleType:
    """Import ``name`` (and its parent packages) only from installed code.

    Raises UnsafeModelError if some level would come from elsewhere, ModuleNotFoundError if
    it does not exist.
    """
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        loaded = sys.modules.get(sub)
        if loaded is not None:
            ok, where = _module_trusted(loaded)
        else:
            spec = importlib.util.find_spec(sub)  # imports the (already checked) parent only
            if spec is None:
                raise ModuleNotFoundError(f"No module named {sub!r}", name=sub)
            ok, where = _spec_trusted(spec)
        if not ok:
            msg = (f"refusing to import {sub!r} for a model file: it would come from {where}, outside "
                   f"the standard library and installed packages (a module planted beside the model?)")
            raise UnsafeModelError(msg, [name])
        if loaded is None:
            importlib.import_module(sub)
    return sys.modules[name]

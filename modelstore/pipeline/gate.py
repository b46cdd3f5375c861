"""The one trust decision: from the backend's declared risk and the scan, before anything is
deserialised. No backend can skip it by declaring itself safe: only the built-in table's
``safe`` formats (no code path in their loaders) pass without a scan."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import _warn
from ..errors import ArgumentError, PickleWarning
from ..formats.base import Backend
from ..security import enforce
from .registry import BUILTIN


def checked_trust(trust: Any) -> bool | list[str]:
    if not (
        trust is True
        or trust is False
        or (isinstance(trust, (list, tuple, set)) and all(isinstance(t, str) for t in trust))
    ):
        raise ArgumentError("trust must be True, False or a list of 'module.Name' strings")
    return trust if isinstance(trust, bool) else list(trust)


def _builtin(backend: Backend) -> bool:
    """Whether ``backend`` is an instance of the very class the built-in table names for its
    name (identity: a class body can spell its ``__module__`` any way it likes, and a
    subclass registered over a built-in name is a plugin)."""
    import sys

    for entry in BUILTIN:
        if entry.name == backend.name:
            module, _, qual = entry.target.partition(":")
            loaded = sys.modules.get(module)
            return loaded is not None and type(backend) is getattr(loaded, qual, None)
    return False


def _declared_safe(backend: Backend) -> bool:
    """``risk == "safe"`` counts only for modelstore's own backends: a plugin that declares
    itself safe is scanned like any other (its scan decides)."""
    return backend.risk == "safe" and _builtin(backend)


def gate(backend: Backend, path: Path, trust: bool | list[str]) -> None:
    """Scan before anything deserialises; refuse what is not allowed."""
    if _declared_safe(backend) or trust is True:
        return
    # a built-in backend whose load runs the check itself, before it deserialises anything,
    # is not scanned twice: the pickle backends' restricted unpickler is the check (one pass),
    # the Keras backend scans in its load (its size-check build overlaps the HDF5 guard);
    # every other non-safe backend is scanned here, before anything is deserialised
    if getattr(backend, "checks_while_loading", False) and _builtin(backend):
        return
    enforce(backend.scan(path), trust)


#: Files this process already warned about: (file identity, trusted) -> None, oldest first.
_WARNED: OrderedDict[tuple[Any, ...], None] = OrderedDict()
_WARNED_MAX = 1024


def _identity(shown: str, path: Path) -> tuple[Any, ...]:
    """The file a user named (resolved path, size, mtime); a URI or a private copy by its
    name and size."""
    for candidate, named in ((shown, True), (path, False)):
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        if named:
            return (os.path.realpath(candidate), st.st_size, st.st_mtime_ns)
        return (shown, st.st_size)
    return (shown,)


def warn_unpickled(
    backend: Backend, shown: str, trust: bool | list[str], path: Path | None = None, obj: Any = None
) -> None:
    """One ``PickleWarning`` per file per process (a changed file warns again), at the
    caller's line, with advice that fits what was loaded. Silence it for files you wrote
    yourself with ``warnings.filterwarnings("ignore", category=ms.PickleWarning)``."""
    if backend.risk != "pickle":
        return
    key = (*_identity(shown, path if path is not None else Path(shown)), trust is True)
    if key in _WARNED:
        return
    _WARNED[key] = None
    while len(_WARNED) > _WARNED_MAX:
        _WARNED.popitem(last=False)
    what = (
        "with trust=True: any code in it ran"
        if trust is True
        else ("through modelstore's allow-list (plain data, tensors, numpy, scipy, scikit-learn)")
    )
    _warn.warn(
        f"{shown}: unpickled {what}; {backend.pickle_advice(obj)}. Once per file; "
        "silence it for files you wrote with "
        "warnings.filterwarnings('ignore', category=modelstore.PickleWarning)",
        PickleWarning,
    )

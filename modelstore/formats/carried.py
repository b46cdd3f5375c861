"""modelstore's metadata as the backends handle it: validated as hostile input when read,
carried by the loaded object (:data:`ATTR`) instead of a process-wide table, and the parses
one pipeline pass shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..errors import FormatError

#: The attribute a loaded (or saved) object carries its modelstore metadata in, so labels and
#: signature travel with the object instead of living in a process-wide table.
ATTR = "__modelstore_meta__"


# -- modelstore's metadata: validated as hostile input, carried by the object -----------------

_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "metadata": dict,
    "labels": list,
    "signature": dict,
    "tied": dict,
    "model_class": str,
    "checksum": str,
    "framework": str,
    "framework_version": (str, type(None)),
    "format": str,
    "modelstore": dict,
    "cast": dict,
    "checksum_covers": str,
}


def check_meta(path: Path | str, meta: dict[str, Any] | None, where: str) -> None:
    """FormatError unless every field of ``meta`` (read from ``where``) has its type: it
    comes from the file, so it is as untrusted as the rest of it."""
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: the modelstore metadata in {where} is not a JSON object")
    for key, kind in _META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            msg = f"{path}: the modelstore metadata in {where} has a malformed {key!r} ({type(meta[key]).__name__})"
            raise FormatError(msg)
    sig = meta.get("signature")
    if sig is not None and not isinstance(sig.get("inputs"), list):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'signature'")
    tied = meta.get("tied") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'tied' map")


def attach(obj: Any, meta: dict[str, Any] | None) -> None:
    """Let ``obj`` carry ``meta`` (labels, signature) as :data:`ATTR`; with None, remove
    whatever the object carried (a loaded file may have set it). Objects that take no
    attributes (dicts, tensors) carry nothing."""
    try:
        if meta:
            object.__setattr__(obj, ATTR, meta)
        elif ATTR in getattr(obj, "__dict__", {}):
            object.__delattr__(obj, ATTR)
    except (AttributeError, TypeError):
        pass


def attached(obj: Any) -> dict[str, Any]:
    """The metadata ``obj`` carries (from its own ``__dict__``), or ``{}``."""
    try:
        meta = vars(obj).get(ATTR)
    except TypeError:
        return {}
    return meta if isinstance(meta, dict) else {}


# -- one pipeline pass --------------------------------------------------------------------

_PASS: ContextVar[dict[Any, Any] | None] = ContextVar("modelstore_pass", default=None)


@contextlib.contextmanager
def one_pass() -> Iterator[None]:
    """The steps of one read of one file (metadata, checksum, scan, load or inspect) share
    what they parse (:func:`pass_cached`); the next pass, or a retry, starts afresh."""
    token = _PASS.set({})
    try:
        yield
    finally:
        _PASS.reset(token)


def pass_cached(key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per pass for ``key`` (which must name the file's identity, not only
    its path); outside a pass, every time."""
    cache = _PASS.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]

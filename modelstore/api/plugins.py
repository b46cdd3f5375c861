"""``ms.register``, ``ms.backends`` and ``ms.refresh_backends``: the backend table."""

from __future__ import annotations

from typing import Any

from ..pipeline.registry import REGISTRY, refresh_backends


def register(backend: Any, *, clobber: bool = False) -> None:
    """Add a backend (a :class:`modelstore.backends.Backend` subclass or instance).

    A name already taken raises :class:`RegistryError` unless ``clobber=True``; suffixes
    modelstore reserves for its own files (``.modelstore.json``, ``.index.json``) cannot be
    claimed. A backend with a ``priority`` above 0 becomes the default for the objects it
    can save. Every registration starts ``predict``'s type cache afresh.
    """
    REGISTRY.register(backend, clobber=clobber)


def backends() -> list[str]:
    """Names of every known backend: built-in, registered and installed plugins."""
    return REGISTRY.names()


__all__ = ["backends", "refresh_backends", "register"]

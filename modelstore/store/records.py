"""What a store records: versions (:class:`ModelVersion`), numbers, sizes, tags, times."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._info import _jsonable
from ..errors import ArgumentError

#: Version numbers have at most this many ASCII digits (far beyond any store's life).
_MAX_DIGITS = 18


def _number(text: str) -> int | None:
    """A version number from ASCII digits only (``str.isdigit`` accepts '²', which ``int``
    refuses), bounded in length; None for anything else."""
    if 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def _size(value: Any) -> int:
    """A byte count read from a manifest: a plain non-negative int below 2**63."""
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError(f"a size of {str(value)[:40]!r}")
    return value


@dataclass(frozen=True)
class ModelVersion:
    """One published version of a named model in a :class:`Store`."""

    name: str
    version: int
    path: str  # the model file (or shard index) to load, as a path or URI
    format: str
    framework: str | None
    created: str  # ISO 8601, UTC
    size_bytes: int
    sha256: str  # of the model file (the index for shards): pin it with load(..., sha256=)
    files: dict[str, int] = field(default_factory=dict)  # every file of the version: size
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


def default_root() -> str:
    """``$MODELSTORE_HOME``, else ``~/.modelstore``."""
    return os.environ.get("MODELSTORE_HOME") or str(Path.home() / ".modelstore")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where text belongs")
    return value


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, dict):
        out = {str(k): str(v) for k, v in tags.items()}
    elif isinstance(tags, (list, tuple, set)) and all(isinstance(t, str) for t in tags):
        out = dict.fromkeys(tags, "")
    else:
        raise ArgumentError("tags must be a dict of strings or a list of strings")
    return out


def _suffix_for(model: Any, fmt: str | None) -> str:
    from ..pipeline.registry import REGISTRY

    backend = REGISTRY.get(fmt) if fmt is not None else REGISTRY.for_object(model)
    return backend.suffixes[0] if backend.suffixes else ""

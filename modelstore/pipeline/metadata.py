"""modelstore's metadata: built on save, read on load (embedded or from the sidecar) and
validated as hostile input, then carried by the object itself (``formats.base.attach``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ArgumentError
from ..formats.base import Backend, check_meta
from ..storage.hashing import file_checksum
from ..storage.sidecar import choose_version, read_sidecar, sidecar_path, sidecar_versions
from .read import reading

METADATA_VERSION = 1


def _check_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)  # what we write must read back through jsonsafe
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{what} must be JSON-serialisable ({e})") from None
    return value


def build(
    backend: Backend, model: Any, *, config: Any, metadata: Any, labels: Any, sample_input: Any
) -> dict[str, Any]:
    """The metadata a save records: versions, the backend's facts, the caller's fields."""
    meta: dict[str, Any] = {
        "modelstore": {"version": __version__, "metadata_version": METADATA_VERSION},
        "format": backend.name,
    }
    meta.update(backend.describe(model))
    if config is not None:
        if not isinstance(config, dict):
            raise ArgumentError("config must be a dict of constructor keyword arguments")
        meta["config"] = _check_json(dict(config), "config")
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
            raise ArgumentError(
                f"labels must be a list of class names, not {type(labels).__name__}"
            )
        meta["labels"] = _check_json(list(labels), "labels")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ArgumentError("metadata must be a dict")
        meta["metadata"] = _check_json(dict(metadata), "metadata")
    sig = backend.signature(sample_input)
    if sig is not None:
        meta["signature"] = sig
    return meta


def read(
    path: Path, backend: Backend, checksum: str | None = None, data: Path | None = None
) -> tuple[dict[str, Any] | None, str]:
    """modelstore's metadata for ``path`` and where it was found, every field type-checked.
    For sidecar formats ``checksum`` (the payload's, if already computed) picks the entry
    that describes the payload on disk; ``data`` is where the payload is read (the same
    file as ``path``, held open)."""
    data = data or path
    with reading(path, "read the metadata of"):
        if backend.embeds_metadata:
            meta, where = backend.read_meta(data), "its header"
        else:
            versions = sidecar_versions(read_sidecar(path))
            if checksum is None and len(versions) > 1:
                checksum = file_checksum(data)  # several entries: the payload decides
            meta, where = (
                choose_version(path, versions, checksum),
                f"the sidecar {sidecar_path(path).name}",
            )
            if not versions:  # no sidecar: what the file carries itself (a .pt from ms.save)
                meta, where = backend.read_meta(data), "the metadata record inside the file"
    check_meta(path, meta, where)
    return meta, where


def current(
    path: Path, backend: Backend, meta: dict[str, Any] | None, where: str
) -> tuple[dict[str, Any] | None, str, str | None]:
    """For ``inspect``: ``(meta, where, note)`` with a sidecar that no longer matches the file
    set aside: a whole file rewritten by another tool is described by its own metadata (if it
    carries any) and the note says the sidecar is stale; a damaged file keeps the sidecar's
    metadata and the note says so. ``load`` decides the same in its verify step."""
    if backend.embeds_metadata or not meta or not meta.get("checksum"):
        return meta, where, None
    with reading(path, "read the metadata of"):
        if file_checksum(path) == meta["checksum"]:
            return meta, where, None
        own = backend.intact(path)
    if own is None:
        return (
            meta,
            where,
            f"{where} does not match this file: the file is damaged (load raises IntegrityError)",
        )
    note = (
        f"{where} does not match this file: it was rewritten by another tool; the sidecar is stale"
    )
    return (own or None), ("the metadata record inside the file" if own else where), note

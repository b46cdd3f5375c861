"""``ms.inspect``, ``ms.scan`` and ``recorded_metadata``: headers and opcodes only, never a
deserialisation; the same locate and choose steps as ``load``, the same metadata validation
for local files, folders, shards and URIs (a remote file a backend can describe from byte
ranges is read with range requests; any other is fetched whole first)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, cast

from .._info import Finding, ModelInfo, ScanReport
from ..errors import FormatError, ModelNotFoundError
from ..formats.base import Backend, Inspection, check_meta, one_pass
from ..pipeline import choose, folder, locate, metadata
from ..pipeline.read import reading, renamed
from ..security import unreadable
from ..storage import remote
from ..storage.files import PathLike
from ..storage.hashing import PendingDigest, sha256_later
from ..storage.sidecar import sidecar_problem


def inspect(path: PathLike, *, storage_options: dict[str, Any] | None = None) -> ModelInfo:
    """Describe a model from its headers and opcodes; never runs code from it.

    A remote ``.safetensors`` (``s3://...``) is described from its header alone, read with
    two range requests; other remote models are copied to a temporary folder first.

    Examples
    --------
    >>> info = ms.inspect("digits.safetensors")
    >>> info.num_params, info.labels, [t.shape for t in info.tensors]
    """
    path, uri = locate.split(path)
    if uri is not None:
        found = _ranged(uri, storage_options, "inspect_remote")
        if found is not None:
            backend, size, inspection = found
            # sha256 needs every byte: left empty for a header-only look (ms.Store records it)
            return _info(uri, backend, inspection, inspection.meta, "its header", size, "")
        with (
            locate.fetched(uri, storage_options) as (local, shown),
            renamed(local.parent, remote.parent_uri(shown)),
        ):
            return dataclasses.replace(inspect(local), path=shown)
    p = choose.model_file(path)
    info = info_of(p, choose.for_file(p, None))
    return folder.with_files(info, Path(os.fspath(path))) if os.path.isdir(path) else info


def info_of(p: Path, backend: Backend) -> ModelInfo:
    """ModelInfo of the local model whose main file is ``p``."""
    with one_pass():  # the backend's inspect and the metadata share what they parse
        with reading(p, "inspect"):
            found = backend.inspect(p)
        meta, where = metadata.read(p, backend)
        meta, where, note = metadata.current(p, backend, meta, where)
    if note:
        found.extra_metadata["sidecar"] = note
    return _info(str(p), backend, found, meta, where, p.stat().st_size, sha256_later(p))


def _info(
    path: str,
    backend: Backend,
    found: Inspection,
    meta: dict[str, Any] | None,
    where: str,
    size: int,
    sha: str | PendingDigest,
) -> ModelInfo:
    check_meta(path, meta, where)  # one validation, local or remote
    meta = meta or {}
    user = dict(found.extra_metadata)
    user.update(meta.get("metadata") or {})
    return ModelInfo(
        path=path,
        format=backend.name,
        framework=meta.get("framework") or found.framework,
        size_bytes=found.size_bytes if found.size_bytes is not None else size,
        sha256=cast(str, sha),  # a PendingDigest resolves on first read (ModelInfo)
        tensors=found.tensors,
        num_params=found.num_params
        if found.num_params is not None
        else sum(t.numel for t in found.tensors),
        metadata=user,
        labels=meta.get("labels") or found.labels,
        signature=meta.get("signature"),
        executes_code=found.executes_code,
        globals=found.globals,
    )


def _ranged(
    uri: str, storage_options: dict[str, Any] | None, method: str
) -> tuple[Backend, int, Any] | None:
    """What a backend reads from a remote file's byte ranges alone (None: fetch it whole)."""
    from ..pipeline.registry import REGISTRY

    names = REGISTRY.for_suffix(Path(remote.basename(uri)))
    if not names:
        return None
    backend = REGISTRY.get(names[0])
    if getattr(type(backend), method) is getattr(Backend, method):
        return None  # the backend reads whole files only: skip the size request
    if backend.optional_companions(Path(remote.basename(uri))):
        return None  # files beside it may count (a config.json): fetch it with them
    try:
        size, kind = remote.size_of(uri, storage_options)
    except ModelNotFoundError:  # perhaps saved under another name (shards): the fetch finds it
        return None
    if kind == "directory":
        return None
    found = getattr(backend, method)(
        uri, size, lambda a, b: remote.read_range(uri, a, b, storage_options)
    )
    return None if found is None else (backend, size, found)


def recorded_metadata(path: PathLike) -> dict[str, Any]:
    """Everything modelstore recorded for ``path`` (class, config, versions, checksum)."""
    path, uri = locate.split(path)
    if uri is not None:
        with locate.fetched(uri) as (local, shown), renamed(local.parent, remote.parent_uri(shown)):
            return recorded_metadata(local)
    p = choose.model_file(path)
    meta, _ = metadata.read(p, choose.for_file(p, None))
    return dict(meta or {})


def scan(path: PathLike, *, storage_options: dict[str, Any] | None = None) -> ScanReport:
    """A security verdict (``safe`` / ``unsafe`` / ``unknown``) for any supported file.

    Examples
    --------
    >>> report = ms.scan("downloaded.pt")
    >>> report.verdict, report.untrusted
    """
    path, uri = locate.split(path)
    if uri is not None:
        found = _ranged(uri, storage_options, "scan_remote")
        if found is not None:
            return found[2]  # type: ignore[no-any-return]
        with (
            locate.fetched(uri, storage_options) as (local, shown),
            renamed(local.parent, remote.parent_uri(shown)),
        ):
            report = scan(local)
        return dataclasses.replace(report, path=shown)
    try:
        p = choose.model_file(path)
        backend = choose.for_file(p, None)
    except FormatError as e:
        shown = os.fspath(path)
        if not (Path(shown).is_file() or Path(shown).is_dir()):
            raise
        return ScanReport(shown, "unknown", "unknown", [Finding("file", "warning", str(e))])
    try:
        with reading(p, "scan"):
            report = backend.scan(p)
    except FormatError as e:
        return unreadable(p, backend.name, "damaged", str(e))
    problem = None if backend.embeds_metadata else sidecar_problem(p)
    if problem:  # load refuses a sidecar that leads outside: scan must not call the model safe
        report = dataclasses.replace(
            report,
            verdict="unsafe",
            findings=[*report.findings, Finding("sidecar", "critical", problem)],
        )
    report = folder.with_config(p, backend, report)  # a Hugging Face config beside the weights
    if os.path.isdir(path):  # a folder: its side files (optimizer.pt, ...) too
        report = folder.scan_folder(Path(os.fspath(path)), p, backend, report)
    return report

"""Locate: a local path, or a remote model's files fetched into a private folder (and, for
saves, a local staging path whose files are uploaded afterwards).

Which files make up a model is the backend's answer (``companions``) plus modelstore's
sidecar; each is a plain name in the model's own folder, checked by the one confinement
check before it is read, copied, fetched or uploaded. Remote files are never deserialised
from the network: they are loaded from the private copy by the same pipeline as local files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._info import ModelInfo
from ..errors import FormatError, ModelNotFoundError
from ..formats.base import Backend
from ..security.confine import ConfinementError, check_name, confine
from ..storage import remote
from ..storage.sidecar import SIDECAR_SUFFIX
from . import choose
from .registry import REGISTRY

split = remote.split


def plain_name(name: Any) -> bool:
    """A plain file name in the model's own folder (the confinement check's name rules, no
    folders, not hidden): only such names travel with a model."""
    try:
        parts = check_name(name, what="the companion file")
    except ConfinementError:
        return False
    return parts == (name,) and not name.startswith(".")


def companion_names(p: Path, backend: Backend) -> list[str]:
    """Files beside ``p`` that belong to it, in upload order: the backend's companions (data
    first), then the sidecar. Each passes the confinement check (ConfinementError for a link
    leading out, a hard link, a FIFO...); companions that are missing are left to the load
    to report."""
    names = []
    for name in backend.companions(p):
        if not plain_name(name):
            raise FormatError(
                f"{p}: names the companion file {name!r}, which is not a plain file name beside it"
            )
        try:
            confine(p.parent, name, what="the companion file", source=p, main=p)
        except ModelNotFoundError:
            continue
        names.append(name)
    side = p.name + SIDECAR_SUFFIX
    if not backend.embeds_metadata and os.path.lexists(p.parent / side):
        confine(p.parent, side, what="the sidecar", source=p, main=p)
        names.append(side)
    return names


def model_paths(p: Path, backend: Backend) -> list[Path]:
    """Every file of the model at ``p``, data first, ``p`` and then its sidecar last."""
    names = companion_names(p, backend)
    side = [n for n in names if n.endswith(SIDECAR_SUFFIX)]
    return [p.parent / n for n in names if n not in side] + [p] + [p.parent / n for n in side]


def _remote_main(fs: Any, rpath: str, uri: str) -> str:
    """The remote path of the model's main file: ``rpath``; for a folder the file a backend
    claims from its listing; for a missing name, a name a save to it writes instead."""
    if remote.exists(fs, rpath, uri):
        if not remote.is_dir(fs, rpath, uri):
            return rpath
        names = [n for n in remote.list_names(fs, rpath, uri) if plain_name(n)]
        found = REGISTRY.entry_file(names)
        if found is None:
            msg = f"{uri}: is a folder no backend recognises as a model; give the URI of the model file"
            raise ModelNotFoundError(errno.ENOENT, msg, uri)
        return remote.join(rpath, found[1])
    folder = remote.parent(rpath)
    for other in REGISTRY.alternatives(remote.basename(rpath)):
        if remote.exists(fs, remote.join(folder, other), uri):
            return remote.join(folder, other)
    return rpath  # the download reports it missing


@contextlib.contextmanager
def fetched(
    uri: str, storage_options: dict[str, Any] | None = None, fmt: str | None = None
) -> Iterator[tuple[Path, str]]:
    """Copy the model at ``uri`` (its main file, the companions its backend names and its
    sidecar) into a private temporary folder and yield ``(local main file, its URI)``; the
    folder is removed afterwards (memory maps stay valid)."""
    fs, rpath = remote.open_fs(uri, storage_options)
    if remote.is_local(fs):
        local = choose.model_file(rpath)
        yield local, str(local)
        return
    with remote.scratch("fetch") as tmp:
        main = _remote_main(fs, rpath, uri)
        local = tmp / remote.basename(main)
        remote.get(fs, main, local, uri)
        backend = choose.for_file(local, fmt)
        folder = remote.parent(main)
        for name in backend.companions(local):
            if not plain_name(name):
                raise FormatError(
                    f"{uri}: names the companion file {name!r}, which is not a plain file name beside it"
                )
            remote.get(fs, remote.join(folder, name), tmp / name, uri)
        for name in backend.optional_companions(local):
            if plain_name(name) and remote.exists(fs, remote.join(folder, name), uri):
                remote.get(fs, remote.join(folder, name), tmp / name, uri)
        side = main + SIDECAR_SUFFIX
        if not backend.embeds_metadata and remote.exists(fs, side, uri):
            remote.get(fs, side, tmp / (local.name + SIDECAR_SUFFIX), uri)
        inside = main.startswith(rpath.rstrip("/") + "/")  # a folder's main file
        main_uri = (
            uri.rstrip("/") + "/" + remote.basename(main)
            if inside
            else remote.join(remote.parent_uri(uri), remote.basename(main))
        )
        yield local, main_uri


@contextlib.contextmanager
def staged(
    uri: str, overwrite: bool, storage_options: dict[str, Any] | None = None
) -> Iterator[tuple[Path, Any]]:
    """Yield ``(local path, publish)``: save to the local path, then ``publish(info)`` uploads
    the model's files, data first and the files that describe them last, so a reader never
    meets metadata pointing at bytes not yet uploaded. Returns the ModelInfo with its URI."""
    with remote.staged(uri, overwrite, storage_options) as (local, send):

        def publish(info: ModelInfo) -> ModelInfo:
            main = Path(info.path)
            files = model_paths(main, REGISTRY.get(info.format))
            others = sorted(p for p in local.parent.rglob("*") if p.is_file() and p not in files)
            send(others + files)
            return relocated(info, local, uri)

        yield local, publish


def relocated(info: ModelInfo, local: Path, uri: str) -> ModelInfo:
    """``info`` of a staged or fetched copy, with the path it has remotely."""
    rel = Path(info.path).relative_to(local.parent).as_posix()
    return dataclasses.replace(info, path=remote.join(remote.parent_uri(uri), rel))

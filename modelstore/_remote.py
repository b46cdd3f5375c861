"""fsspec URIs (``s3://``, ``gs://``, ``memory://``, ``file://``) for every public call.

Remote files are never deserialised from the network: a model's files are copied to a
private temporary folder, checked and loaded there by the same front door as local files
(one trust gate, one checksum path). Saves write locally first, then upload the payload
files and, last, the file that describes them (sidecar, shard index, ``.onnx`` graph), so a
reader never meets metadata that points at bytes not yet uploaded. Object stores publish an
object only when its upload completes, so a killed upload leaves the previous object whole.

fsspec (and s3fs/gcsfs for their schemes) is imported on first use, never at import.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._io import SIDECAR_SUFFIX
from .errors import (
    ArgumentError,
    FormatError,
    MissingDependencyError,
    ModelExistsError,
    ModelNotFoundError,
    ModelstoreError,
    StorageError,
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: protocols fsspec serves from another package, and the extra that installs it
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
INDEX_SUFFIX = ".index.json"


def is_uri(path: Any) -> bool:
    """A string with a scheme (``s3://...``); ``file://`` counts, plain paths do not."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def local_path_of(uri: str) -> Path | None:
    """The local path behind a ``file://`` URI (None for any other scheme)."""
    if uri.lower().startswith("file://"):
        return Path(uri[len("file://"):] or "/")
    if uri.lower().startswith("local://"):
        return Path(uri[len("local://"):] or "/")
    return None


def split(path: Any) -> tuple[Any, str | None]:
    """``(path, None)`` for a local path (a ``file://`` URI becomes its path), ``(path, uri)``
    for a remote URI: what every public call asks first."""
    if not is_uri(path):
        return path, None
    local = local_path_of(path)
    return (local, None) if local is not None else (path, path)


def safetensors_header(uri: str, storage_options: dict[str, Any] | None = None) -> Any:
    """A remote safetensors header, parsed from two range requests (never the tensors)."""
    from .backends import safetensors_

    size, _ = size_of(uri, storage_options)
    return safetensors_.header_from_reader(uri, size, lambda start, end: read_range(uri, start, end, storage_options))


def open_fs(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(filesystem, path inside it)`` for ``uri``; a missing fsspec plugin names its extra."""
    m = _SCHEME.match(uri)
    scheme = m.group(1).lower() if m else ""
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise MissingDependencyError(
            f"{uri}: URIs need fsspec, which is not installed; run: pip install fsspec", name="fsspec"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        return fs, str(path)
    except ImportError as e:
        extra = _EXTRAS.get(scheme)
        hint = f'pip install "modelstore[{extra}]"' if extra else "install the fsspec plugin for it"
        raise MissingDependencyError(f"{uri}: the {scheme}:// scheme needs a package that is not "
                                     f"installed ({e}); run: {hint}", name=scheme) from None
    except ValueError as e:
        raise ArgumentError(f"{uri}: not a usable URI ({e})") from None


def is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@contextlib.contextmanager
def storage_errors(uri: str, what: str) -> Iterator[None]:
    """Whatever a filesystem raises becomes a ModelstoreError naming ``uri``."""
    try:
        yield
    except ModelstoreError:
        raise
    except FileNotFoundError:
        msg = f"{uri}: no such file; check the bucket, the key and your credentials"
        raise ModelNotFoundError(errno.ENOENT, msg, uri) from None
    except FileExistsError:
        raise
    except PermissionError as e:
        raise StorageError(errno.EACCES, f"{uri}: permission denied while trying to {what} ({e})", uri) from None
    except Exception as e:  # network, credentials, throttling: each client has its own types
        code = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
        first = str(e).splitlines()[0] if str(e) else ""
        msg = f"{uri}: could not {what} ({type(e).__name__}: {first[:300]}); check the address and credentials"
        raise StorageError(code, msg, uri) from e


# -- which files make up a model ---------------------------------------------------------------


def _plain_name(name: Any) -> bool:
    """A plain file name in the model's own folder (the one confinement check's name rules,
    no folders, not hidden): only such names are fetched beside a remote model."""
    from .security.confine import ConfinementError, check_name

    try:
        parts = check_name(name, what="the companion file")
    except ConfinementError:
        return False
    return parts == (name,) and not name.startswith(".")


def companions(local: Path) -> list[Path]:
    """Files beside ``local`` that belong to it (sidecar, shards, ONNX external data), in
    upload order: data first, the file that describes them last. Each passes the one
    confinement check (ConfinementError for a link leading out, a hard link, a FIFO...), so
    a push never uploads a file from elsewhere."""
    from .security.confine import confine

    if local.is_dir():
        from . import _shards

        index = _shards.find_index(local)
        if index is None:
            found = sorted(p for p in local.rglob("*") if not p.is_dir())
            for p in found:
                confine(local, p.relative_to(local).as_posix(), what="the file", source=local)
            return found
        local = index
    sharded = local.name.lower().endswith(".safetensors" + INDEX_SUFFIX)
    files = []
    for n in _data_names(local):
        try:
            confine(local.parent, n, what="the companion file", source=local, main=local, hf_cache=sharded)
        except ModelNotFoundError:
            continue  # the load reports what is missing
        files.append(local.parent / n)
    files.append(local)
    side = local.with_name(local.name + SIDECAR_SUFFIX)
    if os.path.lexists(side):
        confine(local.parent, side.name, what="the sidecar", source=local, main=local)
        files.append(side)
    return files


def _data_names(main: Path) -> list[str]:
    """Files ``main`` names that travel with it: a shard index's shards, an ONNX graph's
    external data."""
    lower = main.name.lower()
    if lower.endswith(".safetensors" + INDEX_SUFFIX):
        from . import _shards

        return _shards.index_files(main)
    return _onnx_data_names(main) if lower.endswith(".onnx") else []


def _onnx_data_names(path: Path) -> list[str]:
    """External data files an .onnx graph names (only plain names in its own folder: the
    loader refuses anything else anyway)."""
    try:
        import onnx

        from .backends.onnx_ import _external_refs

        proto = onnx.load(str(path), load_external_data=False)
        names = {info.get("location", "") for _, info in _external_refs(proto)}
    except Exception:  # a damaged graph: the load after the fetch reports it
        return []
    return sorted(n for n in names if _plain_name(n))


# -- reading ----------------------------------------------------------------------------------


@contextlib.contextmanager
def fetched(uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[Path]:
    """Copy the model at ``uri`` (and its companions) into a private temporary folder and
    yield its local path there; the folder is removed after (memory maps stay valid)."""
    fs, rpath = open_fs(uri, storage_options)
    if is_local(fs):
        yield Path(rpath)
        return
    with _scratch("fetch") as tmp:
        yield download(fs, rpath, uri, tmp)


@contextlib.contextmanager
def _scratch(purpose: str) -> Iterator[Path]:
    """A private temporary folder, removed afterwards (imported here: not at import time)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f"modelstore-{purpose}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(fs: Any, rpath: str, uri: str, dest: Path) -> Path:
    """Download the model at ``rpath`` into ``dest``; return the local path to load."""
    from .security.confine import check_name

    with storage_errors(uri, "read"):
        info = fs.info(rpath)
    if info.get("type") == "directory":  # a sharded checkpoint's folder: its index decides
        with storage_errors(uri, "list"):
            names = sorted(basename(p) for p in fs.ls(rpath, detail=False))
        indexes = [n for n in names if n.lower().endswith(".safetensors" + INDEX_SUFFIX) and _plain_name(n)]
        default = "model.safetensors" + INDEX_SUFFIX
        if not indexes:
            msg = f"{uri}: is a folder with no *.safetensors.index.json; give the URI of the model file"
            raise ModelNotFoundError(errno.ENOENT, msg, uri)
        if default not in indexes and len(indexes) > 1:
            raise FormatError(f"{uri}: holds several shard indexes ({', '.join(indexes)}); pass the one to load")
        folder = dest / basename(rpath)
        folder.mkdir()
        download(fs, join(rpath, default if default in indexes else indexes[0]), uri, folder)
        return folder
    local = dest / basename(rpath)
    _get(fs, rpath, local, uri)
    for name in _data_names(local):  # plain names only (checked): never a path elsewhere
        if check_name(name, what="the companion file", source=uri) != (name,):
            raise FormatError(f"{uri}: names the companion file {name!r}, which is not a plain file name beside it")
        _get(fs, join(parent(rpath), name), dest / name, uri)
    side = rpath + SIDECAR_SUFFIX
    with storage_errors(uri, "read the sidecar of"):
        has_side = fs.exists(side)
    if has_side:
        _get(fs, side, local.with_name(local.name + SIDECAR_SUFFIX), uri)
    return local


def _get(fs: Any, rpath: str, local: Path, uri: str) -> None:
    with storage_errors(f"{uri}" if rpath.endswith(basename(uri)) else f"{uri} ({basename(rpath)})", "download"):
        fs.get_file(rpath, str(local))


def read_range(uri: str, start: int, end: int, storage_options: dict[str, Any] | None = None) -> bytes:
    """Bytes ``[start, end)`` of a remote file, with one range request."""
    fs, rpath = open_fs(uri, storage_options)
    with storage_errors(uri, "read"):
        data: bytes = fs.cat_file(rpath, start=start, end=end)
        return data


def size_of(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[int, str]:
    """``(size, type)`` of a remote path."""
    fs, rpath = open_fs(uri, storage_options)
    with storage_errors(uri, "read"):
        info = fs.info(rpath)
    return int(info.get("size") or 0), str(info.get("type", "file"))


def identity(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """What changes when a remote file is replaced (ETag/mtime and size), for read retries."""
    fs, rpath = open_fs(uri, storage_options)
    with contextlib.suppress(Exception):
        fs.invalidate_cache(rpath)
        info = fs.info(rpath)
        return (info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified"),
                info.get("size"))
    return (None, None)


# -- writing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def staged(uri: str, overwrite: bool, storage_options: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a local path to save to; afterwards upload everything written there to ``uri``'s
    folder, data first and describing files last. Local ``file://`` URIs are saved in place."""
    fs, rpath = open_fs(uri, storage_options)
    if is_local(fs):
        yield Path(rpath)
        return
    if not overwrite:
        with storage_errors(uri, "check"):
            taken = fs.exists(rpath)
        if taken:
            msg = f"{uri}: already exists and overwrite=False; pick another name or pass overwrite=True"
            raise ModelExistsError(errno.EEXIST, msg, uri)
    with _scratch("stage") as tmp:
        yield tmp / basename(rpath)
        upload(fs, tmp, parent(rpath), uri)


def upload(fs: Any, local_root: Path, remote_root: str, uri: str) -> None:
    """Upload every file under ``local_root`` to ``remote_root``: payloads first, then the
    files that describe them (ONNX graphs, shard indexes, sidecars)."""
    files = [p for p in local_root.rglob("*") if p.is_file()]
    for p in sorted(files, key=_upload_rank):
        rel = p.relative_to(local_root).as_posix()
        with storage_errors(f"{uri}", f"upload {rel} to"):
            fs.put_file(str(p), join(remote_root, rel) if remote_root else rel)


def _upload_rank(p: Path) -> tuple[int, str]:
    name = p.name.lower()
    if name.endswith(SIDECAR_SUFFIX):
        rank = 3
    elif name.endswith(INDEX_SUFFIX):
        rank = 2
    elif name.endswith(".onnx"):
        rank = 1
    else:
        rank = 0
    return rank, p.as_posix()


def parent_uri(uri: str) -> str:
    """``s3://bucket/a/b.pt`` -> ``s3://bucket/a``."""
    return uri.rstrip("/").rsplit("/", 1)[0]

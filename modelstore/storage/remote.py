"""Remote transport over fsspec URIs (``s3://``, ``gs://``, ``memory://``, ``file://``): bytes only.

This module knows no model format. Which files make up a model, and in which order they are
uploaded, is decided by the pipeline from what the backends declare (``companions``); here
files are listed, downloaded into private temporary folders and uploaded. Object stores
publish an object only when its upload completes, so a killed upload leaves the previous
object whole.

fsspec (and s3fs/gcsfs for their schemes) is imported on first use, never at import.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    ArgumentError,
    MissingDependencyError,
    ModelExistsError,
    ModelNotFoundError,
    ModelstoreError,
    StorageError,
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: protocols fsspec serves from another package, and the extra that installs it
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def is_uri(path: Any) -> bool:
    """A string with a scheme (``s3://...``); ``file://`` counts, plain paths do not."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def local_path_of(uri: str) -> Path | None:
    """The local path behind a ``file://`` URI (None for any other scheme)."""
    if uri.lower().startswith("file://"):
        return Path(uri[len("file://") :] or "/")
    if uri.lower().startswith("local://"):
        return Path(uri[len("local://") :] or "/")
    return None


def split(path: Any) -> tuple[Any, str | None]:
    """``(path, None)`` for a local path (a ``file://`` URI becomes its path), ``(path, uri)``
    for a remote URI: what every public call asks first."""
    if not is_uri(path):
        return path, None
    local = local_path_of(path)
    return (local, None) if local is not None else (path, path)


def open_fs(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(filesystem, path inside it)`` for ``uri``; a missing fsspec plugin names its extra."""
    m = _SCHEME.match(uri)
    scheme = m.group(1).lower() if m else ""
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise MissingDependencyError(
            f"{uri}: URIs need fsspec, which is not installed; run: pip install fsspec",
            name="fsspec",
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        return fs, str(path)
    except ImportError as e:
        extra = _EXTRAS.get(scheme)
        hint = (
            f'pip install "modelstore-safe[{extra}]"'
            if extra
            else "install the fsspec plugin for it"
        )
        raise MissingDependencyError(
            f"{uri}: the {scheme}:// scheme needs a package that is not "
            f"installed ({e}); run: {hint}",
            name=scheme,
        ) from None
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
        raise StorageError(
            errno.EACCES, f"{uri}: permission denied while trying to {what} ({e})", uri
        ) from None
    except Exception as e:  # network, credentials, throttling: each client has its own types
        code = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
        first = str(e).splitlines()[0] if str(e) else ""
        msg = f"{uri}: could not {what} ({type(e).__name__}: {first[:300]}); check the address and credentials"
        raise StorageError(code, msg, uri) from e


# -- reading ----------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch(purpose: str) -> Iterator[Path]:
    """A private temporary folder, removed afterwards (imported here: not at import time)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f"modelstore-{purpose}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_dir(fs: Any, rpath: str, uri: str) -> bool:
    with storage_errors(uri, "read"):
        return bool(fs.info(rpath).get("type") == "directory")


def exists(fs: Any, rpath: str, uri: str) -> bool:
    with storage_errors(uri, "check"):
        return bool(fs.exists(rpath))


def list_names(fs: Any, rpath: str, uri: str) -> list[str]:
    """Plain names of the files directly in the folder ``rpath``."""
    with storage_errors(uri, "list"):
        return sorted(basename(p) for p in fs.ls(rpath, detail=False))


def get(fs: Any, rpath: str, local: Path, uri: str) -> None:
    """Download one file to ``local`` (a fresh path in a private folder)."""
    _get(fs, rpath, local, uri)


def _get(fs: Any, rpath: str, local: Path, uri: str) -> None:
    with storage_errors(
        f"{uri}" if rpath.endswith(basename(uri)) else f"{uri} ({basename(rpath)})", "download"
    ):
        fs.get_file(rpath, str(local))


def read_range(
    uri: str, start: int, end: int, storage_options: dict[str, Any] | None = None
) -> bytes:
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
        return (
            info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified"),
            info.get("size"),
        )
    return (None, None)


# -- writing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def staged(
    uri: str, overwrite: bool, storage_options: dict[str, Any] | None = None
) -> Iterator[tuple[Path, Any]]:
    """Yield ``(local path to save to, upload)``; the caller saves there, then calls
    ``upload(files)`` with the files to publish in order (data first, describing files last).
    Local ``file://`` URIs are saved in place (``upload`` does nothing)."""
    fs, rpath = open_fs(uri, storage_options)
    if is_local(fs):
        yield Path(rpath), lambda files: None
        return
    if not overwrite and exists(fs, rpath, uri):
        msg = f"{uri}: already exists and overwrite=False; pick another name or pass overwrite=True"
        raise ModelExistsError(errno.EEXIST, msg, uri)
    with scratch("stage") as tmp:

        def send(files: list[Path]) -> None:
            upload(fs, tmp, parent(rpath), uri, files)

        yield tmp / basename(rpath), send


def upload(fs: Any, local_root: Path, remote_root: str, uri: str, files: list[Path]) -> None:
    """Upload ``files`` (under ``local_root``) to ``remote_root`` in the order given."""
    for p in files:
        rel = p.relative_to(local_root).as_posix()
        with storage_errors(f"{uri}", f"upload {rel} to"):
            fs.put_file(str(p), join(remote_root, rel) if remote_root else rel)


def parent_uri(uri: str) -> str:
    """``s3://bucket/a/b.pt`` -> ``s3://bucket/a``."""
    return uri.rstrip("/").rsplit("/", 1)[0]

"""The one confinement check for every file a model names besides itself.

A model is a main file the caller named plus companion files that the model (or a folder
listing) names: sidecars, shard indexes and shards, ONNX external data, store manifests,
aliases, version folders and version entries. The caller chose the main file; an attacker
chose every companion name. :func:`confine` is the only way a companion path becomes a
path we read, and :func:`open_confined` the only way it is opened.

A name is refused (:class:`ConfinementError`, an ``UnsafeModelError``: the file tries to
make us read or write outside what the caller gave us; that is an attack, not damage) when
it is empty, absolute, has a ``..`` component, a backslash, a colon (Windows drives and
NTFS streams), a NUL or other control character, or a percent-escape (``%2e``, ``%2f``,
``%5c``: a URL layer would decode it into a separator or a dot). The path is then resolved:

- a symbolic link (of the file, or of any folder on the way) may only lead *inside* the
  model's folder: the bytes read are then the folder's own, whatever name reaches them, and
  Hugging Face style layouts and users' own links keep working. A link leading outside is
  refused. The one exception, only for safetensors indexes and shards (``hf_cache=True``):
  a Hugging Face cache snapshot (``<repo>/snapshots/<rev>/...`` with ``<repo>`` named
  ``models--*``, ``datasets--*`` or ``spaces--*``) may link to a file whose real parent is
  exactly ``<repo>/blobs`` and whose name is a content hash (40 or 64 hex digits). That is
  safe because it cannot leave the cache repository the caller named: huggingface_hub
  stores every file of that repository there, never a file of another repository or of the
  rest of the machine.
- the target must be a regular file (no FIFO, socket, device or folder), must not have other
  hard links (a hard link is another name for a file elsewhere; no path check can see where),
  must not be the main file itself, and must not be under ``/proc``, ``/sys`` or ``/dev``
  (``/dev/shm`` excepted: a tmpfs of regular files), whose "regular files" are kernel state.

:func:`open_confined` then opens the checked path one component at a time from the folder
with ``O_NOFOLLOW`` (non-blocking, so a FIFO swapped in cannot hang it) and checks the opened
descriptor again by the same rules, so a file or folder swapped for a link, a hard link or a
FIFO between the check and the open is caught, never followed or read. :func:`writable`,
:func:`create_new` and :func:`replace_file` are the write side: folders on the way must be
the base's own, and a file is written under a fresh name and renamed into place, never
through a link found there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

from ..errors import ModelNotFoundError, StorageError
from .confine_paths import FIX_NAME, check_stat, refuse, resolve, same_file
from .confine_paths import ConfinementError as ConfinementError  # importers take these from here
from .confine_paths import Kind as Kind
from .confine_paths import check_name as check_name

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def confine(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    source: object = None,
    main: Path | None = None,
    hf_cache: bool = False,
    kind: Kind = "file",
    todo: str | None = None,
) -> Path:
    """The real path of ``name`` inside the folder ``base`` after every check in the module
    docstring, or ConfinementError (ModelNotFoundError if it does not exist).

    ``what`` says what the file is ("the sidecar"), ``source`` which file named it (both for
    messages); ``main`` is the model file (a companion may not be it); ``hf_cache`` admits
    the links of a Hugging Face cache snapshot (safetensors indexes and shards only);
    ``kind="dir"`` checks a folder (links leading out and non-folders refused); ``todo``
    replaces the advice that ends a refusal.
    """
    return resolve(
        base, name, what=what, source=source, main=main, hf_cache=hf_cache, kind=kind, todo=todo
    )[0]


def open_confined(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    source: object = None,
    main: Path | None = None,
    hf_cache: bool = False,
    todo: str | None = None,
) -> BinaryIO:
    """:func:`confine`, then open the checked path without following any link and check
    the descriptor itself (a regular file, no other hard links, not the main file). A file
    swapped for a link after the check fails the open; a file replaced by another (a
    concurrent save renames a new one in) is judged by the same rules on what was opened.
    Returns a binary file object to close."""
    real, root, _ = resolve(
        base, name, what=what, source=source, main=main, hf_cache=hf_cache, kind="file", todo=todo
    )
    try:
        fd = _open_below(root, real)
    except FileNotFoundError:
        msg = f"{source or base}: {what} {name!r} disappeared while it was opened"
        raise ModelNotFoundError(errno.ENOENT, msg, str(real)) from None
    except OSError as e:  # ELOOP / ENOTDIR: a component became a link after the check
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise refuse(
                source,
                what,
                name,
                "was replaced by a link while it was opened",
                "Someone is changing the folder; load it again when it is quiet",
            ) from None
        raise StorageError(
            e.errno or errno.EIO, f"{real}: cannot read {what}: {e.strerror}", str(real)
        ) from None
    try:
        now = os.fstat(fd)
        check_stat(now, "file", source=source, what=what, name=name)
        if main is not None and same_file(now, main):
            raise refuse(source, what, name, "is the model file itself", FIX_NAME)
        return os.fdopen(fd, "rb")  # O_NONBLOCK is left on: it changes nothing for a regular file
    except BaseException:
        os.close(fd)
        raise


def read_confined(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    max_bytes: int,
    source: object = None,
    main: Path | None = None,
    hf_cache: bool = False,
    todo: str | None = None,
) -> bytes:
    """The bytes of a confined companion file of at most ``max_bytes`` (FormatError beyond)."""
    from ..errors import FormatError

    with open_confined(
        base, name, what=what, source=source, main=main, hf_cache=hf_cache, todo=todo
    ) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FormatError(
            f"{source or base}: {what} {name!r} is more than the {max_bytes} bytes such a "
            f"file can need; it is damaged or hostile"
        )
    return data


def _open_below(root: Path, real: Path) -> int:
    """Open ``real`` (free of links, inside ``root``) walking from ``root`` with O_NOFOLLOW
    on every component, non-blocking (a FIFO swapped in cannot hang the open)."""
    rel = os.fspath(real)[len(os.fspath(root)) :].strip(os.sep).split(os.sep)
    last = (
        os.O_RDONLY
        | _NOFOLLOW
        | _NONBLOCK
        | _CLOEXEC
        | getattr(os, "O_NOCTTY", 0)
        | getattr(os, "O_BINARY", 0)
    )
    if (
        rel == [""] or os.open not in os.supports_dir_fd or not _NOFOLLOW
    ):  # pragma: no cover - not POSIX
        return os.open(real, last)
    dfd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in rel[:-1]:
            nfd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(rel[-1], last, dir_fd=dfd)
    finally:
        os.close(dfd)


def writable(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    source: object = None,
    todo: str | None = None,
) -> Path:
    """Where to write ``name`` inside ``base``: the folders on the way must be real folders
    inside it (created if missing); an existing file there is replaced, never written
    through, so the returned path's last component may be a link the caller will replace."""
    parts = check_name(name, what=what, source=source)
    base_p = Path(os.fspath(base))
    folder = base_p
    for i, part in enumerate(parts[:-1]):
        folder = folder / part
        if not os.path.lexists(folder):
            try:
                folder.mkdir()
            except FileExistsError:
                pass
            except OSError as e:
                raise StorageError(
                    e.errno or errno.EIO,
                    f"{folder}: cannot create the folder: {e.strerror}",
                    str(folder),
                ) from None
        confine(base_p, "/".join(parts[: i + 1]), what=what, source=source, kind="dir", todo=todo)
    return folder / parts[-1]


def create_new(path: Path) -> BinaryIO:
    """A file created for writing, exclusively and never through a link (a name planted
    at ``path`` makes it fail instead of redirecting the write)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o666), "wb")


def replace_file(target: Path, blob: bytes) -> None:
    """Write ``blob`` to a fresh temp file beside ``target`` and rename it over ``target``:
    a link found at ``target`` is replaced, never written through."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with create_new(tmp) as f:
            f.write(blob)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def external_data_problem(folder: Path, location: object, *, main: Path) -> str | None:
    """For ONNX external data: None if ``location`` (read from the graph ``main``) is a
    confined regular file in ``folder``, else the reason it is refused (the graph walk turns
    it into a scan finding)."""
    try:
        confine(folder, location, what="the external data file", main=main)
    except ConfinementError as e:
        return str(e)
    except ModelNotFoundError:
        return f"{location!r} does not exist in {folder}"
    return None

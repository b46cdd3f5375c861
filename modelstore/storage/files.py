"""File plumbing: atomic writes, writer locks, stale temp files, path checks. Bytes only."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    ArgumentError,
    FormatError,
    ModelExistsError,
    ModelNotFoundError,
    ModelstoreError,
    StorageError,
)

_TMP_MARK = ".modelstore-tmp"

PathLike = str | os.PathLike[str]


# -- reading ---------------------------------------------------------------------------------


def not_a_path(path: Any, error: Exception) -> ArgumentError:
    """The error for a path argument that is not one, naming it briefly (never the whole
    ``repr`` of a model object)."""
    if isinstance(path, (str, bytes)) or path is None:
        return ArgumentError(f"{path!r} is not a usable path ({error})")
    cls = type(path)
    return ArgumentError(
        f"a {cls.__module__}.{cls.__qualname__} object was given where a file path is "
        f"expected; this call reads model files: pass the path, or for a model in "
        f"memory use ms.summary(model) or ms.stats(model)"
    )


def existing_file(path: PathLike) -> Path:
    """Return ``path`` as a Path if it is a readable, non-empty regular file, else raise."""
    try:
        p = Path(os.fspath(path))
        st = p.stat()
    except (TypeError, ValueError) as e:
        raise not_a_path(path, e) from None
    except FileNotFoundError:
        msg = f"{p}: no such file. Check the path (relative paths start at {os.getcwd()})"
        raise ModelNotFoundError(errno.ENOENT, msg, str(p)) from None
    except OSError as e:
        raise StorageError(e.errno, f"{p}: cannot read: {e.strerror}", str(p)) from None
    if p.is_dir():
        msg = f"{p}: is a directory, not a model file; pass the path of the file inside it"
        raise FormatError(msg)
    if st.st_size == 0:
        raise FormatError(f"{p}: the file is empty (0 bytes); it was never written completely")
    if not os.access(p, os.R_OK):
        raise StorageError(errno.EACCES, f"{p}: permission denied", str(p))
    return p


def read_head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


@contextlib.contextmanager
def writer_lock(target: Path) -> Iterator[None]:
    """Serialise sidecar writers in one folder (an flock on the folder itself, so no lock
    file is left behind), so sidecar and payload of concurrent saves never interleave.
    Readers never lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        yield
        return
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- atomic writes ---------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    """This machine's name as it appears in temp names (no dots: they separate the fields)."""
    import socket  # here, not at the top: ~2 ms of `import modelstore` for one call per save

    return (
        "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    )


#: A temp file of another machine (a shared filesystem) is only removed after this long: its
#: process id says nothing here, and its save may still be running.
FOREIGN_TEMP_AGE = 24 * 3600


def clean_stale_temps(target: Path) -> None:
    """Remove temp files an earlier, killed save to ``target`` left behind: this machine's
    whose process is gone, and another machine's only once they are a day old (on a shared
    filesystem a process id of another host must never decide)."""
    prefix = f".{target.name}."
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    here = _host()
    for entry in entries:
        name = entry.name
        # temp names may carry a suffix a framework insists on (".modelstore-tmp.keras")
        if not (name.startswith(prefix) and _TMP_MARK in name):
            continue
        fields = name[len(prefix) :].split(".")
        if len(fields) < 3 or not fields[1].isdigit():
            continue
        host, pid = fields[0], int(fields[1])
        if host == here:
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = time.time() - entry.lstat().st_mtime > FOREIGN_TEMP_AGE
            except OSError:
                continue
        if stale:
            with contextlib.suppress(OSError):
                entry.unlink()


def temp_path_for(target: Path) -> Path:
    return target.with_name(
        f".{target.name}.{_host()}.{os.getpid()}.{os.urandom(4).hex()}{_TMP_MARK}"
    )


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_target(target: Path, overwrite: bool) -> None:
    if target.is_dir():
        msg = f"{target}: is a directory; give a file name such as {target / 'model.safetensors'}"
        raise StorageError(errno.EISDIR, msg, str(target))
    if not target.parent.is_dir():
        msg = f"{target}: the folder {target.parent} does not exist; create it first"
        raise StorageError(errno.ENOENT, msg, str(target))
    if not overwrite and target.exists():
        msg = f"{target}: already exists and overwrite=False; pick another name or pass overwrite=True"
        raise ModelExistsError(errno.EEXIST, msg, str(target))


@contextlib.contextmanager
def atomic_paths(*targets: Path) -> Iterator[list[Path]]:
    """Yield temp paths beside each target; on success fsync them and rename them in order.

    A failure (or a kill) before the rename leaves every target as it was; the temp files
    of a killed process are removed by the next save to the same target.
    """
    for t in targets:
        clean_stale_temps(t)
    temps = [temp_path_for(t) for t in targets]
    old: list[Path] = []
    try:
        yield temps
        for tmp in temps:
            if tmp.exists():
                fsync_file(tmp)
        for tmp, target in zip(temps, targets):
            if tmp.exists():
                _keep_old(target, old)
                os.replace(tmp, target)
        fsync_dir(targets[0].parent)
        _remove_later(old)
    except BaseException as e:
        _remove(temps + old)
        cause = _os_error_in(e)
        if isinstance(e, ModelstoreError) or cause is None:
            raise
        where = targets[-1]
        msg = f"{where}: saving failed: {cause.strerror or cause}; the previous file, if any, is untouched"
        raise StorageError(cause.errno or errno.EIO, msg, str(where)) from e


#: A replaced file at least this large is removed after the save returns: freeing its blocks
#: is the filesystem's work (~24 ms for 128 MiB on ext4), done inside the rename otherwise.
LATE_REMOVAL_BYTES = 16 << 20


def _keep_old(target: Path, old: list[Path]) -> None:
    """Give a large file about to be replaced a second name (a hard link, under a temp name),
    so the rename only drops a name and the blocks are freed when :func:`_remove_later`
    removes that one. Nothing is done where links are not possible or not worth it."""
    try:
        st = target.lstat()
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size < LATE_REMOVAL_BYTES:
        return
    name = temp_path_for(target)
    old.append(name)  # first: an interrupt just after the link still has the name removed
    try:
        os.link(target, name, follow_symlinks=False)
    except (OSError, NotImplementedError):
        old.remove(name)


def _remove_later(paths: list[Path]) -> None:
    """Remove ``paths`` in a thread (not a daemon: the interpreter waits for it at exit; a
    killed process leaves temp names the next save to the target removes)."""
    if not paths:
        return
    if not threading.main_thread().is_alive():
        # the interpreter is exiting (an atexit handler saved): a thread started now is
        # never waited for (3.11) or cannot start (3.12+), and the name would outlive us
        _remove(paths)
        return
    thread = threading.Thread(target=_remove_then_forget, args=(paths,), name="modelstore-remove")
    with _REMOVING_LOCK:
        _REMOVING.add(thread)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: the save is done, remove them here
        with _REMOVING_LOCK:
            _REMOVING.discard(thread)
        _remove(paths)


#: Threads of :func:`_remove_later` still running: a reader that lists a folder's files
#: (signing a folder, a folder's listing) waits for them, so a save that returned never
#: leaves it a temp name to see.
_REMOVING: set[threading.Thread] = set()
_REMOVING_LOCK = threading.Lock()


def _remove_then_forget(paths: list[Path]) -> None:
    try:
        _remove(paths)
    finally:
        with _REMOVING_LOCK:
            _REMOVING.discard(threading.current_thread())


def removals_done() -> None:
    """Wait until the temp names of files this process replaced are gone (at once if none)."""
    if _REMOVING:
        with _REMOVING_LOCK:
            threads = list(_REMOVING)
        for thread in threads:
            thread.join()


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: frameworks wrap a full disk in their own errors
    (torch's zip writer raises RuntimeError after the OSError)."""
    cur: BaseException | None = e
    for _ in range(8):
        if cur is None:
            return None
        if isinstance(cur, OSError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to the fresh temp file ``path``: created exclusively and never through
    a link, so a name planted in the folder cannot redirect the write."""
    from ..security.confine import create_new

    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with create_new(path) as f:
        f.write(text.encode("utf-8"))

"""File plumbing shared by every backend: atomic writes, checksums, sidecars, path checks.

Checksums use xxh3-128, which runs at memory speed (~25 GB/s here) so verifying a file costs
little next to loading it; ``sha256`` (~1.5 GB/s) is only computed for ``ModelInfo.sha256``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import (
    ArgumentError,
    ModelstoreError,
    FormatError,
    IntegrityError,
    ModelExistsError,
    ModelNotFoundError,
    StorageError,
)

CHECKSUM_ALGO = "xxh3_128"
SIDECAR_SUFFIX = ".modelstore.json"
_TMP_MARK = ".modelstore-tmp"
_CHUNK = 16 << 20

PathLike = str | os.PathLike[str]


# -- hashing ---------------------------------------------------------------------------------


def new_checksum() -> Any:
    """A fresh streaming hasher for payload checksums."""
    import xxhash  # small C extension; imported on first save/verify, not at import

    return xxhash.xxh3_128()


def format_checksum(hasher: Any) -> str:
    return f"{CHECKSUM_ALGO}:{hasher.hexdigest()}"


def update_from_file(hasher: Any, path: Path, start: int = 0, end: int | None = None,
                     file: BinaryIO | None = None) -> None:
    """Feed bytes ``[start, end)`` of ``path`` (or of the already opened ``file``: a
    confined companion) to ``hasher`` through one memory map."""
    with contextlib.ExitStack() as stack:
        f = file if file is not None else stack.enter_context(open(path, "rb"))
        size = os.fstat(f.fileno()).st_size
        end = size if end is None else min(end, size)
        if end <= start:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                for pos in range(start, end, _CHUNK * 4):
                    hasher.update(view[pos : min(end, pos + _CHUNK * 4)])
            finally:
                view.release()


def file_checksum(path: Path, file: BinaryIO | None = None) -> str:
    h = new_checksum()
    update_from_file(h, path, file=file)
    return format_checksum(h)


def check_checksum(path: Path, expected: str, actual: str, where: str) -> None:
    if not expected.startswith(CHECKSUM_ALGO + ":"):
        algo = expected.split(":", 1)[0]
        msg = (
            f"{path}: the recorded checksum uses {algo!r}, which this version of modelstore "
            f"cannot verify; upgrade modelstore or pass verify=False"
        )
        raise IntegrityError(msg)
    if expected != actual:
        msg = (
            f"{path}: the payload does not match the checksum recorded in {where} "
            f"(recorded {expected}, computed {actual}). The file is damaged, truncated or was "
            f"changed after saving; fetch it again, or pass verify=False to load it anyway"
        )
        raise IntegrityError(msg)


_SHA_CACHE: dict[tuple[str, int, int, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    # ctime too: a rewrite in place can restore size and mtime, never the change time
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def sha256_of(path: Path) -> str:
    """The whole file's sha256, cached per (path, size, mtime, inode) within the process."""
    key = _stat_key(path)
    cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _SHA_CACHE[key] = digest
    return digest


def copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to a new file ``dst``, hashing the bytes as they are copied; returns the
    sha256 of exactly what was written (what a pinned load then reads)."""
    h = hashlib.sha256()
    with open(src, "rb") as f, open(dst, "xb") as out:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def remember_sha256(path: Path, digest: str) -> None:
    _SHA_CACHE[_stat_key(path)] = digest


def fresh_sha256(path: Path) -> str:
    """The file's sha256 read now: what a pin is compared with must not come from a cache."""
    _SHA_CACHE.pop(_stat_key(path), None)
    return sha256_of(path)


def file_sha256(file: BinaryIO) -> str:
    """The sha256 of an already opened file, read now (no cache)."""
    h = hashlib.sha256()
    update_from_file(h, Path(), file=file)
    return h.hexdigest()


def check_pin(path: Path, pin: str, actual: str | None = None) -> None:
    """Compare the file's sha256 (always recomputed: a pin must not trust any cache), or
    ``actual``, the digest of the very bytes the caller read and will use."""
    if not isinstance(pin, str):
        raise ArgumentError(f"sha256= must be a hex string, not {type(pin).__name__}")
    pin = pin.lower().removeprefix("sha256:")
    actual = fresh_sha256(path) if actual is None else actual
    if actual != pin:
        msg = (
            f"{path}: sha256 is {actual}, not the pinned {pin}. The file is not the one you "
            f"pinned; do not load it. Fetch it again from the trusted source"
        )
        raise IntegrityError(msg)


# -- reading ---------------------------------------------------------------------------------


def existing_file(path: PathLike) -> Path:
    """Return ``path`` as a Path if it is a readable, non-empty regular file, else raise."""
    try:
        p = Path(os.fspath(path))
        st = p.stat()
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{path!r} is not a usable path ({e})") from None
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


# -- sidecar ---------------------------------------------------------------------------------


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


SIDECAR_VERSION = 2
#: How many versions a sidecar remembers: the new one and the one it replaces, so a reader
#: that meets the old payload between the two renames of a save still finds its metadata.
SIDECAR_KEEP = 2


def sidecar_versions(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The metadata entries of a sidecar, newest first (version 1 held a single entry)."""
    if data is None:
        return []
    versions = data.get("versions") if data.get("sidecar_version") == SIDECAR_VERSION else [data]
    if not isinstance(versions, list):
        return []
    return [v for v in versions if isinstance(v, dict)]


def choose_version(path: Path, versions: list[dict[str, Any]], checksum: str | None) -> dict[str, Any] | None:
    """The entry describing the payload now on disk: the one whose checksum matches, else the
    newest whose size matches, else the newest (verification then reports the mismatch)."""
    if not versions:
        return None
    if checksum is not None:
        for v in versions:
            if v.get("checksum") == checksum:
                return v
        return versions[0]
    size = path.stat().st_size
    return next((v for v in versions if v.get("payload_size") == size), versions[0])


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


#: A sidecar holds metadata: far below this even with large user metadata.
MAX_SIDECAR = 64 << 20


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of ``path`` as a dict, or None if there is none. It is a companion file:
    confined to the model's folder (no link leading out, no hard link, no FIFO or device),
    opened without following links, and parsed with the bounded JSON reader."""
    from .security.confine import read_confined
    from .security.jsonsafe import loads

    side = sidecar_path(path)
    if not os.path.lexists(side):
        return None
    raw = read_confined(path.parent, side.name, what="the sidecar", source=path, main=path,
                        max_bytes=MAX_SIDECAR)
    try:
        data = loads(raw, where=f"the sidecar {side}")
    except FormatError as e:
        raise FormatError(f"{e}; delete it to load {path.name} without metadata") from None
    if not isinstance(data, dict):
        raise FormatError(f"{side}: the modelstore sidecar must hold a JSON object")
    return data


def sidecar_problem(path: Path) -> str | None:
    """Why the sidecar of ``path`` would be refused as leading outside its folder (for
    ``scan``, which reads no metadata but must not call such a model safe), else None."""
    from .security.confine import ConfinementError, confine

    side = sidecar_path(path)
    if not os.path.lexists(side):
        return None
    try:
        confine(path.parent, side.name, what="the sidecar", source=path, main=path)
    except ConfinementError as e:
        return str(e)
    except ModelstoreError:
        return None
    return None


# -- atomic writes ---------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(target: Path) -> None:
    """Remove temp files an earlier, killed save to ``target`` left behind."""
    prefix = f".{target.name}."
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        # temp names may carry a suffix a framework insists on (".modelstore-tmp.keras")
        if not (name.startswith(prefix) and _TMP_MARK in name):
            continue
        pid_part = name[len(prefix) :].split(".", 1)[0]
        if pid_part.isdigit() and int(pid_part) != os.getpid() and not _pid_alive(int(pid_part)):
            with contextlib.suppress(OSError):
                entry.unlink()


def temp_path_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}{_TMP_MARK}")


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
    try:
        yield temps
        for tmp in temps:
            if tmp.exists():
                fsync_file(tmp)
        for tmp, target in zip(temps, targets):
            if tmp.exists():
                os.replace(tmp, target)
        fsync_dir(targets[0].parent)
    except BaseException as e:
        _remove(temps)
        cause = _os_error_in(e)
        if isinstance(e, ModelstoreError) or cause is None:
            raise
        where = targets[-1]
        msg = f"{where}: saving failed: {cause.strerror or cause}; the previous file, if any, is untouched"
        raise StorageError(cause.errno or errno.EIO, msg, str(where)) from e


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
    from .security.confine import create_new

    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with create_new(path) as f:
        f.write(text.encode("utf-8"))

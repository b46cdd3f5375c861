"""Checksums and digests: xxh3-128 payload checksums, sha256 with a bounded cache, pins.

xxh3-128 runs at memory speed (~25 GB/s here), so verifying a file costs little next to
loading it; sha256 (~1.5 GB/s) is computed for ``ModelInfo.sha256`` and pins.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ArgumentError, IntegrityError

CHECKSUM_ALGO = "xxh3_128"
_CHUNK = 16 << 20
#: sha256 digests remembered per process (path, size, mtime, inode, ctime): bounded.
SHA_CACHE_SIZE = 4096


# -- hashing ---------------------------------------------------------------------------------


def new_checksum() -> Any:
    """A fresh streaming hasher for payload checksums."""
    import xxhash  # small C extension; imported on first save/verify, not at import

    return xxhash.xxh3_128()


def format_checksum(hasher: Any) -> str:
    return f"{CHECKSUM_ALGO}:{hasher.hexdigest()}"


def update_from_file(
    hasher: Any, path: Path, start: int = 0, end: int | None = None, file: BinaryIO | None = None
) -> None:
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


class _Cache:
    """A small thread-safe LRU map: digests of files this process read or wrote."""

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[Any, Any] = OrderedDict()  # a str, or a PendingDigest
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def pop(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._data.pop(key, default)

    def __len__(self) -> int:
        return len(self._data)


_SHA_CACHE = _Cache(SHA_CACHE_SIZE)
#: File times are kept in coarse ticks (a few ms on Linux filesystems): a same-size rewrite
#: in the tick of the file's last change leaves size, mtime (put back) and ctime as they
#: were. A digest is therefore trusted only if its bytes were read more than this long after
#: the file's last change (git's "racily clean" rule); otherwise the file is read again.
RACY_NS = 50_000_000


def _remember(key: tuple[str, int, int, int, int], digest: Any, read_at: int) -> None:
    """Keep ``digest`` for ``key`` (its ``ctime_ns`` last) if it can be trusted later."""
    if read_at - key[4] > RACY_NS:
        _SHA_CACHE[key] = digest


def _recall(key: tuple[str, int, int, int, int]) -> Any:
    return _SHA_CACHE.get(key)


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    # ctime too: a rewrite in place can restore size and mtime, never the change time
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class PendingDigest:
    """A sha256 still being computed (in a background thread): calling it waits for the hex
    digest, once. ``ms.save`` hands one to its ``ModelInfo`` so the save returns as soon as
    the file is durable; the digest is ready when first read."""

    def __init__(self, wait: Callable[[], str]) -> None:
        self._wait = wait
        self._value: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._value is None:
                self._value = self._wait()
            return self._value


def hash_file_later(path: Path) -> PendingDigest:
    """The sha256 of the file at ``path`` as it is now: opened here (a descriptor follows the
    file through a rename, and a replaced path does not change what it reads) and read in a
    background thread."""
    import hashlib  # here, not at the top: loading OpenSSL was ~7 ms of `import modelstore`

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    st = os.fstat(fd)
    written = (st.st_size, st.st_mtime_ns)  # a rename changes ctime, a write mtime
    out: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            h = hashlib.sha256()
            buf = bytearray(_CHUNK)
            with memoryview(buf) as view, open(fd, "rb", buffering=0, closefd=True) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
                after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != written:
                # written to after the save returned: the digest would be of other bytes
                raise OSError("the file was written to after the save, while it was hashed")
            out.append(h.hexdigest())
        except BaseException as e:  # noqa: BLE001 - reported to whoever reads the digest
            errors.append(e)

    thread = threading.Thread(target=work, name="modelstore-sha256", daemon=True)
    thread.start()

    def wait() -> str:
        thread.join()
        if out:
            return out[0]
        raise IntegrityError(f"{path}: the file's sha256 could not be computed ({errors[0]!r})")

    return PendingDigest(wait)


def sha256_later(path: Path) -> str | PendingDigest:
    """What :func:`sha256_of` returns, except that a digest still being computed for this
    very file version (a save that just wrote it) is handed over unresolved."""
    key = _stat_key(path)
    cached = _recall(key) or _PENDING.pop(key)  # a save's digest is handed over once
    return cached if cached is not None else sha256_of(path)


def sha256_of(path: Path) -> str:
    """The whole file's sha256, cached per (path, size, mtime, inode) within the process."""
    key = _stat_key(path)
    cached = _recall(key)
    if isinstance(cached, str):
        return cached
    read_at = time.time_ns()
    import hashlib  # see hash_file_later

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _remember(key, digest, read_at)
    return digest


def copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to a new file ``dst``, hashing the bytes as they are copied; returns the
    sha256 of exactly what was written (what a pinned load then reads).

    Each chunk is read once; a second thread hashes it while this one writes it and reads the
    next (hashlib and file I/O release the GIL), so the copy costs about one sha256 pass."""
    from .pipehash import copy_hashing_overlapped

    return copy_hashing_overlapped(src, dst)


def remember_sha256(path: Path, digest: str | PendingDigest) -> None:
    """What a save computed for the file it just wrote: handed once to the next ``inspect``
    of that very file version (``sha256_later``), never to a pin. A file just written is
    "racy" (above): after that, the file is read again."""
    _PENDING[_stat_key(path)] = digest


#: Digests saves handed over, for ``sha256_later`` only (a few; the newest kept).
_PENDING = _Cache(16)


def fresh_sha256(path: Path) -> str:
    """The file's sha256 read now: what a pin is compared with must not come from a cache."""
    key = _stat_key(path)
    _SHA_CACHE.pop(key, None)
    _PENDING.pop(key, None)
    return sha256_of(path)


def file_sha256(file: BinaryIO) -> str:
    """The sha256 of an already opened file, read now (no cache)."""
    import hashlib  # see hash_file_later

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

"""Consistent reads: every step of one load (metadata, checksum, scan, load) sees one file.

A save may replace a file (or a shard index) while it is read; :func:`consistently` runs the
steps again until the file did not change under them. :func:`one_file` hands backends that
read a single file a path to the descriptor held open, so a rename over the path in the
middle cannot swap the bytes between the check and the load.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import FormatError, IntegrityError, ModelstoreError

READ_ATTEMPTS = 8


@contextlib.contextmanager
def reading(path: Path | str, what: str) -> Iterator[None]:
    """Turn anything a framework raises on a bad file into a ModelstoreError naming it."""
    try:
        yield
    except (ModelstoreError, Warning):  # warnings raised as errors are the caller's choice
        raise
    except MemoryError:
        raise IntegrityError(
            f"{path}: the file declares sizes too large to {what} it; it is damaged"
        ) from None
    except RecursionError:
        raise FormatError(
            f"{path}: the file nests too deeply to {what} it; it is damaged or crafted"
        ) from None
    except Exception as e:
        msg = f"{path}: could not {what} the file ({type(e).__name__}: {e}); it is damaged or not what its name says"
        raise FormatError(msg) from e


def identity(p: Path) -> tuple[int, int, int, int]:
    """The file's version: ctime too, since its owner can set mtime back after a write in
    place, but no one can set back ctime."""
    try:
        st = p.stat()
    except OSError:  # replaced or removed this instant: differs from any real identity
        return (-1, -1, -1, -1)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def consistently(p: Path, once: Callable[[], Any]) -> Any:
    """Run ``once`` until ``p`` did not change under it (a save renames shards, then the
    index; a reader caught between them sees a mismatch, a missing file or a companion the
    new save already removed: whatever the error, start again if ``p`` was replaced)."""
    for attempt in range(READ_ATTEMPTS):
        before = identity(p)
        try:
            result = once()
        except ModelstoreError:
            if identity(p) == before or attempt + 1 == READ_ATTEMPTS:
                raise
        else:
            if identity(p) == before:
                return result
        import random  # only on a retry: not part of `import modelstore`

        time.sleep(random.uniform(0, 0.005 * 2**attempt))  # let the writer finish its renames
    raise IntegrityError(
        f"{p}: the file kept changing while it was read ({READ_ATTEMPTS} tries); try again"
    )


@contextlib.contextmanager
def renamed(local: Path | str, shown: str) -> Iterator[None]:
    """Errors about ``local`` (a fetched copy, a descriptor path) name ``shown``, the path
    or URI the caller gave. The one place a message is rewritten; warnings are issued with
    the caller's name from the start (``LoadRequest.name``)."""
    local = str(local)
    if local == shown:
        yield
        return
    try:
        yield
    except ModelstoreError as e:
        if isinstance(e, OSError):
            e.strerror = (e.strerror or "").replace(local, shown)
            e.filename = shown
        else:
            e.args = tuple(a.replace(local, shown) if isinstance(a, str) else a for a in e.args)
            if isinstance(e, ImportError) and e.msg:  # its str() is .msg, not .args
                e.msg = e.msg.replace(local, shown)
        raise


@contextlib.contextmanager
def one_file(p: Path, single: bool) -> Iterator[Path]:
    """A path that reaches the file ``p`` names *now*, for backends that read only that file:
    ``/proc/self/fd/N`` of a descriptor held open (Linux), so the checksum, the scan and the
    load all read one file even if a save (or an attacker) renames another over ``p`` in the
    middle; messages still name ``p``. Elsewhere, ``p`` itself (a change is then caught by
    :func:`consistently`)."""
    if not single or not os.path.isdir("/proc/self/fd"):
        yield p
        return
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fd_path = Path(f"/proc/self/fd/{fd}")
        with renamed(fd_path, str(p)):
            yield fd_path
    finally:
        os.close(fd)

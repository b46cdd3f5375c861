"""Verify: the recorded checksum, or a sha256 pin, over exactly the files the backend reads.

A pinned load deserialises exactly the bytes that were pinned: the model's files are copied
into a private folder, the main file hashed while it is copied, the pin compared with that
hash, and the copy is what gets loaded (companions are then checked against the digests the
pinned file records, by the backend that reads them). A file rewritten after the check
(in place, mtime restored) can no longer be read in its place, memory-mapped formats included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import _warn
from ..errors import IntegrityError, MetadataWarning
from ..formats.base import Backend
from ..security.confine import open_confined
from ..storage.hashing import check_checksum, check_pin, copy_hashing, file_checksum
from ..storage.remote import scratch
from .read import reading


def checksum(
    f: Path,
    backend: Backend,
    meta: dict[str, Any] | None,
    computed: str | None,
    where: str,
    shown: str | None = None,
    named: Path | None = None,
) -> dict[str, Any] | None:
    """The payload against the checksum its metadata records (if it records one); returns the
    metadata to use. A sidecar that does not match a file whose own checks show it whole
    (another tool rewrote it) is stale, not damage: a warning, and the file's own metadata.
    Unless the path ``named`` no longer holds the file ``f`` reads: a save replaced it while
    it was read (its sidecar first), and the IntegrityError lets the consistent read start
    again (``pipeline.read.consistently``) rather than warn of a stale sidecar."""
    if not meta or not meta.get("checksum"):
        return meta
    with reading(f, "verify"):
        if backend.embeds_metadata:
            backend.verify(f, meta)
            return meta
        try:
            check_checksum(f, str(meta["checksum"]), computed or file_checksum(f), where)
        except IntegrityError:
            if named is not None and _replaced(f, named):
                raise
            own = backend.intact(f)
            if own is None:
                raise
            using = "the metadata recorded inside the file" if own else "no modelstore metadata"
            _warn.warn(
                f"{shown or f}: {where} does not match this file: it was rewritten by another tool "
                f"(the file itself is whole); loading it with {using}. Save it again with "
                f"ms.save, or delete the sidecar",
                MetadataWarning,
            )
            return own or None
    return meta


def _replaced(f: Path, named: Path) -> bool:
    """Whether ``named`` now holds another file than the one ``f`` reads."""
    try:
        a, b = f.stat(), named.stat()
    except OSError:
        return False
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)


@contextlib.contextmanager
def pinned_copy(p: Path, pin: Any, files: list[str]) -> Iterator[Path]:
    """A private copy of ``p`` whose sha256 equals ``pin``, with its companion ``files``
    (plain names beside it, each opened through the confinement check) copied beside it."""
    if not isinstance(pin, str):
        check_pin(p, pin)  # raises the ArgumentError for a pin that is not a hex string
    with scratch("pin") as folder:
        copy = folder / p.name
        digest = copy_hashing(p, copy)
        check_pin(p, pin, actual=digest)
        import shutil  # here: it imports bz2 and lzma, ~3 ms of `import modelstore`

        for name in files:
            with (
                open_confined(p.parent, name, what="the companion file", source=p, main=p) as src,
                open(folder / name, "xb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        yield copy

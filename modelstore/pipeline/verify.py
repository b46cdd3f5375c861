"""Verify: the recorded checksum, or a sha256 pin, over exactly the files the backend reads.

A pinned load deserialises exactly the bytes that were pinned: the model's files are copied
into a private folder, the main file hashed while it is copied, the pin compared with that
hash, and the copy is what gets loaded (companions are then checked against the digests the
pinned file records, by the backend that reads them). A file rewritten after the check
(in place, mtime restored) can no longer be read in its place, memory-mapped formats included.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..formats.base import Backend
from ..security.confine import open_confined
from ..storage.hashing import check_checksum, check_pin, copy_hashing, file_checksum
from ..storage.remote import scratch
from .read import reading


def checksum(f: Path, backend: Backend, meta: dict[str, Any] | None, computed: str | None, where: str) -> None:
    """The payload against the checksum its metadata records (if it records one)."""
    if not meta or not meta.get("checksum"):
        return
    with reading(f, "verify"):
        if backend.embeds_metadata:
            backend.verify(f, meta)
        else:
            check_checksum(f, str(meta["checksum"]), computed or file_checksum(f), where)


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
        for name in files:
            with open_confined(p.parent, name, what="the companion file", source=p, main=p) as src, \
                    open(folder / name, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        yield copy

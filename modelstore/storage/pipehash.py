"""Hash while copying: one read of each chunk, its sha256 computed in a second thread while
this one writes it and reads the next, so a pinned load's private copy costs about one sha256
pass (hashlib and file reads and writes release the GIL)."""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path

#: bytes per chunk; at most DEPTH chunks wait for the hasher (bounded memory)
CHUNK = 8 << 20
DEPTH = 4


def copy_hashing_overlapped(src: Path, dst: Path) -> str:
    """Copy ``src`` to the new file ``dst``; the sha256 of exactly the bytes written."""
    h = hashlib.sha256()
    pending: queue.Queue[bytes | None] = queue.Queue(maxsize=DEPTH)
    failed: list[BaseException] = []

    def hasher() -> None:
        try:
            while (chunk := pending.get()) is not None:
                h.update(chunk)
        except BaseException as e:  # pragma: no cover - hashlib does not fail on bytes
            failed.append(e)
            while pending.get() is not None:  # keep draining: the reader must never block
                pass

    worker = threading.Thread(target=hasher, name="modelstore-sha256", daemon=True)
    worker.start()
    try:
        with open(src, "rb", buffering=0) as f, open(dst, "xb", buffering=0) as out:
            while chunk := f.read(CHUNK):
                pending.put(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[out.write(view) :]
    finally:
        pending.put(None)
        worker.join()
    if failed:  # pragma: no cover
        raise failed[0]
    return h.hexdigest()

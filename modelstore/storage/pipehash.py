"""Hash while copying: one read of each chunk, its sha256 computed in a second thread while
this one writes it and reads the next, so a pinned load's private copy costs about one sha256
pass (hashlib and file reads and writes release the GIL).

Chunks go into a small ring of reused buffers (fresh 8 MiB allocations cost page faults that
were a third of the copy's time): a buffer returns to the ring when the hasher is done with
it, and this thread has finished writing it before it takes another from the ring.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path

#: bytes per chunk; at most DEPTH chunks wait for the hasher (bounded memory)
CHUNK = 8 << 20
DEPTH = 3


def copy_hashing_overlapped(src: Path, dst: Path) -> str:
    """Copy ``src`` to the new file ``dst``; the sha256 of exactly the bytes written."""
    h = hashlib.sha256()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(DEPTH + 1):
        free.put(bytearray(CHUNK))
    pending: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()

    def hasher() -> None:
        while (item := pending.get()) is not None:
            buf, n = item
            with memoryview(buf) as view:
                h.update(view[:n])
            free.put(buf)

    worker = threading.Thread(target=hasher, name="modelstore-sha256", daemon=True)
    worker.start()
    try:
        with open(src, "rb", buffering=0) as f, open(dst, "xb", buffering=0) as out:
            while True:
                buf = free.get()
                n = f.readinto(buf)
                if not n:
                    break
                pending.put((buf, n))
                with memoryview(buf) as whole:
                    view = whole[:n]
                    while view:
                        view = view[out.write(view) :]
    finally:
        pending.put(None)
        worker.join()
    return h.hexdigest()

"""The cyclic garbage collector held off while modelstore walks a small file.

A scan builds tens of thousands of short-lived containers (a symbolic object per opcode,
a record per zip member) that reference counting frees when the walk ends. With the
collector on, their allocation alone triggers young-generation collections that promote
whatever else is alive, and often one full collection that traverses the whole heap
(66-82 ms here with torch imported, for a `.pt` of 4,000 tensors, where the scan itself
takes ~70 ms; ``benchmarks/gated_loads.py``). Paused, the walk's objects are freed by their
reference counts before the collector ever counts them.

The pause is process-wide (``gc.disable`` is): while it lasts, cyclic garbage that *other*
threads drop is not collected either. So callers pause only walks whose input is small
(:data:`MAX_BYTES`: a fraction of a second), and a long walk runs with the collector on.
Cyclic garbage a hostile file makes the walk itself create waits for the next collection;
the walk holds at most as much as its memo could anyway.

Pauses nest and are shared by threads: the first to start disables the collector if it was
on, the last to end turns it back on. The bookkeeping is written so that an exception
anywhere in it (a KeyboardInterrupt between two of its lines) cannot leave the collector off
for good: at worst it stays off until the next pause ends. A child process forked during a
pause starts with the collector as the parent had it before the pause. Code that turns the
collector off *during* a pause finds it back on afterwards.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

#: Walks of inputs up to this size pause the collector (~0.2 s of walking at most here).
MAX_BYTES = 2 << 20

_lock = threading.Lock()
#: The pauses under way. Weak: a pause whose exit was cut short by an exception (a
#: KeyboardInterrupt between two lines of its ``finally``) stops counting once its frame is
#: gone, so the next pause to end still turns the collector back on.
_active: weakref.WeakSet[_Token] = weakref.WeakSet()
_ours = False  # the collector is off because a pause turned it off


class _Token:
    __slots__ = ("__weakref__",)


@contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """Hold off the cyclic collector for the block, if ``pause`` (see the module doc)."""
    global _ours
    if not pause:
        yield
        return
    token = _Token()
    try:
        with _lock:
            _active.add(token)
            if len(_active) == 1 and gc.isenabled():
                _ours = True  # set first: interrupted before the disable, the exit re-enables
                gc.disable()
        yield
    finally:
        with _lock:
            _active.discard(token)
            if not _active and _ours:
                gc.enable()  # first: interrupted before the flag is cleared, the next pause
                _ours = False  # sees the collector on and takes it over again


def _after_fork_in_child() -> None:
    """The threads that were walking are gone in the child: end their pauses."""
    global _lock, _active, _ours
    _lock = threading.Lock()
    _active = weakref.WeakSet()
    if _ours:
        _ours = False
        gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

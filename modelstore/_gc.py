"""The cyclic garbage collector held off while modelstore walks a file.

A scan builds tens of thousands of short-lived containers (a symbolic object per opcode,
a record per zip member) that reference counting frees when the walk ends. With the
collector on, their allocation alone triggers young-generation collections that promote
whatever else is alive, and often one full collection that traverses the whole heap
(66-82 ms here with torch imported, for a `.pt` of 4,000 tensors, where the scan itself
takes ~70 ms; ``benchmarks/gated_loads.py``). Paused, the walk's objects are freed by their
reference counts before the collector ever counts them, and nothing about what is freed
changes: cyclic garbage a hostile file makes the walk create waits for the next collection
(the walk holds at most as much as its memo could anyway).

The pause is process-wide (``gc.disable`` is), nests and is shared by threads: the first
walk to start disables the collector if it was on, the last to end turns it back on. Code
that turns the collector off *during* a walk finds it back on afterwards.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

_lock = threading.Lock()
_depth = 0
_restore = False

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off the cyclic collector for the duration of the block (see the module doc)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()


def paused(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`collector_paused`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with collector_paused():
            return func(*args, **kwargs)

    return wrapper

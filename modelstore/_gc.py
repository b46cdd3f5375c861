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
(:data:`MAX_PICKLE_BYTES` for a pickle, :data:`MAX_BYTES` for a zip directory or a
safetensors header), and a longer walk runs with the collector on. The walks are linear in
their input (those that were not, found by red teams, are fixed and tested). A pickle of the
densest opcodes walks at ~1.2 MB/s here, and a ``.pt`` whose tensor records reuse the memo
builds a tensor per 16 bytes (~60,000 per MiB, ~1 s), so no pause lasts much more than a
second here; a 4 MiB zip directory (~60,000 members) is read in under one. Cyclic garbage a
hostile file makes the walk itself create waits for the next collection; the walk holds at
most as much as its memo could.

The same bound covers the walks that build a record per entry of a parsed input: ``ms.inspect``'s
two walks of a ``.pt``'s symbolic result (tensor records, plain values: linear in the pickle,
and stopped by a :class:`~._walk.WalkBudget`), and a safetensors header's parse, its tensor
records and its tensors (one per entry; the header is at most 4 MiB). With the collector on,
their allocations promoted what the parse had built and set off full collections (inspect of
a `.pt` grew 2.6x from 10,000 to 20,000 tensors; a safetensors load took 111 ms instead of 43).

A ``.pt`` whose central directory is at most 4 MiB and whose ``data.pkl`` is at most 1 MiB,
in a file of at most 256 MiB (``torchfile.small_archive``: three small reads before anything
is parsed; torch is imported before the pause, not in it), is
scanned, loaded or inspected whole under one pause: per stage, the scan's objects outlived
their stage and the next stage's first collection walked them (the stages are linear in those
sizes; the strict reader's CRC pass reads at most the file, allocating nothing tracked).

Each pause keeps its own state and no lock. It is written inline where the walk is part of a
longer function (the pickle walk, the zip directory), and through :func:`paused` (the same
code as a function) where the walk is a call of its own::

    held: list[bool] = []
    try:
        hold(small, held)
        ...  # the walk
    finally:
        if held:
            del HOLDING[-1:]  # a statement, then the call: nothing can run in between
            gc.enable()

A KeyboardInterrupt is raised where the interpreter checks for signals: on entering a
function and after a call returns, never between statements that call nothing.
:func:`hold` records the pause (two statements) and only then disables the collector, inside
the ``try``; the ``finally`` drops the record and turns the collector back on with no call in
between, before anything else.
So neither an interrupt, nor a finalizer or signal handler that walks a file itself, nor
another thread's pause ending first, nor a kept traceback can leave the collector off after
the pause that turned it off has ended (a context manager could: a signal handled on
entering its ``__exit__`` skips it). At worst an overlapping pause loses its effect early. A
child process forked during a pause starts with the collector on. Code that turns the
collector off *during* a pause finds it back on afterwards.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Walks of a zip directory or a safetensors header up to this size pause the collector.
MAX_BYTES = 4 << 20
#: Walks of a pickle up to this size pause the collector: the densest opcodes (``MARK
#: SETITEMS`` on one dict, two bytes each) walk at ~1.2 MB/s here (red team), and a pickle
#: of ``.pt`` tensor records reusing the memo builds a tensor per 16 bytes.
MAX_PICKLE_BYTES = 1 << 20

#: One entry per pause that turned the collector off and has not ended (for a child after
#: ``fork``). Changed only by statements that call no Python code (``+=`` on a list,
#: ``del`` of a slice), so no signal handler runs between a change and what goes with it.
HOLDING: list[None] = []


def hold(pause: bool, held: list[bool]) -> None:
    """Turn the collector off if ``pause`` and it is on, recording that first."""
    global HOLDING
    if pause and gc.isenabled():
        held += [True]
        HOLDING += [None]
        gc.disable()


def paused(pause: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with the collector paused if ``pause``: the pattern above as a function,
    for walks that are a call of their own (its ``finally`` is the same two statements)."""
    held: list[bool] = []
    try:
        hold(pause, held)
        return fn(*args)
    finally:
        if held:
            del HOLDING[-1:]  # a statement, then the call: nothing can run in between
            gc.enable()


def _after_fork_in_child() -> None:
    """The threads that were walking are gone in the child: their pauses end here."""
    if HOLDING:
        del HOLDING[:]
        gc.enable()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

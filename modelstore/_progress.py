"""Progress for long operations: a tqdm bar on stderr, only on a terminal and only once an
operation runs long enough to matter (0.5 s, or at once for files over 50 MB).

``progress=`` on save/load/convert/export_onnx and ``MODELSTORE_PROGRESS=0/1`` switch it:
False or 0 never, True or 1 always (even off a terminal), None (the default) decides as
above. tqdm is optional (``pip install "modelstore-safe[progress]"``): without it nothing is
shown. Imported lazily, never by ``import modelstore``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ArgumentError

ENV = "MODELSTORE_PROGRESS"
#: Seconds an operation runs before its bar appears (unless forced or big).
DELAY_S = 0.5
#: Files at least this big show their bar at once.
BIG_BYTES = 50 << 20

_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def wanted(progress: Any) -> bool | None:
    """True (always), False (never) or None (decide: a terminal, and long enough)."""
    if progress is not None:
        if not isinstance(progress, bool):
            raise ArgumentError(f"progress must be True, False or None, not {progress!r}")
        return progress
    env = os.environ.get(ENV, "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    return None


class _Quiet:
    def step(self, label: str) -> None:
        pass

    def advance(self, n: int = 1, label: str | None = None) -> None:
        pass


class _Bar:
    """Made on the first step, so an operation refused before its work shows no bar."""

    def __init__(self, make: Any, eager: bool) -> None:
        self.make, self.eager, self.bar, self.started = make, eager, None, False

    def _get(self) -> Any:
        if self.bar is None:
            self.bar = self.make()
        return self.bar

    def step(self, label: str) -> None:
        """A named step starts (the previous one is done)."""
        bar = self._get()
        if self.started:
            bar.update(1)
        self.started = True
        bar.set_postfix_str(label, refresh=self.eager)  # a delayed bar waits for its delay

    def advance(self, n: int = 1, label: str | None = None) -> None:
        """``n`` units are done (files of a scan)."""
        bar = self._get()
        if label is not None:
            bar.set_postfix_str(label[-40:], refresh=False)
        bar.update(n)


@contextmanager
def progress_bar(
    desc: str, total: int, *, progress: Any = None, size: int | None = None, unit: str = "step"
) -> Iterator[Any]:
    """A bar with ``step(label)`` / ``advance(n)``; a silent stand-in when not shown."""
    want = wanted(progress)
    if want is False or (want is None and not _terminal()):
        yield _Quiet()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _Quiet()
        return
    delay = 0.0 if want or (size is not None and size >= BIG_BYTES) else DELAY_S
    handle = _Bar(
        lambda: tqdm(
            total=total,
            desc=desc,
            unit=unit,
            delay=delay,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.1 if delay else 0.0,
        ),
        eager=not delay,
    )
    try:
        yield handle
        if handle.bar is not None and handle.bar.n < total:
            handle.bar.update(total - handle.bar.n)
    finally:
        if handle.bar is not None:
            handle.bar.close()


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False

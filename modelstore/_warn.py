"""Warnings that point at the caller's line, wherever inside modelstore they are raised.

``stacklevel`` counted by hand breaks whenever a call path changes; this counts the frames
inside the modelstore package instead (what Python 3.12's ``skip_file_prefixes`` does), so a
warning from any depth is attributed to the first frame outside it. Library code never
touches the global warning filters.
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Standard-library frames a warning can pass through on its way out (context managers).
_PASSING = (os.sep + "contextlib.py",)


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside modelstore, seen from our caller."""
    frame = sys._getframe(2)  # the caller of warn()
    level = 2
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE) or frame.f_code.co_filename.endswith(_PASSING)
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the user's line (the first frame outside modelstore)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())

"""Parametrized sweeps that run whole in the full suite and sampled in the quick subset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest


def quick_sample(cases: Iterable[Any], every: int = 6) -> list[Any]:
    """``cases`` as parameters, every ``every``-th of them (in order) also in the quick subset
    (``-m "not slow"``) and the rest marked slow: the full suite still runs each one."""
    return [
        case if i % every == 0 else pytest.param(case, marks=pytest.mark.slow)
        for i, case in enumerate(cases)
    ]

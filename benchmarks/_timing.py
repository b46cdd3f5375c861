"""Shared timing helpers for the benchmarks: interleaved rounds, medians, ratio tables.

Every benchmark compares modelstore with the raw library call *in the same run*: each round
times every method once (in a rotating order), so drift of a shared machine hits them alike.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The checkout these benchmarks belong to, imported before any installed modelstore; or, to
#: time an older commit with today's benchmark, ``MODELSTORE_BENCH_ROOT=<a git worktree>``.
ROOT = Path(os.environ.get("MODELSTORE_BENCH_ROOT") or Path(__file__).resolve().parent.parent)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def per_call(fn: Callable[[], object], number: int) -> float:
    """Mean seconds per call over ``number`` calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def interleaved(
    methods: dict[str, Callable[[], object]], repeat: int, number: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each method; rounds interleave the methods, rotating the order."""
    names = list(methods)
    for name in names:
        for _ in range(warmup):
            methods[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(per_call(methods[name], number))
    return {n: statistics.median(ts) for n, ts in times.items()}


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    out = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)

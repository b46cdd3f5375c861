"""Pinned loads on a cold page cache against the raw, unverified load (issue 19).

Before every timed call the file's pages are dropped from the page cache
(``posix_fadvise(POSIX_FADV_DONTNEED)`` after an fsync: no root needed, only this file's
clean pages go), so each call reads the file from the disk. Each call ends by touching one
value per 4 KiB page of every tensor, so a memory-mapped load pays for its reads too.

* raw: ``torch.load(p, weights_only=True)`` (``.pt``) / ``safetensors.torch.load_file``
* ``ms.load(p)``: verified against the sidecar's checksum, not pinned
* ``ms.load(p, sha256=pin)``: pinned (a private copy hashed while it is written)

Goal: pinned <= 1.1x raw on a cold cache.

    python benchmarks/cold_pins.py [--mb 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _timing import fmt_s, table  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import modelstore as ms  # noqa: E402

PAGE_FLOATS = 1024  # float32 values per 4 KiB page


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (they are clean: the file was fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def touch(tensors: Any) -> float:
    """Read one value per page of every tensor (pages of a mapped file are read here)."""
    items = tensors.values() if isinstance(tensors, dict) else tensors.state_dict().values()
    return float(sum(t.reshape(-1)[::PAGE_FLOATS].sum() for t in items))


def cold_rounds(
    path: Path, methods: dict[str, Callable[[], object]], repeat: int
) -> dict[str, float]:
    """Median seconds per call, the file evicted before each call, rounds interleaved."""
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat + 1):  # round 0 warms the code paths up
        for name in names[r % len(names) :] + names[: r % len(names)]:
            evict(path)
            t0 = time.perf_counter()
            touch(methods[name]())
            if r:
                times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(ts) for n, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    width = 1024
    layers = max(1, (args.mb << 20) // (width * width * 4))
    sd = {f"l{i}.weight": torch.randn(width, width) for i in range(layers)}
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        for suffix in (".pt", ".safetensors"):
            path = Path(tmp) / f"mlp{suffix}"
            ms.save(sd, path)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(8 << 20):
                    h.update(chunk)
            pin = h.hexdigest()

            def raw(path: Path = path) -> Any:
                if path.suffix == ".pt":
                    return torch.load(path, weights_only=True)
                return load_file(path)

            t = cold_rounds(
                path,
                {
                    "raw": raw,
                    "ms.load": lambda path=path: ms.load(path),
                    "pinned": lambda path=path, pin=pin: ms.load(path, sha256=pin),
                },
                args.repeat,
            )
            raw_name = "torch.load" if suffix == ".pt" else "load_file"
            rows.append(
                [
                    f"{suffix}, {path.stat().st_size >> 20} MiB",
                    f"{raw_name} {fmt_s(t['raw'])}",
                    fmt_s(t["ms.load"]),
                    fmt_s(t["pinned"]),
                    f"{t['ms.load'] / t['raw']:.2f}x",
                    f"{t['pinned'] / t['raw']:.2f}x",
                ]
            )
            print(rows[-1], flush=True)
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {args.repeat} "
        "interleaved rounds, each call on a cold page cache (the file evicted first)"
    )
    print()
    header = ["file", "raw", "ms.load", "pinned", "ms.load / raw", "pinned / raw"]
    print(table("Cold page cache: pinned loads against the raw load", header, rows))


if __name__ == "__main__":
    main()

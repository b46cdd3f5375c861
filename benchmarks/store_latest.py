"""Store.load(name) (the latest version) as versions pile up, N doubling; against ms.load of
the same file, same run, interleaved. Also the time to publish each batch of versions.

Goal (issue 19): latest is O(1) in manifest reads (its ratio to a plain load flat as N
doubles); publishing N versions is not O(N^2).

    python benchmarks/store_latest.py [--counts 100,200,400] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _timing import fmt_s, interleaved, table  # noqa: E402

import modelstore as ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="100,200,400")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    sd = {"w": torch.zeros(16)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ms.Store(tmp)
        have, prev = 0, None
        for n in counts:
            t0 = time.perf_counter()
            while have < n:
                store.save(sd, "m")
                have += 1
            publish = (time.perf_counter() - t0) / (n - (prev or 0))
            path = store.path("m")
            t = interleaved(
                {
                    "ms.load(path)": lambda: ms.load(path),
                    "Store.load(name)": lambda: store.load("m"),
                },
                repeat=args.repeat,
                number=5,
            )
            rows.append(
                [
                    f"{n:,}",
                    fmt_s(publish),
                    fmt_s(t["ms.load(path)"]),
                    fmt_s(t["Store.load(name)"]),
                    f"{t['Store.load(name)'] / t['ms.load(path)']:.2f}x",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
            prev = n
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}; local folder store; median of "
        f"{args.repeat} interleaved rounds of 5 calls"
    )
    print()
    print(
        table(
            "Store.load of the latest version as versions pile up",
            [
                "versions",
                "publish s / version (this batch)",
                "ms.load(path)",
                "Store.load(name)",
                "ratio",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()

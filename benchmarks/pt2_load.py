"""Loading a ``.pt2`` (torch.export archive): ``ms.load`` (private copy + checks) against the
raw ``torch.export.load``, and ``ms.scan`` alone, for an MLP of ``--mb`` megabytes of weights.

    python benchmarks/pt2_load.py [--mb 50 200] [--repeat 5]

Rounds interleave the methods (see _timing.py); each figure is the median seconds per call.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

from _timing import fmt_s, interleaved, table

import modelstore as ms


def build(mb: float, folder: Path) -> Path:
    import torch

    width = 1024
    layers = max(1, round(mb * 1e6 / (width * width * 4)))
    net = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).eval()
    path = folder / f"mlp-{mb:g}.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(2, width),)), str(path))
    return path


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, nargs="+", default=[50, 200])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.mb:
            path = build(mb, Path(tmp))
            t = interleaved(
                {
                    "torch": lambda p=path: torch.export.load(str(p)),
                    "ms_load": lambda p=path: ms.load(p),
                    "ms_scan": lambda p=path: ms.scan(p),
                },
                repeat=args.repeat,
            )
            rows.append(
                [
                    f"{os.path.getsize(path) / 1e6:.0f} MB",
                    fmt_s(t["torch"]),
                    fmt_s(t["ms_load"]),
                    f"{t['ms_load'] / t['torch']:.2f}x",
                    fmt_s(t["ms_scan"]),
                ]
            )
    print(
        table(
            "torch.export archives: load",
            ["file", "torch.export.load", "ms.load", "ratio", "ms.scan"],
            rows,
        )
    )
    print(f"\nload average: {os.getloadavg()}")


if __name__ == "__main__":
    main()

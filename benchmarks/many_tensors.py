"""Scaling with the tensor count: a ``.pt`` state dict and a ``.safetensors`` file of N small
tensors, N doubling; modelstore against the raw loader in the same run, interleaved.

* ``.pt``:          ms.scan, ms.load, ms.inspect vs ``torch.load(p, weights_only=True)``
* ``.safetensors``: ms.load, ms.inspect vs ``safetensors.torch.load_file`` / ``safe_open(...).keys()``

Goal (issue 19): linear: time per tensor flat as N doubles (the "x per 2N" column ~2.0).

    python benchmarks/many_tensors.py [--counts 10000,20000,40000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _timing import fmt_s, interleaved, table  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import modelstore as ms  # noqa: E402


def state(n: int) -> dict[str, torch.Tensor]:
    return {f"layers.{i}.weight": torch.full((4,), float(i)) for i in range(n)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="10000,20000,40000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {"pt": {}, "st": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            sd = state(n)
            pt = Path(tmp) / f"m{n}.pt"
            st = Path(tmp) / f"m{n}.safetensors"
            torch.save(sd, pt)
            save_file(sd, st)
            results["pt"][n] = interleaved(
                {
                    "torch.load": lambda: torch.load(pt, weights_only=True),
                    "ms.scan": lambda: ms.scan(pt),
                    "ms.load": lambda: ms.load(pt),
                    "ms.inspect": lambda: ms.inspect(pt),
                },
                repeat=args.repeat,
            )
            results["st"][n] = interleaved(
                {
                    "load_file": lambda: load_file(st),
                    "safe_open keys": lambda: safe_open(st, "pt").keys(),
                    "ms.load": lambda: ms.load(st),
                    "ms.inspect": lambda: ms.inspect(st),
                },
                repeat=args.repeat,
            )
            print(n, results["pt"][n], results["st"][n], flush=True)
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}; median of {args.repeat} "
        "interleaved rounds, warm page cache"
    )
    for kind, raw_of in (
        ("pt", {"ms.scan": "torch.load", "ms.load": "torch.load", "ms.inspect": "torch.load"}),
        ("st", {"ms.load": "load_file", "ms.inspect": "safe_open keys"}),
    ):
        rows = []
        for i, n in enumerate(counts):
            t = results[kind][n]
            for ours, raw in raw_of.items():
                prev = results[kind][counts[i - 1]][ours] if i else None
                growth = (
                    f"{t[ours] / prev:.2f}x per 2N"
                    if prev and counts[i] == 2 * counts[i - 1]
                    else ""
                )
                rows.append(
                    [
                        f"{n:,}",
                        ours,
                        fmt_s(t[ours]),
                        raw,
                        fmt_s(t[raw]),
                        f"{t[ours] / t[raw]:.2f}x",
                        growth,
                    ]
                )
        title = ".pt (torch.save of a state dict)" if kind == "pt" else ".safetensors"
        print()
        print(
            table(
                f"{title}: N tensors",
                ["tensors", "modelstore", "time", "raw", "raw time", "ratio", "growth"],
                rows,
            )
        )


if __name__ == "__main__":
    main()

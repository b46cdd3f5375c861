"""ms.save against the durable raw save (write + fsync), same run, interleaved.

* scikit-learn RandomForest (digits): ``joblib.dump(m, p)`` + fsync vs ``ms.save(m, p)``
* torch weights (an MLP of Linear(2048, 2048)): ``safetensors.torch.save_file`` + fsync vs ``ms.save(net, p)``

Goal (issue 19): <= 1.1x. ``ms.save`` returns once the file is durable; the ModelInfo's
sha256 is finished in a background thread and read on first access, so the table gives both
the save and the save plus reading ``info.sha256`` (what an eager digest would cost).

    python benchmarks/save_overhead.py [--layers 24] [--trees 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joblib  # noqa: E402
import torch  # noqa: E402
from _timing import fmt_s, table  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import modelstore as ms  # noqa: E402


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=args.trees, random_state=0).fit(x, y)
    net = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(args.layers)])
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Path(tmp)

        def raw_forest() -> None:
            joblib.dump(forest, d / "raw.joblib")
            fsync(d / "raw.joblib")

        def raw_torch() -> None:
            save_file(sd, d / "raw.safetensors")
            fsync(d / "raw.safetensors")

        cases = [
            (
                "RandomForest ({} trees, {:.0f} MiB)",
                args.trees,
                "joblib.dump + fsync",
                raw_forest,
                forest,
                d / "ms.joblib",
                d / "raw.joblib",
            ),
            (
                "torch MLP ({} x Linear(2048, 2048), {:.0f} MiB)",
                args.layers,
                "save_file + fsync",
                raw_torch,
                net,
                d / "ms.safetensors",
                d / "raw.safetensors",
            ),
        ]
        for label, n, raw_name, raw, model, ours, raw_path in cases:
            t = rounds(raw, model, ours, args.repeat)
            size = raw_path.stat().st_size / 2**20
            rows.append(
                [
                    label.format(n, size),
                    raw_name,
                    fmt_s(t["raw"]),
                    fmt_s(t["save"]),
                    f"{t['save'] / t['raw']:.2f}x",
                    fmt_s(t["digest"]),
                    f"{t['digest'] / t['raw']:.2f}x",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; median of {args.repeat} interleaved rounds"
    )
    print()
    print(
        table(
            "ms.save vs the durable raw save",
            [
                "model",
                "raw",
                "raw time",
                "ms.save",
                "ratio",
                "ms.save + reading info.sha256",
                "ratio",
            ],
            rows,
        )
    )


def rounds(raw: Any, model: Any, path: Path, repeat: int) -> dict[str, float]:
    """Median seconds of: the raw save; ms.save until it returns; ms.save until its
    ``info.sha256`` (finished off the save's path) is read. Every ms.save's digest is waited
    for before the next timed call, so no background hashing overlaps another measurement."""
    times: dict[str, list[float]] = {"raw": [], "save": [], "digest": []}
    for r in range(repeat + 1):  # round 0 warms up
        for name in ("raw", "save", "digest")[r % 3 :] + ("raw", "save", "digest")[: r % 3]:
            t0 = time.perf_counter()
            if name == "raw":
                raw()
            else:
                info = ms.save(model, path)
                if name == "digest":
                    assert info.sha256
            elapsed = time.perf_counter() - t0
            if name == "save":
                assert info.sha256  # settle before the next measurement
            if r:
                times[name].append(elapsed)
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()

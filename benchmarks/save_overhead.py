"""ms.save against the durable raw save (write + fsync), same run, interleaved.

* scikit-learn RandomForest (digits): ``joblib.dump(m, p)`` + fsync vs ``ms.save(m, p)``
* torch weights (an MLP of Linear(2048, 2048)): ``safetensors.torch.save_file`` + fsync vs ``ms.save(net, p)``
* then the forest read back: ``joblib.load`` and ``ms.load`` of ``ms.save``'s file (written by
  the C pickler, not byte-identical to ``joblib.dump``'s) against ``joblib.dump``'s file

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
import threading
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

        def raw_forest(path: Path) -> None:
            joblib.dump(forest, path)
            fsync(path)

        def raw_torch(path: Path) -> None:
            save_file(sd, path)
            fsync(path)

        cases = [
            ("RandomForest ({} trees, {:.0f} MiB)", args.trees, "joblib.dump + fsync",
             raw_forest, forest, ".joblib"),
            ("torch MLP ({} x Linear(2048, 2048), {:.0f} MiB)", args.layers,
             "save_file + fsync", raw_torch, net, ".safetensors"),
        ]  # fmt: skip
        for label, n, raw_name, raw, model, suffix in cases:
            for fresh in (False, True):
                t = rounds(raw, model, d, suffix, fresh, args.repeat)
                size = (d / f"raw{suffix}").stat().st_size / 2**20
                rows.append(
                    [
                        label.format(n, size),
                        "a new file" if fresh else "overwrite",
                        raw_name,
                        fmt_s(t["raw"]),
                        fmt_s(t["save"]),
                        f"{t['save'] / t['raw']:.2f}x",
                        fmt_s(t["digest"]),
                        f"{t['digest'] / t['raw']:.2f}x",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
        loads = reading_back(forest, d, args.repeat)
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
                "to",
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
    print()
    print(
        table(
            "Reading the forest back: ms.save's file (the C pickler) vs joblib.dump's",
            ["file", "size", "joblib.load", "ms.load"],
            loads,
        )
    )


def reading_back(forest: Any, d: Path, repeat: int) -> list[list[str]]:
    """The file ms.save writes is a joblib file that is not byte-identical to joblib.dump's:
    its size and load times against joblib.dump's, interleaved (median of ``repeat``)."""
    files = {"joblib.dump": d / "back-raw.joblib", "ms.save": d / "back-ms.joblib"}
    joblib.dump(forest, files["joblib.dump"])
    ms.save(forest, files["ms.save"])
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for name, path in files.items():
            for how, load in (("joblib.load", joblib.load), ("ms.load", ms.load)):
                start = time.perf_counter()
                load(path)
                times.setdefault((name, how), []).append(time.perf_counter() - start)
    return [
        [
            f"{name}'s",
            f"{path.stat().st_size:,} B",
            fmt_s(statistics.median(times[name, "joblib.load"])),
            fmt_s(statistics.median(times[name, "ms.load"])),
        ]
        for name, path in files.items()
    ]


def settle() -> None:
    """Wait for what a save leaves running (the digest thread, the removal of a replaced
    file), so no background work overlaps the next measurement."""
    for t in threading.enumerate():
        if t.name.startswith("modelstore-"):
            t.join()


def rounds(
    raw: Any, model: Any, d: Path, suffix: str, fresh: bool, repeat: int
) -> dict[str, float]:
    """Median seconds of: the raw save; ms.save until it returns; ms.save until its
    ``info.sha256`` (finished off the save's path) is read. ``fresh``: every call writes a
    new file (the previous one removed untimed), else each overwrites its own file (the raw
    save truncates it, ms.save renames over it). Background work is waited for, untimed,
    before the next call."""
    times: dict[str, list[float]] = {"raw": [], "save": [], "digest": []}
    for r in range(repeat + 1):  # round 0 warms up
        for name in ("raw", "save", "digest")[r % 3 :] + ("raw", "save", "digest")[: r % 3]:
            path = d / f"{'raw' if name == 'raw' else 'ms'}{suffix}"
            if fresh:
                path.unlink(missing_ok=True)
                fsync(d)
            t0 = time.perf_counter()
            if name == "raw":
                raw(path)
            else:
                info = ms.save(model, path)
                if name == "digest":
                    assert info.sha256
            elapsed = time.perf_counter() - t0
            if name != "raw":
                assert info.sha256
                settle()
            if r:
                times[name].append(elapsed)
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()

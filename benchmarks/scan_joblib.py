"""Scan cost against load cost for a ~100 MB joblib RandomForest (goal: scan <= 10% of load).

Compares, in one process with a warm page cache, median of --repeat runs:
  joblib.load(path)        the raw load (runs any code in the file)
  ms.scan(path)            modelstore's static scan (opcodes only, array bytes skipped)
  ms.load(path)            scan + verify checksum + allow-listed unpickling

    python benchmarks/scan_joblib.py [--mb 100] [--repeat 5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import joblib
import sklearn
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import modelstore as ms


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def build(target_mb: float) -> RandomForestClassifier:
    """Fully grown trees on noisy labels, as many as make about ``target_mb`` of joblib file."""
    import pickle

    x, y = make_classification(
        n_samples=20_000, n_features=20, n_informative=10, flip_y=0.3, random_state=0
    )
    pilot = RandomForestClassifier(n_estimators=4, n_jobs=-1, random_state=0).fit(x, y)
    per_tree = len(pickle.dumps(pilot, protocol=5)) / 4 / 1e6
    n_trees = max(1, round(target_mb / per_tree))
    return RandomForestClassifier(n_estimators=n_trees, n_jobs=-1, random_state=0).fit(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = build(args.mb)
    lines = [
        "## scan vs load, joblib RandomForest",
        "",
        f"python {platform.python_version()}, scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
        f"{len(model.estimators_)} trees; median of {args.repeat} runs, warm page cache",
        "",
        "| file | size MB | joblib.load s | ms.scan s | scan / load | ms.load s | ms.load / joblib.load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, compress in (("uncompressed", 0), ("zlib level 3", 3)):
            path = Path(tmp) / f"forest_{compress}.joblib"
            ms.save(model, path, compress=compress)
            size = path.stat().st_size / 1e6
            t_load = median_time(lambda: joblib.load(path), args.repeat)
            t_scan = median_time(lambda: ms.scan(path), args.repeat)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ms.PickleWarning)
                t_ms = median_time(lambda: ms.load(path), args.repeat)
            lines.append(
                f"| {label} | {size:.1f} | {t_load:.3f} | {t_scan:.3f} | {t_scan / t_load:.1%} | "
                f"{t_ms:.3f} | {t_ms / t_load:.2f}x |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

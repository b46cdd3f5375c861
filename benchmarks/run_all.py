"""Run every benchmark at a size that fits in under 10 minutes together; print each one's table.

Each runs as a script (never a test), in a child process importing this checkout, with its own
time limit; a failure or time-out is reported and the next one runs.

    python benchmarks/run_all.py [--only predict_overhead,many_tensors]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: name -> (arguments, seconds allowed)
RUNS: dict[str, tuple[list[str], int]] = {
    "predict_overhead": (["--repeat", "5", "--number", "200"], 150),
    "many_tensors": (["--counts", "2000,4000,8000", "--repeat", "2"], 150),
    "store_latest": (["--counts", "100,200,400", "--repeat", "3"], 120),
    "save_overhead": (["--layers", "8", "--trees", "100", "--repeat", "3"], 120),
    "onnx_predict": (["--repeat", "3", "--number", "500"], 60),
    "quantize_onnx": (["--hidden", "1024", "--repeat", "3", "--number", "100"], 90),
    "scan_joblib": (["--mb", "20", "--repeat", "3"], 60),
    "load_torch": (["--sizes", "20", "--repeat", "2"], 90),
    "storage": (["--size-mb", "32"], 60),
    "gated_loads": (
        ["--counts", "2000,4000", "--mb", "64", "--keys", "100000", "--repeat", "3"],
        150,
    ),
    "serve_vs_starlette": (["--requests", "400", "--repeat", "1"], 240),
    "keras_load": (["--repeat", "1"], 150),
    "keras_scan": (["--repeat", "3", "--layers", "5000"], 60),
    "cold_pins": (["--mb", "64", "--repeat", "2"], 90),
    "import_time": (["--repeat", "11"], 60),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(RUNS))
    args = parser.parse_args()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    summary = []
    for name in args.only.split(","):
        argv, limit = RUNS[name]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(HERE / f"{name}.py"), *argv],
                env=env,
                timeout=limit,
                capture_output=True,
                text=True,
            )
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            out = proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            status, out = f"timed out after {limit} s", ""
        took = time.perf_counter() - t0
        summary.append(f"{name}: {status} in {took:.0f} s")
        print(f"\n## {name} ({status}, {took:.0f} s)\n\n{out.strip()}", flush=True)
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()

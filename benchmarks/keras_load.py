"""Time ms.load of Keras models against plain keras.saving.load_model, and the part of it
spent on the declared-size check (security/kerassize.py: the StatelessScope build).

Each method runs in a fresh process; the model is saved once per format. Run by hand:

    .venv/bin/python benchmarks/keras_load.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE = """
import warnings; warnings.simplefilter("ignore")
import keras
m = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
print(m.count_params())
m.save({keras!r}); m.save({h5!r})
"""

RUN = """
import time, warnings; warnings.simplefilter("ignore")
import keras, modelstore as ms
from modelstore.security import kerasfile, kerassize
path, method = {path!r}, {method!r}
t = time.perf_counter()
if method == "keras":
    keras.saving.load_model(path)
elif method == "ms":
    ms.load(path)
else:
    kind = kerasfile.kind_of(__import__("pathlib").Path(path), open(path, "rb").read(8))
    configs = kerasfile.read_configs(__import__("pathlib").Path(path), kind)[0]
    t = time.perf_counter()
    kerassize.check_load(__import__("pathlib").Path(path), kind, configs, safe=True)
print("SECONDS", time.perf_counter() - t)
"""


def run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"keras": str(Path(tmp) / "m.keras"), "h5": str(Path(tmp) / "m.h5")}
        params = run(MAKE.format(**paths)).split()[-1]
        print(
            f"MobileNetV2 (weights=None), {params} parameters; median of {args.repeat} fresh processes\n"
        )
        print("| file | keras.saving.load_model | ms.load | size check alone |")
        print("| --- | --- | --- | --- |")
        for fmt, path in paths.items():
            row = []
            for method in ("keras", "ms", "check"):
                times = [
                    float(run(RUN.format(path=path, method=method)).split("SECONDS")[1])
                    for _ in range(args.repeat)
                ]
                row.append(f"{statistics.median(times):.2f} s")
            print(f"| .{fmt} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

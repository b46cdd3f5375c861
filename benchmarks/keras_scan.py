"""Time ms.scan of Keras files, and the config check's shape walk (security/kerasshapes.py)
as the layer count doubles.

Part 1 (``--against``): ms.scan of MobileNetV2 and EfficientNetV2B0 (``weights=None``) as
``.h5`` and ``.keras``, in this checkout and in another worktree, each in its own process
(imports done before the clock starts), interleaved. Part 2: ``kerassize.check_config`` and
the walk alone on synthetic Sequential and Functional configs of N and 2N Dense layers
(Functional layers listed outputs first, the walk's worst order). Run by hand:

    .venv/bin/python benchmarks/keras_scan.py --repeat 5 --against /tmp/old --layers 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SCAN = """
import sys, time, warnings
warnings.simplefilter("ignore")
import modelstore as ms
ms.scan(sys.argv[1])  # imports and caches, off the clock
times = []
for _ in range(5):
    t = time.perf_counter(); ms.scan(sys.argv[1]); times.append(time.perf_counter() - t)
print(min(times))
"""

MAKE = """
import sys, warnings; warnings.simplefilter("ignore")
import keras
for name, make in (("mobilenet", keras.applications.MobileNetV2),
                   ("efficientnet", keras.applications.EfficientNetV2B0)):
    m = make(weights=None, input_shape=(224, 224, 3))
    m.save(f"{sys.argv[1]}/{name}.keras"); m.save(f"{sys.argv[1]}/{name}.h5")
"""


def _scan(root: Path, path: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", SCAN, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def _sequential(n: int) -> dict[str, Any]:
    layers: list[dict[str, Any]] = [
        {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [None, 8]}}
    ]
    layers += [{"class_name": "Dense", "config": {"name": f"d{i}", "units": 8}} for i in range(n)]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


def _functional(n: int) -> dict[str, Any]:
    def tensor(name: str) -> dict[str, Any]:
        history = {"shape": [None, 8], "dtype": "float32", "keras_history": [name, 0, 0]}
        return {"class_name": "__keras_tensor__", "config": history}

    layers: list[dict[str, Any]] = [
        {
            "class_name": "InputLayer",
            "name": "x",
            "config": {"name": "x", "batch_shape": [None, 8]},
            "inbound_nodes": [],
        }
    ]
    prev = "x"
    for i in range(n):
        node = {"args": [tensor(prev)], "kwargs": {}}
        layers.append(
            {
                "class_name": "Dense",
                "name": f"d{i}",
                "config": {"name": f"d{i}", "units": 8},
                "inbound_nodes": [node],
            }
        )
        prev = f"d{i}"
    layers.reverse()
    config = {"name": "m", "layers": layers, "input_layers": [["x", 0, 0]]}
    config["output_layers"] = [[prev, 0, 0]]
    return {"class_name": "Functional", "config": config}


def _walks(n: int, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    from modelstore.security import kerassize
    from modelstore.security.kerasshapes import inferred_inputs

    print(f"\nconfig check of N Dense layers (best of {repeat}):")
    print("| config | N | walk | check_config | 2N walk / N walk | 2N check / N check |")
    print("|---|---:|---:|---:|---:|---:|")
    for make in (_sequential, _functional):
        times = {}
        for size in (n, 2 * n):
            config = make(size)
            walk, check = [], []
            for _ in range(repeat):
                t = time.perf_counter()
                inferred_inputs(config)
                walk.append(time.perf_counter() - t)
                t = time.perf_counter()
                kerassize.check_config(config, [72 * size])
                check.append(time.perf_counter() - t)
            times[size] = (min(walk), min(check))
        (w1, c1), (w2, c2) = times[n], times[2 * n]
        print(
            f"| {make.__name__[1:]} | {n:,} | {w1:.3f} s | {c1:.3f} s | "
            f"{w2 / w1:.2f} | {c2 / c1:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", type=Path, help="another worktree, timed interleaved")
    parser.add_argument("--layers", type=int, default=20_000)
    args = parser.parse_args()
    if args.against:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-c", MAKE, tmp], check=True, capture_output=True)
            print(f"ms.scan, best of 5 per process, median of {args.repeat} processes:")
            print("| file | this checkout | against | ratio |")
            print("|---|---:|---:|---:|")
            for name in (
                "mobilenet.h5",
                "mobilenet.keras",
                "efficientnet.h5",
                "efficientnet.keras",
            ):
                new, old = [], []
                for _ in range(args.repeat):
                    new.append(_scan(ROOT, Path(tmp) / name))
                    old.append(_scan(args.against, Path(tmp) / name))
                a, b = statistics.median(new), statistics.median(old)
                print(f"| {name} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {a / b:.2f}x |")
    _walks(args.layers, args.repeat)


if __name__ == "__main__":
    main()

"""Time ms.load of Keras models against plain keras.saving.load_model, and the part of it
spent on the declared-size check (security/kerassize.py: the StatelessScope build).

Each method runs in a fresh process, the methods interleaved; the model is saved once per
format. Run by hand:

    .venv/bin/python benchmarks/keras_load.py --repeat 3
    .venv/bin/python benchmarks/keras_load.py --repeat 6 --warm   # one process, repeated loads
    .venv/bin/python benchmarks/keras_load.py --repeat 7 --against /tmp/old  # a worktree's ms.load too
    .venv/bin/python benchmarks/keras_load.py --repeat 8 --against /tmp/old --pairs  # overheads only
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

#: the checkout timed (``MODELSTORE_BENCH_ROOT``: another worktree, as in ``_timing.py``)
ROOT = Path(os.environ.get("MODELSTORE_BENCH_ROOT") or Path(__file__).resolve().parents[1])

MAKE = """
import warnings; warnings.simplefilter("ignore")
import keras
if {model!r} == "dense":  # 12 x Dense(2048): few layers, large weights (~184 MiB)
    m = keras.Sequential([keras.Input((1024,))] + [keras.layers.Dense(2048) for _ in range(12)])
elif {model!r} == "efficientnet":  # a Normalization given its statistics (preprocessing)
    m = keras.applications.EfficientNetV2B0(weights=None, input_shape=(224, 224, 3))
else:
    m = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
print(m.count_params())
m.save({keras!r}); m.save({h5!r})
"""

_NAMES = {
    "dense": "12 x Dense(2048)",
    "mobilenet": "MobileNetV2 (weights=None)",
    "efficientnet": "EfficientNetV2B0 (weights=None)",
}

RUN = """
import time, warnings; warnings.simplefilter("ignore")
import keras, modelstore as ms
from modelstore.security import kerasfile, kerasload
path, method = {path!r}, {method!r}
inner, spent = keras.saving.load_model, [0.0]
def timed(*a, **k):  # Keras' own load inside ms.load: the rest is modelstore's overhead
    t = time.perf_counter()
    try:
        return inner(*a, **k)
    finally:
        spent[0] += time.perf_counter() - t
keras.saving.load_model = timed
t = time.perf_counter()
if method == "keras":
    keras.saving.load_model(path)
elif method == "ms":
    ms.load(path)
else:
    kind = kerasfile.kind_of(__import__("pathlib").Path(path), open(path, "rb").read(8))
    configs = kerasfile.read_configs(__import__("pathlib").Path(path), kind)[0]
    t = time.perf_counter()
    kerasload.check_load(__import__("pathlib").Path(path), kind, configs, safe=True)
total = time.perf_counter() - t
print("SECONDS", total, total - spent[0])
"""

WARM = """
import statistics, time, warnings; warnings.simplefilter("ignore")
import keras, modelstore as ms
path, repeat = {path!r}, {repeat!r}
ms.load(path); keras.saving.load_model(path)  # first loads: imports, the guard child
times = {{"keras": [], "ms": []}}
for r in range(repeat):
    for method in (("keras", "ms") if r % 2 == 0 else ("ms", "keras")):
        t = time.perf_counter()
        keras.saving.load_model(path) if method == "keras" else ms.load(path)
        times[method].append(time.perf_counter() - t)
print("SECONDS", statistics.median(times["keras"]), statistics.median(times["ms"]))
"""


def run(code: str, root: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    # run in ``root``: ``python -c`` puts the working directory first on sys.path, so from
    # another checkout PYTHONPATH alone would import that checkout's modelstore instead
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--model",
        choices=["mobilenet", "dense", "efficientnet"],
        default="mobilenet",
        help="dense: ~184 MiB; efficientnet: EfficientNetV2B0, statistics in its config",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="one process loading each file repeatedly (after a first load of each)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (a git worktree of an older commit): its ms.load is timed in "
        "the same rounds",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="with --against: time only the two checkouts' ms.load, in turn (their overheads "
        "outside Keras' own load are steadier than ratios to a separate Keras load)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"keras": str(Path(tmp) / "m.keras"), "h5": str(Path(tmp) / "m.h5")}
        params = run(MAKE.format(model=args.model, **paths)).split()[-1]
        how = "loads in one process" if args.warm else "fresh processes"
        print(f"{_NAMES[args.model]}, {params} parameters; median of {args.repeat} {how}\n")
        if args.warm:
            print("| file | keras.saving.load_model | ms.load | ratio |")
            print("| --- | --- | --- | --- |")
            for fmt, path in paths.items():
                out = run(WARM.format(path=path, repeat=args.repeat)).split("SECONDS")[1]
                k, m = (float(v) for v in out.split())
                print(f"| .{fmt} | {k:.2f} s | {m:.2f} s | {m / k:.2f}x |", flush=True)
            print(
                f"\nload average {os.getloadavg()[0]:.1f} at the end; one process, loads repeated"
            )
            return
        # overhead: ms.load's time outside any keras.saving.load_model it runs (Keras' own load
        # varies by +-25% between processes here; what modelstore adds is steadier). A .keras
        # load that finishes its size check's build (formats/keras/reuse.py) runs none: all of
        # its time counts
        other = f" | ms.load ({args.against.name}) | ratio | overhead" if args.against else ""
        print(
            f"| file | keras.saving.load_model | ms.load | ratio | overhead{other} "
            "| size check alone |"
        )
        print(
            "| --- | --- | --- | --- | ---" + (" | --- | --- | ---" if other else "") + " | --- |"
        )
        for fmt, path in paths.items():
            times: dict[str, list[tuple[float, float]]] = {"keras": [], "ms": [], "check": []}
            if args.pairs:
                times = {"ms": [], "against": []}
            if args.against:
                times["against"] = []
            for r in range(args.repeat):  # interleaved, the order alternating
                for method in list(times) if r % 2 == 0 else reversed(list(times)):
                    code = RUN.format(path=path, method="ms" if method == "against" else method)
                    out = run(code, args.against if method == "against" else ROOT)
                    total, outside = (float(v) for v in out.split("SECONDS")[1].split())
                    times[method].append((total, outside))
            med = {m: statistics.median(t for t, _ in ts) for m, ts in times.items()}
            ovh = {m: statistics.median(o for _, o in ts) for m, ts in times.items()}
            if args.pairs:
                spread = {
                    m: f"{min(o for _, o in ts):.2f}–{max(o for _, o in ts):.2f}"
                    for m, ts in times.items()
                }
                print(
                    f"| .{fmt} pairs | overhead {ovh['ms']:.2f} s ({spread['ms']}) | "
                    f"{args.against.name}: {ovh['against']:.2f} s ({spread['against']}) |",
                    flush=True,
                )
                continue
            cells = [
                f"{med['keras']:.2f} s",
                f"{med['ms']:.2f} s",
                f"{med['ms'] / med['keras']:.2f}x",
                f"{ovh['ms']:.2f} s",
            ]
            if args.against:
                cells += [
                    f"{med['against']:.2f} s",
                    f"{med['against'] / med['keras']:.2f}x",
                    f"{ovh['against']:.2f} s",
                ]
            cells.append(f"{med['check']:.2f} s")
            print(f"| .{fmt} | " + " | ".join(cells) + " |", flush=True)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

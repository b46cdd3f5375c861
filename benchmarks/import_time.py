"""What ``import modelstore`` costs in a fresh interpreter, with and without compiled bytecode.

Each sample is a new ``python`` process that times only its import statement
(``time.perf_counter`` around it), so the interpreter's own start-up is not counted. Rounds
interleave the statements (rotating the order), so drift of a shared machine hits them alike:

* ``import modelstore`` and ``import modelstore.cli`` (what the ``modelstore`` command loads);
* ``import joblib`` and ``import safetensors``: two light libraries, for scale.

Two cases, both printed:

* **bytecode cached**, what an installed wheel gives (pip compiles ``.pyc`` files at install):
  ``PYTHONPYCACHEPREFIX`` points at a temporary folder, one warm-up run fills it;
* **no bytecode**, a source checkout under ``PYTHONDONTWRITEBYTECODE=1`` (``-B``): every
  modelstore module is compiled on each import (the standard library keeps its own cache).

Both import a copy of this checkout's ``modelstore`` package in a temporary folder (so no
``__pycache__`` left in the checkout can serve the second case); each probe checks that the
copy is what it imported.

Goal (issue 19): ``import modelstore`` < 50 ms.

    python benchmarks/import_time.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import ROOT, fmt_s, table

STATEMENTS = {
    "import modelstore": "import modelstore",
    "import modelstore.cli": "import modelstore.cli",
    "import joblib": "import joblib",
    "import safetensors": "import safetensors",
}
PROBE = (
    "import time, sys; t = time.perf_counter(); {stmt}; el = time.perf_counter() - t\n"
    "m = sys.modules.get('modelstore')\n"
    "assert m is None or m.__file__.startswith({where!r}), m.__file__\n"
    "print(el)"
)


def sample(stmt: str, where: str, env: dict[str, str], flags: list[str]) -> float:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", PROBE.format(stmt=stmt, where=where)],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{stmt!r} failed:\n{proc.stderr}")
    return float(proc.stdout)


def run_case(
    where: str, env: dict[str, str], flags: list[str], repeat: int
) -> dict[str, list[float]]:
    names = list(STATEMENTS)
    for name in names:  # warm-up: fills the bytecode cache where there is one, and the disk cache
        sample(STATEMENTS[name], where, env, flags)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(sample(STATEMENTS[name], where, env, flags))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.repeat} fresh interpreters per statement and case, interleaved"
    )
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as where:
        shutil.copytree(
            ROOT / "modelstore",
            Path(where) / "modelstore",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        base["PYTHONPATH"] = os.pathsep.join([where, os.environ.get("PYTHONPATH", "")])
        cases = {
            "bytecode cached (installed)": (dict(base, PYTHONPYCACHEPREFIX=cache), []),
            "no bytecode (-B)": (dict(base, PYTHONDONTWRITEBYTECODE="1"), ["-B"]),
        }
        for title, (env, flags) in cases.items():
            times = run_case(where, env, flags, args.repeat)
            rows = [
                [name, fmt_s(statistics.median(ts)), fmt_s(min(ts)), fmt_s(max(ts))]
                for name, ts in times.items()
            ]
            print()
            print(table(title, ["statement", "median", "min", "max"], rows))


if __name__ == "__main__":
    main()

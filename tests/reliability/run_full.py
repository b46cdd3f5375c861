"""Run the full reliability suite by hand and print the figures for docs/reliability.md.

    python tests/reliability/run_full.py [--out figures.md]

Sets MODELSTORE_FULL=1 (100 kills per format family, 4 x 100 concurrent saves, 400 fuzz
cases per format) and collects what each test recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.jsonl"
        env = dict(os.environ, MODELSTORE_FULL="1", MODELSTORE_RELIABILITY_REPORT=str(report))
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/reliability"], cwd=root, env=env
        )
        minutes = (time.perf_counter() - started) / 60
        rows: dict[str, list[dict[str, object]]] = defaultdict(list)
        for line in report.read_text().splitlines() if report.exists() else []:
            item = json.loads(line)
            rows[str(item.pop("section"))].append(item)
    lines = [f"Full run: pytest exit code {proc.returncode}, {minutes:.1f} minutes.", ""]
    for section, items in rows.items():
        keys = list(items[0])
        lines += [f"### {section}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(i.get(k, "")) for k in keys) + " |" for i in items]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

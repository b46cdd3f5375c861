"""``modelstore scan``: a security verdict for files and folders; exit 0 safe, 1 unsafe, 2 unknown."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from .._info import Finding, ScanReport
from ..api import scan
from ..errors import ModelstoreError
from .output import print_scan

EXAMPLE = ("examples:\n  modelstore scan downloaded.pt\n  modelstore scan models/ --json\n"
           "exit codes: 0 all safe, 1 something unsafe, 2 unknown or error")


def add_parser(sub: Any, make: Any) -> None:
    p = make(sub, "scan", "security verdict for model files: exit 0 safe, 1 unsafe, 2 unknown", EXAMPLE)
    p.add_argument("paths", nargs="+", help="files, or folders to search for model files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=run)


def _expand(paths: list[str]) -> list[str]:
    """Files as given; folders walked recursively for model files. A folder a backend claims
    (a sharded checkpoint) is one model: its index names (and confines) its shards."""
    from ..pipeline.choose import model_file
    from ..pipeline.registry import REGISTRY
    from ..storage.sidecar import SIDECAR_SUFFIX

    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            out.append(p)
            continue
        try:
            model_file(p)
            out.append(p)
            continue
        except ModelstoreError as e:
            if "several" in str(e):  # scan reports what is wrong with the folder
                out.append(p)
                continue
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                if not name.endswith(SIDECAR_SUFFIX) and REGISTRY.for_suffix(Path(full)):
                    out.append(full)
    return out


class _Progress:
    """A one-line progress bar on stderr (only for terminals, or when asked)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled and total > 1, 0

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        width = 30
        filled = width * self.done // self.total
        sys.stderr.write(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label[-40:]:<40}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace, out: TextIO) -> int:
    files = _expand(args.paths)
    if not files:
        sys.stderr.write("modelstore: error: no model files found\n")
        return 2
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = _Progress(len(files), show)
    reports = []
    for f in files:
        try:
            reports.append(scan(f))
        except ModelstoreError as e:  # a missing or unreadable file: report it, keep going
            reports.append(ScanReport(f, "unknown", "unknown", [Finding("file", "warning", str(e))]))
        bar.step(f)
    if args.json:
        json.dump([r.to_dict() for r in reports], out, indent=2)
        out.write("\n")
    else:
        for r in reports:
            print_scan(r, out)
    verdicts = {r.verdict for r in reports}
    return 1 if "unsafe" in verdicts else (2 if "unknown" in verdicts else 0)



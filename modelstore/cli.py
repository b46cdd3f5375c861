"""The ``modelstore`` command: a thin shell over the public API.

Exit codes: 0 ok, 1 refused or unsafe, 2 usage error or bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from . import __version__
from ._api import inspect, scan
from ._info import ModelInfo, ScanReport
from .errors import ModelstoreError, UnsafeModelError

EXAMPLES = {
    "inspect": "examples:\n  modelstore inspect digits.safetensors\n  modelstore inspect weights.pth --json",
    "scan": "examples:\n  modelstore scan downloaded.pt\n  modelstore scan models/ --json\n"
            "exit codes: 0 all safe, 1 something unsafe, 2 unknown or error",
}


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _table(rows: list[list[str]], out: TextIO, right: set[int] | None = None) -> None:
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.write("  ".join(cells).rstrip() + "\n")


def print_info(info: ModelInfo, out: TextIO) -> None:
    fw = f" ({info.framework})" if info.framework else ""
    head = [
        ["path", info.path],
        ["format", info.format + fw],
        ["size", f"{_size(info.size_bytes)} ({info.size_bytes:,} bytes)"],
        ["sha256", info.sha256],
        ["executes code", "yes: load only with trust=" if info.executes_code else "no"],
    ]
    if info.labels:
        shown = ", ".join(map(str, info.labels[:12])) + (" ..." if len(info.labels) > 12 else "")
        head.append(["labels", shown])
    if info.signature:
        head.append(["signature", json.dumps(info.signature["inputs"])])
    if info.metadata:
        head.append(["metadata", json.dumps(info.metadata, sort_keys=True)])
    if info.globals:
        head.append(["globals", ", ".join(info.globals)])
    _table(head, out)
    if info.tensors:
        out.write("\n")
        rows = [["tensor", "shape", "dtype", "params", "bytes"]]
        for t in info.tensors:
            rows.append([t.name, "x".join(map(str, t.shape)) or "scalar", t.dtype, f"{t.numel:,}", f"{t.nbytes:,}"])
        rows.append(["total", "", "", f"{info.num_params:,}", f"{sum(t.nbytes for t in info.tensors):,}"])
        _table(rows, out, right={3, 4})


def print_scan(report: ScanReport, out: TextIO) -> None:
    out.write(f"{report.path}: {report.verdict} ({report.format})\n")
    for f in report.findings:
        out.write(f"  [{f.severity}] {f.subject}: {f.reason}\n")


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    info = inspect(args.path)
    if args.json:
        json.dump(info.to_dict(), out, indent=2)
        out.write("\n")
    else:
        print_info(info, out)
    return 0


def _expand(paths: list[str]) -> list[str]:
    """Files as given; folders walked recursively for files with a model suffix."""
    from ._io import SIDECAR_SUFFIX
    from ._registry import REGISTRY

    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
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


def _cmd_scan(args: argparse.Namespace, out: TextIO) -> int:
    files = _expand(args.paths)
    if not files:
        sys.stderr.write("modelstore: error: no model files found\n")
        return 2
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = _Progress(len(files), show)
    reports = []
    for f in files:
        reports.append(scan(f))
        bar.step(f)
    if args.json:
        json.dump([r.to_dict() for r in reports], out, indent=2)
        out.write("\n")
    else:
        for r in reports:
            print_scan(r, out)
    verdicts = {r.verdict for r in reports}
    return 1 if "unsafe" in verdicts else (2 if "unknown" in verdicts else 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelstore", description="Inspect and check model files safely.")
    parser.add_argument("--version", action="version", version=f"modelstore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="show a model file's tensors, metadata and safety, without running it",
                       epilog=EXAMPLES["inspect"], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser("scan", help="security verdict: exit 0 safe, 1 unsafe, 2 unknown",
                       epilog=EXAMPLES["scan"], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="files, or folders to search for model files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=_cmd_scan)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args, out)
    except BrokenPipeError:  # `modelstore inspect x | head`: the reader left, that is fine
        sys.stderr.close()
        return 0
    except UnsafeModelError as e:
        sys.stderr.write(f"modelstore: refused: {e}\n")
        return 1
    except ModelstoreError as e:
        sys.stderr.write(f"modelstore: error: {e}\n")
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``modelstore scan PATH... [--format text|json|sarif]``: a security gate for CI.

Exit codes: 0 every file safe, 1 something unsafe, 2 something unknown or unreadable (or no
model file found). Folders are searched recursively for files with a model suffix; a sharded
checkpoint's folder counts as one model. Every scanned file is listed in an inventory: path,
format, sha256, size and verdict, with the findings behind the verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .._info import Finding, ScanReport, printable
from ..errors import ModelstoreError

EPILOG = (
    "examples:\n"
    "  modelstore scan downloaded.pt\n"
    "  modelstore scan models/ --format json > inventory.json\n"
    "  modelstore scan models/ --format sarif --output modelstore.sarif   # for code scanning\n"
    "exit codes: 0 all safe, 1 something unsafe, 2 unknown or error"
)
FORMATS = ("text", "json", "sarif")


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub, "scan", "security verdict for model files: exit 0 safe, 1 unsafe, 2 unknown", EPILOG
    )
    p.add_argument("paths", nargs="+", help="files, or folders to search for model files")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        dest="fmt",
        help="text (default), json (the inventory) or sarif (SARIF 2.1.0 for code scanning)",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        default=None,
        help="write the report to FILE instead of stdout",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: on a terminal, once it takes over 0.5 s; "
        "MODELSTORE_PROGRESS=0/1; needs tqdm)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.json and args.fmt not in (None, "json"):
        sys.stderr.write(f"modelstore: error: --json and --format {args.fmt} disagree; give one\n")
        return 2
    fmt = "json" if args.json else (args.fmt or "text")
    files = expand(args.paths)
    if not files:
        sys.stderr.write(
            "modelstore: error: no model files found in "
            + ", ".join(args.paths)
            + " (scan looks for .safetensors, .pt/.pth, .keras/.h5, .joblib/.pkl, .onnx, ...)\n"
        )
        return 2
    from .._progress import progress_bar

    with progress_bar(
        "scanning", len(files), progress=args.progress if len(files) > 1 else False, unit="file"
    ) as bar:
        records = inventory(files, progress=lambda f: bar.advance(1, f))
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                write_report(records, fmt, f)
        except OSError as e:
            sys.stderr.write(
                f"modelstore: error: {args.output}: cannot write the report: {e.strerror or e}\n"
            )
            return 2
        if fmt != "text":
            write_report(records, "text", out)  # the human summary still goes to the terminal
    else:
        write_report(records, fmt, out)
    return exit_code(records)


def expand(paths: list[str]) -> list[str]:
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


def inventory(
    files: list[str], *, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Scan each file; one record per file: its report plus ``sha256`` and ``size_bytes``."""
    from ..api import scan

    records = []
    for f in files:
        try:
            report = scan(f)
        except ModelstoreError as e:  # a missing or unreadable file: report it, keep going
            report = ScanReport(f, "unknown", "unknown", [Finding("file", "warning", str(e))])
        records.append({**report.to_dict(), **_digest(f)})
        if progress is not None:
            progress(f)
    return records


def _digest(path: str) -> dict[str, Any]:
    """sha256 and size of a regular file (not followed through links); None for folders."""
    try:
        if not os.path.isfile(path) or os.path.islink(path):
            return {"sha256": None, "size_bytes": None}
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        return {"sha256": h.hexdigest(), "size_bytes": size}
    except OSError:
        return {"sha256": None, "size_bytes": None}


def exit_code(records: list[dict[str, Any]]) -> int:
    verdicts = {r["verdict"] for r in records}
    return 1 if "unsafe" in verdicts else (2 if "unknown" in verdicts else 0)


def write_report(records: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(records, out, indent=2)
        out.write("\n")
    elif fmt == "sarif":
        from .._version import __version__
        from .sarif import build

        json.dump(build(records, tool_version=__version__), out, indent=2)
        out.write("\n")
    else:
        _text(records, out)


def _text(records: list[dict[str, Any]], out: TextIO) -> None:
    for r in records:
        out.write(f"{printable(r['path'])}: {r['verdict']} ({r['format']})\n")
        for f in r["findings"]:
            out.write(f"  [{f['severity']}] {printable(f['subject'])}: {printable(f['reason'])}\n")
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("safe", "unsafe", "unknown")}
    if len(records) > 1:
        out.write(
            f"\n{len(records)} files: {counts['safe']} safe, {counts['unsafe']} unsafe, "
            f"{counts['unknown']} unknown\n"
        )
        width = max(len(printable(r["path"])) for r in records)
        for r in records:
            sha = (r["sha256"] or "-")[:16]
            out.write(
                f"  {printable(r['path']).ljust(width)}  {r['format']:<11}  {sha:<16}  {r['verdict']}\n"
            )

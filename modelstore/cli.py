"""The ``modelstore`` command: a thin shell over the public API.

Exit codes: 0 ok, 1 refused or unsafe, 2 usage error or bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from ._api import inspect, scan
from ._info import Finding, ModelInfo, ScanReport
from .errors import ModelstoreError, StorageError, UnsafeModelError

EXAMPLES = {
    "inspect": "examples:\n  modelstore inspect digits.safetensors\n  modelstore inspect weights.pth --json\n"
               "  modelstore inspect digits.keras --stats --plot weights.png",
    "scan": "examples:\n  modelstore scan downloaded.pt\n  modelstore scan models/ --json\n"
            "exit codes: 0 all safe, 1 something unsafe, 2 unknown or error",
    "convert": "examples:\n  modelstore convert weights.pth weights.safetensors\n"
               "  modelstore convert digits.h5 digits.keras\n"
               "  modelstore convert digits.safetensors digits.onnx --model examples/quickstart.py:Net "
               "--sample x.npy",
    "predict": "examples:\n  modelstore predict digits.onnx --input x.npy --output label\n"
               "  modelstore predict iris.joblib --input rows.csv --output proba --out proba.npy",
    "serve": "examples:\n  modelstore serve digits.onnx --port 8000\n"
             "  curl -s localhost:8000/predict --json '{\"inputs\": [[0, 1, ...]], \"output\": \"label\"}'",
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


def print_info(info: ModelInfo, out: TextIO, verdict: str | None = None) -> None:
    fw = f" ({info.framework})" if info.framework else ""
    head = [
        ["path", info.path],
        ["format", info.format + fw],
        ["size", f"{_size(info.size_bytes)} ({info.size_bytes:,} bytes)"],
        ["sha256", info.sha256 or "not computed (a remote header-only read)"],
        ["executes code", "yes: load only with trust=" if info.executes_code else "no"],
    ]
    if verdict is not None:
        head.append(["scan verdict", verdict])
    if info.labels:
        shown = ", ".join(map(str, info.labels[:12])) + (" ..." if len(info.labels) > 12 else "")
        head.append(["labels", shown])
    if info.signature:
        head.append(["signature", json.dumps(info.signature["inputs"])])
    compact = {k: v for k, v in info.metadata.items() if k not in ("layers", "params")}
    if compact:
        head.append(["metadata", json.dumps(compact, sort_keys=True)[:400]])
    if info.globals:
        head.append(["globals", ", ".join(info.globals)])
    _table(head, out)
    layers = info.metadata.get("layers")
    if isinstance(layers, list) and layers:
        out.write("\n")
        rows = [["layer", "type", "output shape", "params"]]
        for row in layers:
            shape = row.get("output_shape")
            rows.append([str(row.get("name")), str(row.get("class")),
                         "x".join("?" if d is None else str(d) for d in shape) if shape else "",
                         f"{row.get('params', 0):,}"])
        rows.append(["total", "", "", f"{info.num_params:,}"])
        _table(rows, out, right={3})
    elif info.tensors:
        out.write("\n")
        rows = [["tensor", "shape", "dtype", "params", "bytes"]]
        for t in info.tensors:
            rows.append([t.name, "x".join(map(str, t.shape)) or "scalar", t.dtype, f"{t.numel:,}", f"{t.nbytes:,}"])
        rows.append(["total", "", "", f"{info.num_params:,}", f"{sum(t.nbytes for t in info.tensors):,}"])
        _table(rows, out, right={3, 4})


def print_stats(rows: list[dict[str, object]], out: TextIO) -> None:
    table = [["tensor", "shape", "mean", "std", "min", "max"]]
    for r in rows:
        shape = r["shape"] if isinstance(r["shape"], list) else []
        table.append([str(r["name"]), "x".join(map(str, shape)) or "scalar",
                      *(f"{float(r[k]):.4g}" for k in ("mean", "std", "min", "max"))])  # type: ignore[arg-type]
    _table(table, out, right={2, 3, 4, 5})


def print_scan(report: ScanReport, out: TextIO) -> None:
    out.write(f"{report.path}: {report.verdict} ({report.format})\n")
    for f in report.findings:
        out.write(f"  [{f.severity}] {f.subject}: {f.reason}\n")


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    info = inspect(args.path)
    verdict = scan(args.path).verdict
    data: dict[str, object] = {**info.to_dict(), "verdict": verdict}
    arrays = None
    if args.stats or args.plot:
        from ._stats import weights

        arrays = weights(args.path, trust=args.trust)
    if args.stats and arrays is not None:
        from ._stats import stats

        data["stats"] = stats(arrays)
    if args.json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        print_info(info, out, verdict)
        if "stats" in data:
            out.write("\n")
            print_stats(data["stats"], out)  # type: ignore[arg-type]
    if args.plot and arrays is not None:
        from ._stats import plot

        try:
            n = plot(arrays, args.plot, f"{Path(args.path).name}: weight histograms")
        except OSError as e:
            raise StorageError(e.errno or 5, f"{args.plot}: cannot write the plot: {e.strerror or e}",
                               str(args.plot)) from None
        sys.stderr.write(f"wrote {args.plot} ({n} histograms)\n")
    return 0


def _expand(paths: list[str]) -> list[str]:
    """Files as given; folders walked recursively for files with a model suffix."""
    from ._io import SIDECAR_SUFFIX
    from ._registry import REGISTRY

    from ._shards import index_for

    out: list[str] = []
    for p in paths:
        try:  # a sharded checkpoint's folder is one model: its index names (and confines) the shards
            sharded = os.path.isdir(p) and index_for(p) is not None
        except ModelstoreError:
            sharded = True  # scan reports what is wrong with the folder
        if not os.path.isdir(p) or sharded:
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


def _sub(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text,
                                                epilog=EXAMPLES[name],
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import _cli_run

    parser = argparse.ArgumentParser(prog="modelstore", description="Save, load, inspect, run and convert "
                                     "model files safely. Exit codes: 0 ok, 1 refused or unsafe, 2 error.")
    parser.add_argument("--version", action="version", version=f"modelstore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = _sub(sub, "inspect", "show a model file's tensors or layers, metadata and safety, without running it")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--stats", action="store_true", help="mean, std, min and max of every weight tensor")
    p.add_argument("--plot", metavar="FILE.png", help="write per-tensor weight histograms to a PNG")
    p.add_argument("--trust", action="store_true", help="allow unpickling (needed for --stats of pickle formats)")
    p.set_defaults(func=_cmd_inspect)
    p = _sub(sub, "scan", "security verdict for model files: exit 0 safe, 1 unsafe, 2 unknown")
    p.add_argument("paths", nargs="+", help="files, or folders to search for model files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=_cmd_scan)
    p = _sub(sub, "convert", "convert a model file: .pth -> .safetensors, .h5 -> .keras, anything -> .onnx")
    p.add_argument("src")
    p.add_argument("dst")
    _cli_run.add_model_options(p)
    p.add_argument("--sample", metavar="X.npy", help="example inputs (.npy or .csv), needed for .onnx")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress (default: on a terminal, for files over 50 MB)")
    p.set_defaults(func=_cli_run.cmd_convert)
    p = _sub(sub, "predict", "run a model on inputs from a .npy or .csv file")
    p.add_argument("path")
    p.add_argument("--input", required=True, metavar="X.npy|X.csv")
    p.add_argument("--output", choices=["raw", "proba", "label"], default="raw")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", metavar="FILE", help="write results to .npy, .csv or .json instead of stdout")
    _cli_run.add_model_options(p)
    p.set_defaults(func=_cli_run.cmd_predict)
    p = _sub(sub, "serve", "serve a model over HTTP: POST /predict, GET /health, GET /info")
    _cli_run.add_serve_options(p)
    p.set_defaults(func=_cli_run.cmd_serve)
    from . import _cli_store

    _cli_store.add_parser(sub, argparse.RawDescriptionHelpFormatter)
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
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line, never a traceback
        sys.stderr.write(f"modelstore: internal error: {type(e).__name__}: {e} (please report it)\n")
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

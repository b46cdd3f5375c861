"""Human output of the ``modelstore`` command: tables of tensors, layers, stats and findings."""

from __future__ import annotations

import json
from typing import TextIO

from .._info import ModelInfo, ScanReport, printable


def size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def table(rows: list[list[str]], out: TextIO, right: set[int] | None = None) -> None:
    right = right or set()
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
        ]
        out.write("  ".join(cells).rstrip() + "\n")


def print_info(info: ModelInfo, out: TextIO, verdict: str | None = None) -> None:
    fw = f" ({info.framework})" if info.framework else ""
    head = [
        ["path", info.path],
        ["format", info.format + fw],
        ["size", f"{size(info.size_bytes)} ({info.size_bytes:,} bytes)"],
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
    compact = {k: v for k, v in info.metadata.items() if k not in ("layers", "params", "hf_config")}
    if isinstance(info.metadata.get("hf_config"), dict):
        cfg = info.metadata["hf_config"]
        head.append(
            [
                "config.json",
                json.dumps({k: cfg[k] for k in ("architectures", "model_type") if k in cfg}),
            ]
        )
    if compact:
        head.append(["metadata", json.dumps(compact, sort_keys=True)[:400]])
    if info.globals:
        head.append(["globals", ", ".join(info.globals)])
    table(head, out)
    layers = info.metadata.get("layers")
    if isinstance(layers, list) and layers:
        out.write("\n")
        rows = [["layer", "type", "output shape", "params"]]
        for row in layers:
            shape = row.get("output_shape")
            rows.append(
                [
                    str(row.get("name")),
                    str(row.get("class")),
                    "x".join("?" if d is None else str(d) for d in shape) if shape else "",
                    f"{row.get('params', 0):,}",
                ]
            )
        rows.append(["total", "", "", f"{info.num_params:,}"])
        table(rows, out, right={3})
    elif info.tensors:
        out.write("\n")
        rows = [["tensor", "shape", "dtype", "params", "bytes"]]
        for t in info.tensors:
            rows.append(
                [
                    t.name,
                    "x".join(map(str, t.shape)) or "scalar",
                    t.dtype,
                    f"{t.numel:,}",
                    f"{t.nbytes:,}",
                ]
            )
        rows.append(
            ["total", "", "", f"{info.num_params:,}", f"{sum(t.nbytes for t in info.tensors):,}"]
        )
        table(rows, out, right={3, 4})
    if info.files:
        out.write("\n")
        rows = [["file", "bytes"]] + [[n, f"{b:,}"] for n, b in info.files.items()]
        rows.append(["total", f"{sum(info.files.values()):,}"])
        table(rows, out, right={1})


def print_stats(rows: list[dict[str, object]], out: TextIO) -> None:
    cells = [["tensor", "shape", "dtype", "mean", "std", "min", "max", "zeros", "nan/inf"]]
    for r in rows:
        shape = r["shape"] if isinstance(r["shape"], list) else []
        cells.append(
            [
                str(r["name"]),
                "x".join(map(str, shape)) or "scalar",
                str(r.get("dtype", "")),
                *(
                    f"{float(r[k]):.4g}" if r[k] is not None else "nan"  # type: ignore[arg-type]
                    for k in ("mean", "std", "min", "max")
                ),
                f"{float(r.get('zeros', 0.0)):.1%}",  # type: ignore[arg-type]
                f"{r.get('nans', 0)}/{r.get('infs', 0)}",
            ]
        )
    table(cells, out, right={3, 4, 5, 6, 7, 8})


def print_scan(report: ScanReport, out: TextIO) -> None:
    out.write(f"{printable(report.path)}: {report.verdict} ({report.format})\n")
    for f in report.findings:
        out.write(f"  [{f.severity}] {printable(f.subject)}: {printable(f.reason)}\n")

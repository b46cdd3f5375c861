"""``modelstore quantize SRC DST``: an ONNX model to int8 (onnxruntime's dynamic quantizer)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from .common import read_inputs

EXAMPLE = (
    "examples:\n"
    "  modelstore quantize digits.onnx digits.int8.onnx\n"
    "  modelstore quantize digits.onnx digits.int8.onnx --sample x_test.npy --min-agreement 0.98\n"
    "  modelstore quantize cnn.onnx cnn.int8.onnx --per-channel --op-types Conv,MatMul --json"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub,
        "quantize",
        "quantize an ONNX model's weights to int8 (onnxruntime's quantize_dynamic), "
        "checked against the source on a sample",
        EXAMPLE,
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--weight-type", choices=("int8", "uint8"), default="int8")
    p.add_argument("--per-channel", action="store_true", help="one scale per output channel")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument("--op-types", metavar="A,B", help="quantize only these operator types")
    p.add_argument("--exclude-nodes", metavar="A,B", help="leave these nodes in float")
    p.add_argument(
        "--sample", metavar="X.npy", help="inputs (.npy or .csv) to compare SRC and DST on"
    )
    p.add_argument("--max-abs-diff", type=float, help="refuse beyond this output difference")
    p.add_argument(
        "--min-agreement", type=float, help="refuse below this share of agreeing arg-max/labels"
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..api.quantize import quantize

    info = quantize(
        args.src,
        args.dst,
        weight_type=args.weight_type,
        per_channel=args.per_channel,
        reduce_range=args.reduce_range,
        op_types=_names(args.op_types),
        exclude_nodes=_names(args.exclude_nodes),
        sample_input=read_inputs(args.sample) if args.sample else None,
        max_abs_diff=args.max_abs_diff,
        min_agreement=args.min_agreement,
        overwrite=args.force,
    )
    record = info.metadata.get("quantization") or {}
    if args.json:
        json.dump(info.to_dict(), out, indent=2)
        out.write("\n")
        return 0
    source = record.get("source_size_bytes") or 0
    ratio = f" ({info.size_bytes / source:.0%} of {args.src})" if source else ""
    out.write(f"{info.path}: int8 ONNX, {info.size_bytes:,} bytes{ratio}, sha256 {info.sha256}\n")
    ops = ", ".join(f"{n} x{k}" for n, k in sorted(record.get("integer_ops", {}).items()))
    out.write(f"integer operators: {ops}\n")
    acc = record.get("accuracy")
    if acc:
        agree = acc.get("agreement")
        agreeing = f", arg-max agreement {agree:.1%}" if agree is not None else ""
        out.write(
            f"check on {acc['samples']} rows: max abs diff {acc['max_abs_diff']:.3g}{agreeing}\n"
        )
    return 0

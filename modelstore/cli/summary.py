"""``modelstore summary``: a per-layer table (output shapes, parameters, buffers), like torchinfo."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..errors import ArgumentError
from .common import add_model_options, model_class

EXAMPLE = (
    "examples:\n"
    "  modelstore summary digits.onnx\n"
    "  modelstore summary weights.pth                       # layers from the tensor names\n"
    "  modelstore summary digits.safetensors --model examples/quickstart.py:Net --input-size 1,64\n"
    "  modelstore summary cnn.safetensors --model my_models:CNN --json"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub,
        "summary",
        "a per-layer table: output shapes, parameters (trainable / frozen) and buffers",
        EXAMPLE,
    )
    p.add_argument("path")
    add_model_options(p)
    p.add_argument(
        "--input-size", metavar="N,D,...", help="input shape with the batch dimension, e.g. 1,64"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def input_size(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        size = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise ArgumentError(
            f"--input-size {text!r}: expected integers like 1,64 or 1x3x32x32"
        ) from None
    if not size:
        raise ArgumentError("--input-size is empty; give a shape like 1,64")
    return size


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..api.summary import summary

    cls = model_class(args.model, args.config)
    result = summary(args.path, model=cls, trust=args.trust, input_size=input_size(args.input_size))
    if args.json:
        json.dump(result.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(f"{result}\n")
    return 0

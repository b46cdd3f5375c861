"""``modelstore convert SRC DST``: load through the trust gate, then save or export."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any, TextIO

from ..api.convert import convert
from ..errors import PickleWarning
from .common import add_model_options, model_class, read_inputs

EXAMPLE = (
    "examples:\n  modelstore convert weights.pth weights.safetensors\n"
    "  modelstore convert digits.h5 digits.keras\n"
    "  modelstore convert digits.safetensors digits.onnx --model examples/quickstart.py:Net "
    "--sample x.npy"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub,
        "convert",
        "convert a model file: .pth -> .safetensors, .h5 -> .keras, anything -> .onnx",
        EXAMPLE,
    )
    p.add_argument("src")
    p.add_argument("dst")
    add_model_options(p)
    p.add_argument(
        "--sample", metavar="X.npy", help="example inputs (.npy or .csv), needed for .onnx"
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: on a terminal, once it takes over 0.5 s; "
        "MODELSTORE_PROGRESS=0/1; needs tqdm)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    sample = read_inputs(args.sample) if args.sample else None
    model = model_class(args.model, args.config)
    # the command is the application: a pickle source is said in its output, not as a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PickleWarning)
        info = convert(
            args.src,
            args.dst,
            model=model,
            sample_input=sample,
            trust=args.trust,
            overwrite=args.force,
            progress=args.progress,
        )
    pickled = any(issubclass(w.category, PickleWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, PickleWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if args.json:
        json.dump(info.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(
            f"{info.path}: {info.format}, {info.size_bytes:,} bytes, {info.num_params:,} parameters, "
            f"sha256 {info.sha256}\n"
        )
        if pickled:
            how = "with --trust" if args.trust else "through the allow-list"
            out.write(f"note: {args.src} is a pickle (read {how}); {info.path} is what to share\n")
    return 0

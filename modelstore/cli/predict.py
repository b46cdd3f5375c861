"""``modelstore predict PATH --input X``: run a model on a .npy or .csv file."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..api import load, predict
from ..errors import PickleWarning, StorageError
from .common import add_model_options, model_class, read_inputs

EXAMPLE = (
    "examples:\n  modelstore predict digits.onnx --input x.npy --output label\n"
    "  modelstore predict iris.joblib --input rows.csv --output proba --out proba.npy"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(sub, "predict", "run a model on inputs from a .npy or .csv file", EXAMPLE)
    p.add_argument("path")
    p.add_argument("--input", required=True, metavar="X.npy|X.csv")
    p.add_argument("--output", choices=["raw", "proba", "label"], default="raw")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--out", metavar="FILE", help="write results to .npy, .csv or .json instead of stdout"
    )
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    import numpy as np

    x = read_inputs(args.input)
    # the command is the application here: it decides that the pickle note is not output
    warnings.filterwarnings("ignore", category=PickleWarning)
    model = load(args.path, model=model_class(args.model, args.config), trust=args.trust)
    result = predict(model, x, output=args.output, batch_size=args.batch_size)
    values = result if isinstance(result, list) else np.asarray(result).tolist()
    if args.out:
        target = Path(args.out)
        try:
            if target.suffix == ".npy":
                np.save(target, np.asarray(result))
            elif target.suffix == ".csv":
                np.savetxt(
                    target, np.asarray(result).reshape(len(values), -1), delimiter=",", fmt="%s"
                )
            else:
                target.write_text(json.dumps(values))
        except OSError as e:
            raise StorageError(
                e.errno or 5, f"{target}: cannot write the results: {e.strerror or e}", str(target)
            ) from None
        sys.stderr.write(f"wrote {len(values)} results to {target}\n")
    else:
        json.dump(values, out)
        out.write("\n")
    return 0

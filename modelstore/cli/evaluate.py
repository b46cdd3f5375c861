"""``modelstore evaluate``: accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..errors import ArgumentError, PickleWarning
from .common import add_model_options, model_class, read_inputs

EXAMPLE = (
    "examples:\n"
    "  modelstore evaluate iris.onnx --input x.npy --target y.npy --labels setosa,versicolor,virginica\n"
    "  modelstore evaluate digits.safetensors --model examples/quickstart.py:Net --input x.npy "
    "--target y.npy --plot grid.png\n"
    "exit codes: 0 evaluated, 2 bad input"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub,
        "evaluate",
        "accuracy, per-class precision/recall/F1 and the confusion matrix on labelled inputs",
        EXAMPLE,
    )
    p.add_argument("path")
    p.add_argument(
        "--input", required=True, metavar="X.npy|X.csv", help="the inputs, one row per sample"
    )
    p.add_argument(
        "--target", required=True, metavar="Y.npy|Y.csv", help="the true classes (indices or names)"
    )
    p.add_argument(
        "--labels", metavar="A,B,...", help="class names by index, when the model has none saved"
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="also draw a grid of predictions (wrong ones in red)"
    )
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..api import load
    from ..api.evaluate import evaluate

    x = read_inputs(args.input)
    y = targets(args.target)
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    cls = model_class(args.model, args.config)
    model: Any = args.path
    # the command is the application here: it decides that the pickle note is not output
    warnings.filterwarnings("ignore", category=PickleWarning)
    if cls is not None or args.trust:
        model = load(args.path, model=cls, trust=args.trust)
    result = evaluate(model, x, y, labels=labels)
    if args.json:
        json.dump(result.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(f"{result}\n")
    if args.plot:
        from ..api.plots import plot_predictions

        plot_predictions(model, x, y, args.plot, labels=labels)
        sys.stderr.write(f"wrote {args.plot}\n")
    return 0


def targets(path: str) -> Any:
    """True classes from a .npy (numbers or strings, no pickles) or a one-column .csv."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ArgumentError(f"--target {path}: no such file")
    try:
        if p.suffix.lower() == ".npy":
            y = np.load(p, allow_pickle=False)
        elif p.suffix.lower() in (".csv", ".txt"):
            y = np.asarray(
                [v.strip() for v in np.loadtxt(p, delimiter=",", dtype=str, ndmin=1).ravel()]
            )
            try:
                y = y.astype(np.int64)
            except ValueError:
                pass  # class names
        else:
            raise ArgumentError(f"--target {path}: use a .npy or .csv file")
    except (ValueError, OSError) as e:
        raise ArgumentError(f"--target {path}: cannot read classes from it ({e})") from None
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y

"""``modelstore inspect``: a model's tensors or layers, metadata and safety; ``--stats`` and
``--plot`` read the weights (a URI is fetched first, like ``inspect`` itself)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..api import inspect, scan
from ..errors import PickleWarning, StorageError
from .output import print_info, print_stats

EXAMPLE = (
    "examples:\n  modelstore inspect digits.safetensors\n  modelstore inspect weights.pth --json\n"
    "  modelstore inspect digits.keras --stats --plot weights.png"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub,
        "inspect",
        "show a model file's tensors or layers, metadata and safety, without running it",
        EXAMPLE,
    )
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--stats", action="store_true", help="mean, std, min and max of every weight tensor"
    )
    p.add_argument("--plot", metavar="FILE.png", help="write per-tensor weight histograms to a PNG")
    p.add_argument(
        "--trust",
        action="store_true",
        help="allow code in the file to run (only for --stats/--plot of pickles the safe loader refuses)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    info = inspect(args.path)
    verdict = scan(args.path).verdict
    data: dict[str, object] = {**info.to_dict(), "verdict": verdict}
    arrays = None
    dtypes: dict[str, str] = {}
    if args.stats or args.plot:
        from ..api.weights import weights

        # the command is the application: the pickle note is not its output
        warnings.filterwarnings("ignore", category=PickleWarning)
        arrays = weights(args.path, trust=args.trust, dtypes=dtypes)
    if args.stats and arrays is not None:
        from ..api.stats import summarize

        data["stats"] = [s.to_dict() for s in summarize(arrays, dtypes)]
    if args.json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        print_info(info, out, verdict)
        if "stats" in data:
            out.write("\n")
            print_stats(data["stats"], out)  # type: ignore[arg-type]
    if args.plot and arrays is not None:
        from ..api.stats import plot

        try:
            n = plot(arrays, args.plot, f"{Path(args.path).name}: weight histograms")
        except OSError as e:
            raise StorageError(
                e.errno or 5,
                f"{args.plot}: cannot write the plot: {e.strerror or e}",
                str(args.plot),
            ) from None
        sys.stderr.write(f"wrote {args.plot} ({n} histograms)\n")
    return 0

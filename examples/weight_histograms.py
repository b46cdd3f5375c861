"""Weight statistics and histograms of a plain ``torch.save`` state dict, without trust.

Trains the digits MLP from quickstart.py, saves its state dict the way most tutorials do
(``torch.save(model.state_dict(), "weights.pth")``), then reads it back through modelstore's
weights-only gate: a table of mean/std/min/max/zeros per tensor and a PNG of histograms.
    python examples/weight_histograms.py [--out DIR] [--png weights.png]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch
from quickstart import Net, digits, train

import modelstore as ms


def main(out: Path, png: Path) -> None:
    torch.manual_seed(0)
    x_train, _, y_train, _ = digits()
    net = Net(hidden=32)
    train(net, x_train, y_train, epochs=10)
    path = out / "weights.pth"
    torch.save(net.state_dict(), path)  # a foreign file: no modelstore metadata

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", ms.PickleWarning
        )  # a .pth is a pickle; we know, it was scanned
        rows = ms.stats(path)  # no trust=: tensors and plain values only
        ms.plot_weights(path, png, title="digits MLP after 10 epochs")
    print(
        f"{'tensor':<12} {'shape':>7} {'dtype':>8} {'mean':>8} {'std':>7} {'min':>7} {'max':>7} {'zeros':>6}"
    )
    for s in rows:
        shape = "x".join(map(str, s.shape))
        print(
            f"{s.name:<12} {shape:>7} {s.dtype:>8} {s.mean:8.4f} {s.std:7.4f} {s.min:7.3f} {s.max:7.3f} "
            f"{s.zeros:6.1%}"
        )
    print(f"wrote {png} ({len(rows)} tensors; NaN/Inf: {sum(s.nans + s.infs for s in rows)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the files (default: a temp dir)"
    )
    parser.add_argument("--png", type=Path, default=Path("weights.png"))
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        main(args.out, args.png)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp), args.png)

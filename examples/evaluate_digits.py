"""Evaluate a saved digits model: accuracy, a per-class report, and a grid of predictions.

``ms.evaluate`` gives accuracy, per-class precision/recall/F1 and the confusion matrix;
``ms.plot_predictions`` draws the tutorials' grid (wrong predictions in red, shown first).
Uses the model file from quickstart.py if given, else trains one the same way first.
    python examples/evaluate_digits.py [--model digits.safetensors] [--png predictions.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from quickstart import LABELS, Net, digits, train

import modelstore as ms


def main(model_path: Path | None, png: Path, workdir: Path) -> None:
    _, x_test, _, y_test = digits()
    if model_path is None:
        torch.manual_seed(0)
        x_train, _, y_train, _ = digits()
        net = Net(hidden=32)
        train(net, x_train, y_train)
        model_path = workdir / "digits.safetensors"
        ms.save(net, model_path, config={"hidden": 32}, labels=LABELS)
    model = ms.load(model_path, model=Net)
    result = ms.evaluate(model, x_test, y_test)  # y as indices; the saved labels name the classes
    print(result)
    ms.plot_predictions(model, x_test, y_test, png, max_images=32)
    print(f"\n{model_path.name}: test accuracy {result.accuracy:.3f}; {len(result.wrong)} wrong")
    print(f"wrote {png} (32 samples, the wrong ones first)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", type=Path, default=None, help="a digits model saved by quickstart.py"
    )
    parser.add_argument("--png", type=Path, default=Path("digits_predictions.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        main(args.model, args.png, Path(tmp))

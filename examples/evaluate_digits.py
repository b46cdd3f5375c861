"""Evaluate a saved digits model: test accuracy and a PNG grid of predictions.

Correct predictions are titled in green, wrong ones in red. Uses the model file from
quickstart.py if given, else trains one the same way first.
    python examples/evaluate_digits.py [--model digits.safetensors] [--png predictions.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from quickstart import LABELS, Net, digits, train  # noqa: E402

import modelstore as ms  # noqa: E402


def grid(images: np.ndarray, predicted: list[str], truth: np.ndarray, png: Path) -> None:
    cols = 8
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, p, t in zip(axes.ravel(), images, predicted, truth):
        ax.imshow(img.reshape(8, 8), cmap="gray_r")
        ok = int(p) == int(t)
        ax.set_title(f"{p}" if ok else f"{p} (true {t})", color="green" if ok else "red", fontsize=8)
    fig.suptitle("digits: green = correct, red = wrong")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


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
    predicted = ms.predict(model, x_test, output="label")
    correct = np.array([int(p) == t for p, t in zip(predicted, y_test)])
    print(f"{model_path.name}: test accuracy {correct.mean():.3f} ({correct.sum()}/{len(correct)})")
    wrong = np.flatnonzero(~correct)[:8]
    right = np.flatnonzero(correct)[: 32 - len(wrong)]
    show = np.sort(np.concatenate([wrong, right]))
    grid(x_test[show], [predicted[i] for i in show], y_test[show], png)
    print(f"wrote {png} ({len(show)} samples, {len(wrong)} of them wrong)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None, help="a digits model saved by quickstart.py")
    parser.add_argument("--png", type=Path, default=Path("digits_predictions.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        main(args.model, args.png, Path(tmp))

"""A torchinfo-style layer table of a model, live and from a saved file.

Prints the summary of a small CNN for 8x8 digits (output shapes from a real forward pass,
parameters and BatchNorm buffers counted apart, a frozen first layer), then the same table
from the saved file: built on the meta device from the recorded config, no weights read.
    python examples/model_summary.py [--out DIR]
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import modelstore as ms


class DigitsCNN(nn.Module):
    """1x8x8 digit images -> 10 classes."""

    def __init__(self, channels: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main(out: Path) -> None:
    torch.manual_seed(0)
    net = DigitsCNN()
    net.features[0].requires_grad_(False)  # a frozen layer, as in fine-tuning tutorials
    table = ms.summary(net, input_size=(1, 1, 8, 8))
    print(table)
    print(
        f"\ntrainable {table.trainable_params:,} of {table.total_params:,}; buffers {table.buffers}"
    )

    path = out / "cnn.safetensors"
    ms.save(net, path, config={"channels": 8, "hidden": 32}, sample_input=torch.zeros(1, 1, 8, 8))
    from_file = ms.summary(path, model=DigitsCNN)  # the saved signature gives the input shape
    print(f"\nfrom {path.name}:\n{from_file}")
    same = [r.output_shape for r in from_file.layers] == [r.output_shape for r in table.layers]
    print(
        f"same layers and shapes from the file: {same and from_file.total_params == table.total_params}"
    )


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)

"""Train the tutorials' digits MLP, save it with modelstore, load it back, predict.

Runs on a CPU in a few seconds; the data ships with scikit-learn (8x8 digits).
    python examples/quickstart.py [--out DIR]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import modelstore as ms

LABELS = [str(d) for d in range(10)]


class Net(nn.Module):
    """64 pixels -> hidden -> 10 digits, with dropout (the tutorials' MLP)."""

    def __init__(self, hidden: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(net: Net, x: np.ndarray, y: np.ndarray, epochs: int = 40) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    predicted = ms.predict(model, x, output="label")
    return float(np.mean([int(p) == t for p, t in zip(predicted, y)]))


def main(out: Path) -> None:
    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = digits()
    net = Net(hidden=32)
    train(net, x_train, y_train)
    print(f"test accuracy: {accuracy(net, x_test, y_test):.3f}")

    path = out / "digits.safetensors"
    info = ms.save(
        net,
        path,
        config={"hidden": 32},
        labels=LABELS,
        sample_input=x_test[:1],
        metadata={"dataset": "sklearn digits"},
    )
    print(
        f"saved {path.name}: {info.num_params:,} parameters, {info.size_bytes:,} bytes, sha256 {info.sha256[:12]}..."
    )

    loaded = ms.load(path, model=Net)  # built from the recorded config, no random init
    sample = x_test[:1]
    label = ms.predict(loaded, sample, output="label")[0]
    proba = ms.predict(loaded, sample, output="proba")[0]
    print(
        f"first test digit: predicted {label} with probability {proba.max():.3f} (true {y_test[0]})"
    )

    same = np.array_equal(ms.predict(loaded, x_test), ms.predict(net, x_test))
    print(f"reloaded model gives identical outputs: {same}")
    assert same, "the reloaded model disagrees with the trained one"


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)

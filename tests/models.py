"""Tiny real models shared by the tests (importable, so recorded class paths resolve)."""

from __future__ import annotations

import torch
from torch import nn

BUILT_ON: list[str] = []


class Net(nn.Module):
    """The tutorials' digits MLP: 64 -> hidden -> 10 with dropout."""

    def __init__(self, hidden: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 10)
        BUILT_ON.append(self.fc1.weight.device.type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


class BNNet(nn.Module):
    """Has buffers (BatchNorm running stats) and a non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.full((4,), 2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x)) * self.scale


class TiedLM(nn.Module):
    """Embedding and output head share one weight (tied weights)."""

    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))


def trained_net(hidden: int = 32, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net(hidden).eval()

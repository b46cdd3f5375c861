"""Loading files someone else made: what modelstore lets through, and what it refuses.

Builds a small zoo in a temp folder - a safetensors file, a plain .pth state dict, a whole
pickled module, and a pickle whose payload would run a shell command (harmless here: it only
creates a marker file) - then scans and loads each with the default trust=False.

    python examples/load_untrusted.py
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

import modelstore as ms


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Payload:
    """What an attacker would ship: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def zoo(folder: Path) -> dict[str, Path]:
    marker = folder / "PWNED"
    files = {
        "safetensors": folder / "weights.safetensors",
        "state dict .pth": folder / "weights.pth",
        "whole pickled module": folder / "whole_model.pt",
        "pickle with a payload": folder / "model.pkl",
    }
    ms.save(Net(), files["safetensors"])
    torch.save(Net().state_dict(), files["state dict .pth"])
    torch.save(Net(), files["whole pickled module"])
    files["pickle with a payload"].write_bytes(pickle.dumps(Payload(marker)))
    return files


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for what, path in zoo(folder).items():
            report = ms.scan(path)
            print(f"\n{what} ({path.name}): scan says {report.verdict}")
            for finding in report.findings:
                if finding.severity == "critical":
                    print(f"  references {finding.subject}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ms.PickleWarning)
                    obj = ms.load(path)
                print(f"  loaded: {type(obj).__name__} with {len(obj)} entries")
            except ms.UnsafeModelError as e:
                print(f"  refused: {str(e).split(': ', 1)[1][:160]}...")
        ran = (folder / "PWNED").exists()
        print(f"\npayload ran: {ran}")
        assert not ran


if __name__ == "__main__":
    main()

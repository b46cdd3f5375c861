"""PyTorch -> ONNX -> predict in a fresh interpreter that never imports torch.

Trains the digits MLP, exports it with a parity check (original vs onnxruntime on the sample
and on batches of 1, 7 and the sample's size), then runs the .onnx in a child process that
has only onnxruntime, and compares.
    python examples/onnx_bridge.py [--out DIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from quickstart import LABELS, Net, digits, train

import modelstore as ms

CHILD = """
import json, sys
import numpy as np
import modelstore as ms
path, x_path = sys.argv[1], sys.argv[2]
x = np.load(x_path)
labels = ms.predict(path, x, output="label")          # onnxruntime only
scores = ms.predict(path, x)
np.save(x_path + ".out.npy", scores)
print(json.dumps({"labels": labels[:5], "torch_imported": "torch" in sys.modules}))
"""


def main(out: Path) -> None:
    torch.manual_seed(0)
    x_train, x_test, y_train, _y_test = digits()
    net = Net(hidden=32)
    train(net, x_train, y_train)

    path = out / "digits.onnx"
    info = ms.save(net, path, sample_input=x_test[:16], labels=LABELS)  # same as ms.export_onnx
    parity = ms.inspect(path)
    print(
        f"exported {path.name}: {info.size_bytes:,} bytes, inputs {parity.metadata['inputs']}, "
        f"opset {parity.metadata['opset']}"
    )

    np.save(out / "x.npy", x_test)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(out / "x.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"child process: first labels {child['labels']}, torch imported: {child['torch_imported']}"
    )
    onnx_scores = np.load(str(out / "x.npy") + ".out.npy")
    torch_scores = ms.predict(net, x_test)
    diff = float(np.abs(onnx_scores - torch_scores).max())
    print(f"max |onnx - torch| over {len(x_test)} digits: {diff:.2e}")
    assert not child["torch_imported"] and diff < 1e-4


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)

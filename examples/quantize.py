"""Smaller models: float16 ONNX, torch dynamic int8, and ONNX int8 with an accuracy check.

Trains the digits MLP (64 -> 256 -> 10), then writes it four ways and compares size and
test accuracy:

- ``digits.onnx``: float32 ONNX (``ms.export_onnx``, parity-checked);
- ``digits.fp16.onnx``: the module in half precision (``net.half()``), parity-checked in
  float16; ``ms.predict`` casts float32 inputs to the graph's float16;
- ``digits.int8.onnx``: ``ms.quantize`` (onnxruntime's dynamic quantizer) with an accuracy
  check against the float model on the test set;
- ``digits.int8.pt``: ``torch.ao.quantization.quantize_dynamic`` saved with ``ms.save`` and
  loaded with ``model=Net`` (quantized again from what the file says).

    python examples/quantize.py [--out DIR]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from quickstart import LABELS, Net, digits, train

import modelstore as ms

# torch deprecates its eager-mode quantization API (it still works): this script has seen it
warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
warnings.filterwarnings("ignore", ".*quantized tensor creation functions", UserWarning)
warnings.filterwarnings("ignore", "TypedStorage is deprecated", UserWarning)
warnings.filterwarnings("ignore", category=ms.PickleWarning)  # our own .pt file, below


def accuracy(model: object, x: np.ndarray, y: np.ndarray) -> float:
    predicted = ms.predict(model, x, output="label")
    return float(np.mean([int(p) == t for p, t in zip(predicted, y)]))


def main(out: Path) -> None:
    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = digits()
    net = Net(hidden=256)
    train(net, x_train, y_train, epochs=20)
    net.eval()
    saved = ms.save(net, out / "digits.safetensors", labels=LABELS)
    rows = [("torch float32 (.safetensors)", saved.size_bytes, accuracy(net, x_test, y_test))]

    # ONNX float32, then int8 with onnxruntime's quantizer, checked on the test set
    sample = x_test[:16]
    f32 = ms.save(net, out / "digits.onnx", sample_input=sample, labels=LABELS)
    rows.append(("ONNX float32", f32.size_bytes, accuracy(out / "digits.onnx", x_test, y_test)))
    int8 = ms.quantize(out / "digits.onnx", out / "digits.int8.onnx", sample_input=x_test)
    check = int8.metadata["quantization"]["accuracy"]
    rows.append(
        (
            "ONNX int8 (ms.quantize)",
            int8.size_bytes,
            accuracy(out / "digits.int8.onnx", x_test, y_test),
        )
    )

    # ONNX float16: the module in half precision, parity checked in float16
    half = Net(hidden=256)
    half.load_state_dict(net.state_dict())
    fp16 = ms.export_onnx(half.half().eval(), out / "digits.fp16.onnx", sample_input=sample)
    fp16_acc = accuracy(ms.load(out / "digits.fp16.onnx"), x_test, y_test)
    rows.append(("ONNX float16", fp16.size_bytes, fp16_acc))

    # torch dynamic quantization: .pt (safetensors holds plain tensors only)
    q = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    tq = ms.save(q, out / "digits.int8.pt", config={"hidden": 256}, labels=LABELS)
    back = ms.load(out / "digits.int8.pt", model=Net)
    with torch.inference_mode():
        same = torch.equal(back(torch.from_numpy(x_test)), q(torch.from_numpy(x_test)))
    rows.append(
        ("torch int8 (quantize_dynamic, .pt)", tq.size_bytes, accuracy(back, x_test, y_test))
    )

    print(f"{'model':38} {'bytes':>9} {'ratio':>6} {'test accuracy':>14}")
    for name, size, acc in rows:
        print(f"{name:38} {size:>9,} {size / f32.size_bytes:>6.2f} {acc:>14.4f}")
    print(
        f"int8 ONNX vs float ONNX on {check['samples']} test digits: max abs diff "
        f"{check['max_abs_diff']:.4f}, arg-max agreement {check['agreement']:.4f}"
    )
    fp16_parity = ms.inspect(out / "digits.fp16.onnx").metadata["parity"]
    print(
        f"float16 parity: max abs diff {fp16_parity['max_abs_diff']:.4f} within "
        f"rtol={fp16_parity['rtol']}, atol={fp16_parity['atol']}"
    )
    print(f"torch int8 reloaded with model=Net gives identical outputs: {same}")
    assert same and check["agreement"] > 0.95


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)

"""ms.predict on an .onnx against raw onnxruntime, and ONNX against torch eager.

The digits MLP (64-32-10), batch 1 and 256, same run. Each figure is the median over
--repeat rounds of the mean time per call over --number calls.
Goal: ms.predict <= 1.05x session.run.
    python benchmarks/onnx_predict.py [--repeat 7] [--number 2000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import modelstore as ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from quickstart import Net  # noqa: E402


def per_call_us(fn: object, repeat: int, number: int) -> float:
    runs = timeit.repeat(fn, repeat=repeat, number=number)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = Net(hidden=32).eval()
    rows = [
        "## ms.predict on ONNX vs raw onnxruntime vs torch eager (digits MLP 64-32-10)",
        "",
        f"python {platform.python_version()}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; microseconds per call, median of {args.repeat} x {args.number}",
        "",
        "| batch | session.run µs | ms.predict(OnnxModel) µs | ratio | torch eager µs | ONNX vs torch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.onnx"
        x_all = np.random.default_rng(0).random((256, 64), dtype=np.float32)
        ms.export_onnx(net, path, sample_input=x_all[:16])
        model = ms.load(path)
        session = model.session
        name = session.get_inputs()[0].name
        for batch in (1, 256):
            x = x_all[:batch]
            xt = torch.from_numpy(x)

            def raw() -> object:
                return session.run(None, {name: x})[0]

            def ours() -> object:
                return ms.predict(model, x)

            def eager() -> object:
                with torch.inference_mode():
                    return net(xt).numpy()

            np.testing.assert_allclose(ours(), eager(), rtol=1e-4, atol=1e-5)
            t_raw = per_call_us(raw, args.repeat, args.number)
            t_ours = per_call_us(ours, args.repeat, args.number)
            t_eager = per_call_us(eager, args.repeat, args.number)
            rows.append(
                f"| {batch} | {t_raw:.1f} | {t_ours:.1f} | {t_ours / t_raw:.2f}x | {t_eager:.1f} | "
                f"{t_eager / t_raw:.2f}x faster |"
            )
    text = "\n".join(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

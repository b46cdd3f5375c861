"""ms.quantize against onnxruntime's own quantize_dynamic, and int8 against float32 predict.

The digits MLP (64-HIDDEN-10, exported by ms.export_onnx) quantized by both, interleaved in
the same run (ms.quantize adds: the load gate on the source, the Gemm rewrite, the atomic
write, metadata). Then ms.predict on the float32 and int8 files, batch 256.
    python benchmarks/quantize_onnx.py [--hidden 1024] [--repeat 5] [--number 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

from _timing import fmt_s, interleaved, table

import modelstore as ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from quickstart import Net

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    net = Net(hidden=args.hidden).eval()
    x = np.random.default_rng(0).random((256, 64), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src, ours, raw = Path(tmp) / "f.onnx", Path(tmp) / "ours.onnx", Path(tmp) / "raw.onnx"
        ms.export_onnx(net, src, sample_input=x[:16])
        # the raw call gets the MatMul graph ms.quantize makes of torch's Gemm (onnxruntime's
        # dynamic quantizer has no integer Gemm), so both quantize the same operators
        import onnx

        from modelstore.formats.onnx.quantize import gemm_as_matmul

        proto = onnx.load(str(src))
        gemm_as_matmul(proto)
        matmul = Path(tmp) / "mm.onnx"
        onnx.save(proto, str(matmul))
        times = interleaved(
            {
                "ms.quantize": lambda: ms.quantize(src, ours),
                "quantize_dynamic": lambda: quantize_dynamic(str(matmul), str(raw)),
            },
            repeat=args.repeat,
        )
        f32, int8 = ms.load(src), ms.load(ours)
        predict = interleaved(
            {"float32": lambda: ms.predict(f32, x), "int8": lambda: ms.predict(int8, x)},
            repeat=args.repeat,
            number=args.number,
        )
        sizes = (src.stat().st_size, ours.stat().st_size)
    load = os.getloadavg()[0]
    print(
        table(
            f"quantize the digits MLP 64-{args.hidden}-10 (onnxruntime {ort.__version__}, "
            f"load average {load:.1f})",
            ["call", "time", "ratio"],
            [
                [n, fmt_s(t), f"{t / times['quantize_dynamic']:.2f}x"]
                for n, t in sorted(times.items())
            ],
        )
    )
    print()
    print(
        table(
            f"ms.predict, batch 256: float32 ({sizes[0]:,} bytes) vs int8 ({sizes[1]:,} bytes)",
            ["model", "per call", "ratio"],
            [[n, fmt_s(t), f"{t / predict['float32']:.2f}x"] for n, t in predict.items()],
        )
    )


if __name__ == "__main__":
    main()

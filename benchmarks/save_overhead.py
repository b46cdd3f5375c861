"""ms.save against the durable raw save (write + fsync), same run, interleaved.

* scikit-learn RandomForest (digits): ``joblib.dump(m, p)`` + fsync vs ``ms.save(m, p)``
* torch weights (an MLP of Linear(2048, 2048)): ``safetensors.torch.save_file`` + fsync vs ``ms.save(net, p)``

Goal (issue 19): <= 1.1x. ``ms.save`` returns a ModelInfo (tensors, sha256, globals), which
it currently builds by inspecting the file it just wrote; the table splits that cost out.

    python benchmarks/save_overhead.py [--layers 24] [--trees 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joblib  # noqa: E402
import torch  # noqa: E402
from _timing import fmt_s, interleaved, table  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import modelstore as ms  # noqa: E402


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=args.trees, random_state=0).fit(x, y)
    net = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(args.layers)])
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Path(tmp)

        def raw_forest() -> None:
            joblib.dump(forest, d / "raw.joblib")
            fsync(d / "raw.joblib")

        def raw_torch() -> None:
            save_file(sd, d / "raw.safetensors")
            fsync(d / "raw.safetensors")

        t = interleaved(
            {
                "raw": raw_forest,
                "ms.save": lambda: ms.save(forest, d / "ms.joblib"),
                "ms.inspect": lambda: ms.inspect(d / "ms.joblib"),
            },
            repeat=args.repeat,
        )
        size = (d / "raw.joblib").stat().st_size
        rows.append(
            [
                f"RandomForest ({args.trees} trees, {size / 2**20:.0f} MiB)",
                "joblib.dump + fsync",
                fmt_s(t["raw"]),
                fmt_s(t["ms.save"]),
                f"{t['ms.save'] / t['raw']:.2f}x",
                fmt_s(t["ms.inspect"]),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
        t = interleaved(
            {
                "raw": raw_torch,
                "ms.save": lambda: ms.save(net, d / "ms.safetensors"),
                "ms.inspect": lambda: ms.inspect(d / "ms.safetensors"),
            },
            repeat=args.repeat,
        )
        size = (d / "raw.safetensors").stat().st_size
        rows.append(
            [
                f"torch MLP ({args.layers} x Linear(2048, 2048), {size / 2**20:.0f} MiB)",
                "save_file + fsync",
                fmt_s(t["raw"]),
                fmt_s(t["ms.save"]),
                f"{t['ms.save'] / t['raw']:.2f}x",
                fmt_s(t["ms.inspect"]),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs; median of "
        f"{args.repeat} interleaved rounds"
    )
    print()
    print(
        table(
            "ms.save vs the durable raw save",
            ["model", "raw", "raw time", "ms.save", "ratio", "of which a re-inspect would cost"],
            rows,
        )
    )


if __name__ == "__main__":
    main()

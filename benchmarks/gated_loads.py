"""Gated pickle loads and pinned loads against the raw call, interleaved (issue 19).

* ``.pt``: ``ms.load`` (one static scan; a plain state dict is built from it, anything else
  loaded by ``torch.load(weights_only=True)`` after it) vs ``torch.load(p, weights_only=True)``
  with and without ``mmap=True`` (which ms.load's tensors share), for N tiny tensors (the
  per-tensor worst case) and for an MLP state dict of about --mb MB.
* pickle / joblib: ``ms.load`` (the pure-Python restricted unpickler) vs ``joblib.load`` (its
  own pure-Python unpickler) / ``pickle.load`` (C) for a random forest, a gradient boosting
  model (200 small trees) and a dict of --keys string keys.
* pinned: ``ms.load(p, sha256=pin)`` vs ``ms.load(p)`` and one sha256 pass over the file,
  for the MLP ``.pt`` and ``.safetensors``: the goal is pinned <= raw + one sha256 pass
  (the "pinned / (load + sha)" column <= 1.0), warm page cache.

    python benchmarks/gated_loads.py [--counts 2000,4000] [--mb 64] [--keys 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import joblib  # noqa: E402
import torch  # noqa: E402
from _timing import fmt_s, interleaved, table  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import modelstore as ms  # noqa: E402


def sha256_pass(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def mlp(mb: int) -> dict[str, torch.Tensor]:
    width = 1024
    layers = max(1, (mb << 20) // (width * width * 4))
    return {f"l{i}.weight": torch.randn(width, width) for i in range(layers)} | {
        f"l{i}.bias": torch.randn(width) for i in range(layers)
    }


def row(label: str, t: dict[str, float], ours: str, raw: str) -> list[str]:
    return [label, fmt_s(t[ours]), raw, fmt_s(t[raw]), f"{t[ours] / t[raw]:.2f}x"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="2000,4000")
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ms.PickleWarning)
    rows: list[list[str]] = []
    pins: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for n in [int(c) for c in args.counts.split(",")]:
            p = d / f"n{n}.pt"
            torch.save({f"layers.{i}.weight": torch.full((4,), float(i)) for i in range(n)}, p)
            t = interleaved(
                {
                    "torch.load": lambda: torch.load(p, weights_only=True),
                    "torch.load mmap": lambda: torch.load(p, weights_only=True, mmap=True),
                    "ms.load": lambda: ms.load(p),
                },
                repeat=args.repeat,
            )
            for raw in ("torch.load", "torch.load mmap"):
                rows.append(row(f".pt, {n:,} tiny tensors", t, "ms.load", raw))
        sd = mlp(args.mb)
        pt, st = d / "mlp.pt", d / "mlp.safetensors"
        torch.save(sd, pt)
        save_file(sd, st)
        t = interleaved(
            {
                "torch.load": lambda: torch.load(pt, weights_only=True),
                "torch.load mmap": lambda: torch.load(pt, weights_only=True, mmap=True),
                "ms.load": lambda: ms.load(pt),
            },
            repeat=args.repeat,
        )
        for raw in ("torch.load", "torch.load mmap"):
            rows.append(row(f".pt, MLP {pt.stat().st_size >> 20} MiB", t, "ms.load", raw))

        from sklearn.datasets import load_digits
        from sklearn.ensemble import RandomForestClassifier

        x, y = load_digits(return_X_y=True)
        forest = d / "forest.joblib"
        joblib.dump(RandomForestClassifier(100, random_state=0).fit(x, y), forest)
        t = interleaved(
            {"joblib.load": lambda: joblib.load(forest), "ms.load": lambda: ms.load(forest)},
            repeat=args.repeat,
        )
        rows.append(row("joblib, forest of 100 trees", t, "ms.load", "joblib.load"))
        from sklearn.ensemble import GradientBoostingClassifier

        boosting = d / "boosting.joblib"
        joblib.dump(GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y), boosting)
        t = interleaved(
            {"joblib.load": lambda: joblib.load(boosting), "ms.load": lambda: ms.load(boosting)},
            repeat=args.repeat,
        )
        rows.append(row("joblib, boosting of 20 x 10 trees", t, "ms.load", "joblib.load"))
        vocab = d / "vocab.pkl"
        vocab.write_bytes(pickle.dumps({f"token{i}": i for i in range(args.keys)}, protocol=4))

        def pickle_load() -> Any:
            with open(vocab, "rb") as f:
                return pickle.load(f)

        t = interleaved(
            {"pickle.load": pickle_load, "ms.load": lambda: ms.load(vocab)}, repeat=args.repeat
        )
        rows.append(row(f"pickle, dict of {args.keys:,} str keys", t, "ms.load", "pickle.load"))

        for path in (pt, st):
            pin = sha256_pass(path)
            t = interleaved(
                {
                    "ms.load": lambda: ms.load(path),
                    "pinned": lambda: ms.load(path, sha256=pin),
                    "sha256": lambda: sha256_pass(path),
                },
                repeat=args.repeat,
            )
            pins.append(
                [
                    f"{path.suffix}, {path.stat().st_size >> 20} MiB",
                    fmt_s(t["ms.load"]),
                    fmt_s(t["sha256"]),
                    fmt_s(t["pinned"]),
                    f"{t['pinned'] / t['ms.load']:.2f}x",
                    f"{t['pinned'] / (t['ms.load'] + t['sha256']):.2f}",
                ]
            )
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {args.repeat} "
        "interleaved rounds, warm page cache"
    )
    print()
    print(table("Gated loads", ["file", "ms.load", "raw", "raw time", "ratio"], rows))
    print()
    print(
        table(
            "Pinned loads (sha256=)",
            [
                "file",
                "ms.load",
                "one sha256 pass",
                "pinned",
                "pinned / load",
                "pinned / (load + sha)",
            ],
            pins,
        )
    )


if __name__ == "__main__":
    main()

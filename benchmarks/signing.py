"""Signing benchmark: sign, verify, and verify+load next to a plain load, for ~400 MB and ~2 GB.

A safetensors file of float32 tensors (64 MiB each). Methods, each timed in this process,
interleaved, ``--repeat`` times, median reported (warm page cache: the file was just written):

* ``raw_load``       safetensors.torch.load_file(p), every tensor touched once (sum)
* ``ms_load``        ms.load(p) (checksum verified), every tensor touched once
* ``ms_load_signed`` ms.load(p, signed_by=pub): private copy + model_signing's verification + load
* ``ms_sign``        ms.sign(p, key=...)
* ``ms_verify``      ms.verify(p, signed_by=pub): private copy + verification, no load
* ``raw_ms_verify``  model_signing.verifying.Config().verify(folder, sig) (hashes in place, no copy)

    python benchmarks/signing.py                       # 400 MB and 2 GB, 3 repeats
    python benchmarks/signing.py --sizes 100 --repeat 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import verifying
from safetensors.torch import load_file

import modelstore as ms

TENSOR = 4096 * 4096  # float32 elements: 64 MiB


def touch(sd: dict[str, Any]) -> float:
    return float(sum(t.sum() for t in sd.values()))


def bench(size_mb: int, repeat: int, folder: Path) -> dict[str, float]:
    n = max(1, round(size_mb * 1e6 / (TENSOR * 4)))
    model_dir = folder / f"m{size_mb}"
    model_dir.mkdir()
    path = model_dir / "w.safetensors"
    ms.save({f"t{i}": torch.randn(4096, 4096) for i in range(n)}, path)
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    pub_file = folder / "k.pub"
    pub_file.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ms.sign(path, key=key)
    methods: dict[str, Callable[[], Any]] = {
        "raw_load": lambda: touch(load_file(str(path))),
        "ms_load": lambda: touch(ms.load(path)),
        "ms_load_signed": lambda: touch(ms.load(path, signed_by=pub)),
        "ms_sign": lambda: ms.sign(path, key=key),
        "ms_verify": lambda: ms.verify(path, signed_by=pub),
        "raw_ms_verify": lambda: (
            verifying.Config()
            .use_elliptic_key_verifier(public_key=pub_file)
            .set_ignore_unsigned_files(True)
            .verify(model_dir, path.with_name("w.safetensors.sig"))
        ),
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    path.unlink()
    return {m: statistics.median(t) for m, t in times.items()} | {"bytes": float(n * TENSOR * 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 2000], help="model sizes in MB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
        f"median of {args.repeat}, warm page cache\n"
    )
    print(
        "| size | raw load | ms.load | ms.load(signed_by=) | ms.sign | ms.verify | model_signing verify |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = bench(size, args.repeat, Path(tmp))
            mib = r["bytes"] / 2**20
            cells = [
                f"{r[m]:.2f} s ({r[m] / r['raw_load']:.1f}x)"
                for m in (
                    "raw_load",
                    "ms_load",
                    "ms_load_signed",
                    "ms_sign",
                    "ms_verify",
                    "raw_ms_verify",
                )
            ]
            print(f"| {mib:.0f} MiB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Load a Hugging Face folder of .bin shards vs the same weights in one pytorch_model.bin,
and vs the raw library call (torch.load(weights_only=True) of each shard).

    .venv/bin/python benchmarks/hf_folders.py [MB]

Every shard goes through the pickle gate (scanned, then loaded from the same descriptor),
so the ratio to the single file shows what sharding costs. The gate's verdict of each shard
is kept (by device, inode, size, mtime and ctime) for the load that follows, so the first
load scans each shard once and a repeated load of unchanged shards none.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict

import modelstore as ms


def best(fn, n: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n = 32
    sd = {f"layer{i}.weight": torch.randn(mb * 2**20 // 4 // n) for i in range(n)}
    root = Path(tempfile.mkdtemp())
    try:
        one, many = root / "one", root / "many"
        one.mkdir()
        many.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_torch_state_dict(sd, one, safe_serialization=False, max_shard_size="100GB")
            save_torch_state_dict(sd, many, safe_serialization=False, max_shard_size=f"{mb // 8}MB")
            shards = sorted(many.glob("pytorch_model-*.bin"))
            t = time.perf_counter()
            ms.load(
                many
            )  # the first load scans every shard (later loads reuse the verdicts of unchanged shards)
            first = time.perf_counter() - t
            raw = best(lambda: [torch.load(s, weights_only=True, mmap=True) for s in shards])
            single = best(lambda: ms.load(one))
            sharded = best(lambda: ms.load(many))
        print(
            f"{mb} MB, {len(shards)} shards: raw torch.load of the shards {raw * 1000:.1f} ms, "
            f"ms.load single file {single * 1000:.1f} ms, ms.load sharded folder {sharded * 1000:.1f} ms "
            f"(sharded/single {sharded / single:.2f}x, sharded/raw {sharded / raw:.2f}x); "
            f"first sharded load {first * 1000:.1f} ms"
        )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

"""Save/load throughput: local disk vs S3 on loopback (moto in server mode), same run.

For each place, modelstore's call against the raw calls a script would write by hand:
- local:  ms.save / ms.load               vs safetensors.torch.save_file / load_file
- S3:     ms.save("s3://...") / ms.load   vs save_file + s3fs put_file / get_file + load_file
- store:  Store.save / Store.load (local folder and S3), which add a version claim and a manifest
- inspect of a remote .safetensors (two range requests) vs downloading the file

Each figure is the median of --repeat runs; throughput is model bytes / seconds. The S3 server
is a Python process on the same 2 cores, so absolute S3 figures say more about moto than about
S3; the ratios against the raw calls in the same run are the point.
    python benchmarks/storage.py [--size-mb 256] [--repeat 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import modelstore as ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import s3server  # noqa: E402


def timed(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    runs = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - start)
        del out
    return statistics.median(runs)


def make_state(size_mb: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    n_layers = 8
    per = size_mb * (1 << 20) // 4 // n_layers
    return {f"layer{i}.weight": torch.randn(per) for i in range(n_layers)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sd = make_state(args.size_mb)
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    server = s3server.start()
    try:
        rows = run(sd, nbytes, server, args.repeat)
    finally:
        server.process.terminate()
    mb = nbytes / 1e6
    lines = [
        f"## Save/load throughput, {mb:.0f} MB of float32 tensors: local disk vs S3 on loopback",
        "",
        f"python {platform.python_version()}, torch {torch.__version__}, moto server on 127.0.0.1; "
        f"median of {args.repeat}; MB/s = model bytes / seconds",
        "",
        "| operation | raw s | raw MB/s | modelstore s | modelstore MB/s | ratio (ms / raw) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, raw, ours in rows:
        raw_cells = f"{raw:.3f} | {mb / raw:,.0f}" if raw else "- | -"
        ratio = f"{ours / raw:.2f}x" if raw else "-"
        lines.append(f"| {name} | {raw_cells} | {ours:.3f} | {mb / ours:,.0f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def run(
    sd: dict[str, torch.Tensor], nbytes: int, server: Any, repeat: int
) -> list[tuple[str, float, float]]:
    import s3fs

    s3 = s3fs.S3FileSystem()
    bucket = server.bucket()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        raw_path, ms_path = tmp / "raw.safetensors", tmp / "ms.safetensors"
        raw = timed(lambda: save_file(sd, raw_path), repeat)
        ours = timed(lambda: ms.save(sd, ms_path), repeat)
        rows.append(("local save", raw, ours))
        raw = timed(lambda: sum(t.sum().item() for t in load_file(raw_path).values()), repeat)
        ours = timed(lambda: sum(t.sum().item() for t in ms.load(ms_path).values()), repeat)
        rows.append(("local load (+ touch every tensor)", raw, ours))

        key = f"{bucket}/raw.safetensors"
        uri = f"s3://{bucket}/ms.safetensors"

        def raw_s3_save() -> None:
            save_file(sd, raw_path)
            s3.put_file(str(raw_path), key)

        raw = timed(raw_s3_save, repeat)
        ours = timed(lambda: ms.save(sd, uri), repeat)
        rows.append(("S3 save", raw, ours))

        def raw_s3_load() -> float:
            local = tmp / f"dl-{uuid.uuid4().hex}.safetensors"
            s3.get_file(key, str(local))
            total = sum(t.sum().item() for t in load_file(local).values())
            local.unlink()
            return total

        raw = timed(raw_s3_load, repeat)
        ours = timed(lambda: sum(t.sum().item() for t in ms.load(uri).values()), repeat)
        rows.append(("S3 load (+ touch every tensor)", raw, ours))

        def download_only() -> None:
            local = tmp / "dl.safetensors"
            s3.get_file(key, str(local))
            local.unlink()

        raw = timed(download_only, repeat)
        ours = timed(lambda: ms.inspect(uri), repeat)
        rows.append(("inspect remote header vs download", raw, ours))

        for label, root in (("local", str(tmp / "store")), ("S3", f"s3://{bucket}/store")):
            store = ms.Store(root)
            ours = timed(lambda: store.save(sd, "bench"), repeat)
            raw_save = rows[0][1] if label == "local" else rows[2][1]
            rows.append((f"Store.save ({label}) vs raw save", raw_save, ours))
            ours = timed(lambda: sum(t.sum().item() for t in store.load("bench").values()), repeat)
            raw_load = rows[1][1] if label == "local" else rows[3][1]
            rows.append((f"Store.load ({label}) vs raw load", raw_load, ours))
    return rows


if __name__ == "__main__":
    main()

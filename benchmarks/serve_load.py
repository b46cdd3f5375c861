"""A bounded load on `modelstore serve`: throughput and p50/p99 latency.

Starts the server on loopback for the digits MLP exported to ONNX, sends --requests POST
/predict calls (one row each) from --concurrency concurrent clients, and stops the server.
    python benchmarks/serve_load.py [--requests 2000] [--concurrency 16] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

import modelstore as ms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from quickstart import Net  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(
    url: str, requests: int, concurrency: int, rows: list[list[float]]
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as http:
            while not queue.empty():
                i = queue.get_nowait()
                t = time.perf_counter()
                r = await http.post(f"{url}/predict", json={"inputs": [rows[i % len(rows)]]})
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.onnx"
        ms.export_onnx(Net().eval(), path, sample_input=np.zeros((4, 64), np.float32))
        port = free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        server = subprocess.Popen(
            [sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            rows = np.random.default_rng(0).random((64, 64)).round(4).tolist()
            asyncio.run(load(url, 100, args.concurrency, rows))  # warm-up
            started = time.perf_counter()
            latencies, errors = asyncio.run(load(url, args.requests, args.concurrency, rows))
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=10)
    ms_sorted = sorted(v * 1000 for v in latencies)
    p50 = statistics.median(ms_sorted)
    p99 = ms_sorted[min(len(ms_sorted) - 1, int(0.99 * len(ms_sorted)))]
    text = "\n".join(
        [
            "## modelstore serve under load (digits MLP, ONNX, one row per request)",
            "",
            f"python {platform.python_version()}, {os.cpu_count()} CPUs, server and clients on one machine (loopback)",
            "",
            "| requests | concurrency | errors | seconds | requests/s | p50 ms | p99 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {len(latencies)} | {args.concurrency} | {errors} | {elapsed:.2f} | {len(latencies) / elapsed:.0f} | "
            f"{p50:.1f} | {p99:.1f} |",
        ]
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

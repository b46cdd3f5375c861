"""``modelstore serve`` against a plain Starlette handler calling the same raw predict.

Two real server processes (uvicorn, same settings) serve the same loaded model on loopback:
``python -m modelstore serve`` and a hand-written Starlette app whose POST /predict does
``json.loads`` -> ``numpy`` -> the raw call (``net(x)`` under ``torch.inference_mode()``,
``forest.predict(x)``) -> ``JSONResponse``. A load generator in a third process (plain
asyncio sockets, HTTP/1.1 keep-alive, one row per request) drives one server at a time,
alternating between them in rotating order, several rounds; the table gives each server's
median requests/s, p50/p99 latency and CPU time per request (read from /proc on Linux), and
the ratio modelstore / plain (goal >= 0.9x).

    python benchmarks/serve_vs_starlette.py [--requests 1500] [--concurrency 1,16,64]
        [--repeat 3] [--models torch,forest]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICKSTART = ROOT / "examples" / "quickstart.py"


# -- the plain server (a child process) -----------------------------------------------------


def plain_app(kind: str, path: str) -> object:
    """The hand-written app: what one would write without modelstore (no checks, no bounds)."""
    import numpy as np
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import modelstore as ms

    if kind == "torch":
        import torch

        sys.path.insert(0, str(QUICKSTART.parent))
        from quickstart import Net

        net = ms.load(path, model=Net).eval()

        def raw(x: np.ndarray) -> list:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy().tolist()
    else:
        forest = ms.load(path)

        def raw(x: np.ndarray) -> list:
            return forest.predict(x).tolist()

    async def predict(request: Request) -> JSONResponse:
        data = json.loads(await request.body())
        x = np.asarray(data["inputs"], dtype=np.float32)
        return JSONResponse({"outputs": raw(x)})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)]
    )


def serve_plain(kind: str, path: str, port: int) -> None:
    import uvicorn

    app = plain_app(kind, path)
    # the settings modelstore.serve.run uses
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    asyncio.run(server.serve())


# -- the load generator (a child process) ---------------------------------------------------


async def drive(port: int, body: bytes, concurrency: int, requests: int) -> dict[str, object]:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    left = [requests]
    latencies: list[float] = []
    errors = [0]
    length = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                t = time.perf_counter()
                writer.write(request)
                got = await reader.readuntil(b"\r\n\r\n")
                m = length.search(got)
                await reader.readexactly(int(m.group(1)) if m else 0)
                latencies.append(time.perf_counter() - t)
                errors[0] += got[9:12] != b"200"
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "rps": len(lat) / elapsed,
        "p50": lat[len(lat) // 2] * 1e3,
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3,
        "errors": errors[0],
    }


# -- the conductor --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``; -1 elsewhere), so
    the table can say what each server spent per request, not only how fast it answered."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"a server exited early ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("a server did not start")


def make_models(tmp: Path, kinds: list[str]) -> dict[str, Path]:
    import warnings

    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    import modelstore as ms

    sys.path.insert(0, str(QUICKSTART.parent))
    from quickstart import Net

    x, y = load_digits(return_X_y=True)
    out = {}
    if "torch" in kinds:
        torch.manual_seed(0)
        out["torch"] = tmp / "mlp.safetensors"
        ms.save(Net().eval(), out["torch"], config={})
    if "forest" in kinds:
        out["forest"] = tmp / "forest.joblib"
        forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(
            x.astype(np.float32), y
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ms.save(forest, out["forest"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="torch,forest")
    parser.add_argument("--serve-plain", nargs=3, metavar=("KIND", "PATH", "PORT"))
    parser.add_argument("--drive", nargs=4, metavar=("PORT", "BODY", "CONCURRENCY", "N"))
    args = parser.parse_args()
    if args.serve_plain:
        kind, path, port = args.serve_plain
        serve_plain(kind, path, int(port))
        return
    if args.drive:
        port, body, conc, n = args.drive
        print(json.dumps(asyncio.run(drive(int(port), body.encode(), int(conc), int(n)))))
        return

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_models(Path(tmp), kinds)
        import numpy as np

        row = np.random.default_rng(0).random((1, 64)).round(4).tolist()
        body = json.dumps({"inputs": row})
        for kind in kinds:
            path = str(paths[kind])
            ports = {"modelstore": free_port(), "plain": free_port()}
            ms_cmd = [
                sys.executable,
                "-m",
                "modelstore",
                "serve",
                path,
                "--port",
                str(ports["modelstore"]),
            ]
            if kind == "torch":
                ms_cmd += ["--model", f"{QUICKSTART}:Net"]
            servers = {
                "modelstore": subprocess.Popen(ms_cmd, env=env, stdout=subprocess.DEVNULL),
                "plain": subprocess.Popen(
                    [sys.executable, __file__, "--serve-plain", kind, path, str(ports["plain"])],
                    env=env,
                ),
            }
            try:
                for name, proc in servers.items():
                    wait_ready(ports[name], proc)
                for conc in levels:
                    results: dict[str, list[dict[str, float]]] = {"modelstore": [], "plain": []}
                    names = list(servers)
                    for r in range(args.repeat + 1):  # round 0 warms both up
                        for name in names[r % 2 :] + names[: r % 2]:
                            before = cpu_seconds(servers[name].pid)
                            out = subprocess.run(
                                [
                                    sys.executable,
                                    __file__,
                                    "--drive",
                                    str(ports[name]),
                                    body,
                                    str(conc),
                                    str(args.requests),
                                ],
                                env=env,
                                capture_output=True,
                                text=True,
                                check=True,
                            )
                            if r:
                                got = json.loads(out.stdout)
                                spent = cpu_seconds(servers[name].pid) - before
                                got["cpu"] = spent / args.requests * 1e6 if spent >= 0 else -1
                                results[name].append(got)
                    med = {
                        n: {
                            k: statistics.median(x[k] for x in v)
                            for k in ("rps", "p50", "p99", "cpu")
                        }
                        for n, v in results.items()
                    }
                    errors = sum(x["errors"] for v in results.values() for x in v)
                    rows.append(
                        f"| {kind} | {conc} | {med['plain']['rps']:.0f} | {med['modelstore']['rps']:.0f} | "
                        f"**{med['modelstore']['rps'] / med['plain']['rps']:.2f}x** | "
                        f"{med['plain']['p50']:.1f} / {med['plain']['p99']:.1f} | "
                        f"{med['modelstore']['p50']:.1f} / {med['modelstore']['p99']:.1f} | "
                        f"{med['plain']['cpu']:.0f} / {med['modelstore']['cpu']:.0f} | {errors} |"
                    )
                    print(rows[-1], flush=True)
            finally:
                for proc in servers.values():
                    proc.terminate()
                    proc.wait(timeout=20)
    load = os.getloadavg()[0]
    print()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.1f} at the end; "
        f"{args.requests} requests per run, one row each, median of {args.repeat} interleaved rounds"
    )
    print()
    print(
        "| model | clients | plain req/s | modelstore req/s | ratio | plain p50 / p99 ms | "
        "modelstore p50 / p99 ms | server CPU µs per request, plain / modelstore | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

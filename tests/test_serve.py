"""modelstore serve: a real server on loopback, called over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("serve")
    path = root / "digits.onnx"
    ms.export_onnx(models.trained_net(), path, sample_input=np.zeros((4, 64), np.float32))
    info = ms.inspect(path)
    assert info.format == "onnx"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    yield url
    proc.terminate()
    proc.communicate(timeout=10)


def test_health_and_info(server: str) -> None:
    """GET /health answers ok; GET /info returns inspect's data."""
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    info = httpx.get(f"{server}/info").json()
    assert info["format"] == "onnx" and info["num_params"] == 64 * 32 + 32 + 32 * 10 + 10


def test_predict_over_http(server: str) -> None:
    """POST /predict returns outputs matching the model; proba and label work."""
    x = np.random.default_rng(0).random((3, 64)).tolist()
    r = httpx.post(f"{server}/predict", json={"inputs": x})
    assert r.status_code == 200
    out = np.array(r.json()["outputs"])
    np.testing.assert_allclose(out, ms.predict(models.trained_net(), np.array(x, np.float32)), rtol=1e-4,
                               atol=1e-5)
    proba = httpx.post(f"{server}/predict", json={"inputs": x, "output": "proba"}).json()["outputs"]
    np.testing.assert_allclose(np.sum(proba, axis=1), 1, rtol=1e-5)
    labels = httpx.post(f"{server}/predict", json={"inputs": x, "output": "label"}).json()["outputs"]
    assert len(labels) == 3


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b'{"rows": []}', 422),
    (b'{"inputs": [[1, 2, 3]]}', 422),
    (b'{"inputs": [[0.0]], "output": "probs"}', 422),
    (b'{"inputs": "abc"}', 422),
])
def test_bad_requests_are_4xx_without_traceback(server: str, body: bytes, status: int) -> None:
    """Bad JSON, a missing field, a wrong shape or output mode: a 4xx with a clear message."""
    r = httpx.post(f"{server}/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert "error" in r.json() and "Traceback" not in r.text


def test_serve_refuses_unsafe_files(tmp_path: Path) -> None:
    """The server loads through the trust gate: a hostile file never starts serving."""
    import pickle

    from tests.hostile import Reduce

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Reduce(os.getcwd)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(free_port())],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "refused" in proc.stderr

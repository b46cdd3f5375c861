"""serve at start-up (refuses what it cannot serve, announces only when ready), shape errors
as 422 naming the shape, and the app mounted inside a user's FastAPI application."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.serve import create_app  # noqa: E402
from tests import models  # noqa: E402
from tests.test_serve import free_port  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _weights(tmp_path: Path) -> Path:
    path = tmp_path / "digits.safetensors"
    ms.save(models.trained_net(), path, sample_input=torch.zeros(2, 64), labels=list("0123456789"))
    return path


@pytest.mark.slow  # seconds; the full suite runs it
def test_weights_without_model_are_refused_at_start_up(tmp_path: Path) -> None:
    """A weights-only file without --model stops serve at once, naming the recorded class."""
    path = _weights(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "weights only" in proc.stderr and "--model tests.models:Net" in proc.stderr
    assert "serving" not in proc.stdout
    with pytest.raises(ms.ArgumentError, match="model="):
        create_app(str(path))


@pytest.mark.slow
def test_serving_is_announced_when_it_answers(tmp_path: Path) -> None:
    """The "serving ... on ..." line comes once the model is loaded and the port listens."""
    path = _weights(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelstore",
            "serve",
            str(path),
            "--port",
            str(port),
            "--model",
            "tests.models:Net",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the announcement
        assert line.startswith(f"serving {path} on http://127.0.0.1:{port}"), line
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)  # no retry needed
        assert health.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


def test_shape_error_is_a_422_naming_the_shape(tmp_path: Path) -> None:
    """Rows of the wrong width: 422, naming the recorded (N, 64); the next request works."""
    from starlette.testclient import TestClient

    client = TestClient(create_app(str(_weights(tmp_path)), model=models.Net))
    wrong = client.post("/predict", json={"inputs": [[0.5] * 3]})
    assert wrong.status_code == 422 and "(N, 64)" in wrong.json()["error"], wrong.text
    ok = client.post("/predict", json={"inputs": [[0.5] * 64], "output": "label"})
    assert ok.status_code == 200 and len(ok.json()["outputs"]) == 1


def test_mounted_in_a_fastapi_app(tmp_path: Path) -> None:
    """app.mount("/digits", create_app(...)) inside a user's FastAPI app, its /docs intact."""
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = fastapi.FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount("/digits", create_app(str(_weights(tmp_path)), model=models.Net))
    client = TestClient(app)
    assert client.get("/hello").json() == {"hello": "world"}
    assert client.get("/docs").status_code == 200
    assert client.get("/digits/health").json()["status"] == "ok"
    answer = client.post("/digits/predict", json={"inputs": [[0.5] * 64], "output": "label"})
    assert answer.status_code == 200 and answer.json()["outputs"][0] in list("0123456789")
    assert client.post("/digits/predict", json={"inputs": [[1, 2]]}).status_code == 422

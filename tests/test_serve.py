"""modelstore serve: a real server on loopback, called over HTTP."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("sklearn")

import modelstore as ms  # noqa: E402
from modelstore.serve import Limits, create_app  # noqa: E402
from tests import models  # noqa: E402
from tests.hostile import CORPUS, NAIVE_LOADER, Reduce, py_touch  # noqa: E402

#: Tight limits for the scikit-learn server, so limit tests stay small and fast.
TIGHT = [
    "--max-body-bytes",
    "200000",
    "--max-rows",
    "50",
    "--max-values",
    "3200",
    "--max-batches",
    "4",
]
JSON = {"content-type": "application/json"}
ROW = [0.5] * 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(path: Path, *flags: str) -> Iterator[str]:
    """``python -m modelstore serve PATH FLAGS`` on a free loopback port, until the block ends."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise AssertionError(proc.communicate()[1]) from None
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not start")
        yield url
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits MLP exported to ONNX."""
    path = tmp_path_factory.mktemp("serve") / "digits.onnx"
    ms.export_onnx(models.trained_net(), path, sample_input=np.zeros((4, 64), np.float32))
    assert ms.inspect(path).format == "onnx"
    return path


@pytest.fixture(scope="module")
def server(digits_onnx: Path) -> Iterator[str]:
    """The digits MLP in ONNX, served with the default limits."""
    with serving(digits_onnx) as url:
        yield url


@pytest.fixture(scope="module")
def sk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A digits RidgeClassifier saved with ms.save, served with tight limits (TIGHT)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import RidgeClassifier

    x, y = load_digits(return_X_y=True)
    path = tmp_path_factory.mktemp("serve") / "digits.joblib"
    ms.save(RidgeClassifier().fit(x, y), path)
    with serving(path, *TIGHT) as url:
        yield url


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
    np.testing.assert_allclose(
        out, ms.predict(models.trained_net(), np.array(x, np.float32)), rtol=1e-4, atol=1e-5
    )
    proba = httpx.post(f"{server}/predict", json={"inputs": x, "output": "proba"}).json()["outputs"]
    np.testing.assert_allclose(np.sum(proba, axis=1), 1, rtol=1e-5)
    labels = httpx.post(f"{server}/predict", json={"inputs": x, "output": "label"}).json()[
        "outputs"
    ]
    assert len(labels) == 3
    batched = httpx.post(f"{server}/predict", json={"inputs": x, "batch_size": 2}).json()["outputs"]
    np.testing.assert_allclose(batched, out, rtol=1e-6)


def _deep(levels: int) -> bytes:
    return b'{"inputs": ' + b"[" * levels + b"0" + b"]" * levels + b"}"


def _pickle_marker(marker: Path) -> bytes:
    return pickle.dumps(Reduce(exec, py_touch(marker)))


#: (name, body, headers, status or statuses): each a client mistake the server answers with a 4xx.
BAD: list[tuple[str, bytes, dict[str, str], int | tuple[int, ...]]] = [
    ("not_json", b"{not json", JSON, 400),
    ("empty_body", b"", JSON, 400),
    ("invalid_utf8", b'{"inputs": [["\xff"]]}', JSON, 400),
    ("deep_90k", b'{"inputs": ' + b"[" * 90_000 + b"]" * 90_000 + b"}", JSON, (400, 413)),
    ("deep_objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON, 400),
    ("dims_64", _deep(64), JSON, 422),
    ("dims_7", _deep(7), JSON, 422),
    ("infinity", b'{"inputs": [[Infinity]]}', JSON, 422),
    ("minus_infinity", b'{"inputs": [[-Infinity]]}', JSON, 422),
    ("nan", b'{"inputs": [[NaN]]}', JSON, 422),
    ("overflow", b'{"inputs": [[1e999]]}', JSON, 422),
    ("huge_int", json.dumps({"inputs": [[10**100] * 64]}).encode(), JSON, 422),
    ("digits_5000", b'{"inputs": [[' + b"7" * 5000 + b"]]}", JSON, 400),
    ("not_an_object", b"[[0.0]]", JSON, 422),
    ("missing_inputs", b'{"rows": []}', JSON, 422),
    ("unknown_field", json.dumps({"inputs": [ROW], "trust": True}).encode(), JSON, 422),
    ("string_inputs", b'{"inputs": "abc"}', JSON, 422),
    ("strings_in_rows", b'{"inputs": [["a", "b"]]}', JSON, 422),
    ("text_rows", b'{"inputs": ["some text", "more"]}', JSON, 422),
    ("mixed", b'{"inputs": [[1, "a"]]}', JSON, 422),
    ("null_inputs", b'{"inputs": null}', JSON, 422),
    ("null_value", b'{"inputs": [[null]]}', JSON, 422),
    ("object_value", b'{"inputs": [[{"a": 1}]]}', JSON, 422),
    ("scalar", b'{"inputs": 5}', JSON, 422),
    ("empty", b'{"inputs": []}', JSON, 422),
    ("empty_row", b'{"inputs": [[]]}', JSON, 422),
    ("ragged", b'{"inputs": [[1, 2, 3], [1]]}', JSON, 422),
    ("list_beside_numbers", b'{"inputs": [[1, [2]]]}', JSON, 422),
    ("wrong_features", b'{"inputs": [[1, 2, 3]]}', JSON, 422),
    ("wrong_rank", json.dumps({"inputs": [[ROW]]}).encode(), JSON, 422),
    ("one_dim", json.dumps({"inputs": ROW}).encode(), JSON, (422, 413)),  # 64 rows of one value
    ("named_wrong", json.dumps({"inputs": {"x": [ROW]}}).encode(), JSON, 422),
    (
        "named_too_many",
        json.dumps({"inputs": {str(i): [ROW] for i in range(17)}}).encode(),
        JSON,
        422,
    ),
    ("output_unknown", json.dumps({"inputs": [ROW], "output": "probs"}).encode(), JSON, 422),
    ("output_not_text", json.dumps({"inputs": [ROW], "output": [[1]]}).encode(), JSON, 422),
    ("batch_zero", json.dumps({"inputs": [ROW], "batch_size": 0}).encode(), JSON, 422),
    ("batch_negative", json.dumps({"inputs": [ROW], "batch_size": -5}).encode(), JSON, 422),
    ("batch_text", json.dumps({"inputs": [ROW], "batch_size": "3"}).encode(), JSON, 422),
    ("batch_float", json.dumps({"inputs": [ROW], "batch_size": 1.5}).encode(), JSON, 422),
    ("batch_bool", json.dumps({"inputs": [ROW], "batch_size": True}).encode(), JSON, 422),
    ("batch_list", json.dumps({"inputs": [ROW], "batch_size": [1]}).encode(), JSON, 422),
    ("text_plain", json.dumps({"inputs": [ROW]}).encode(), {"content-type": "text/plain"}, 415),
    (
        "form",
        json.dumps({"inputs": [ROW]}).encode(),
        {"content-type": "application/x-www-form-urlencoded"},
        415,
    ),
]


def _good(client: httpx.Client, url: str) -> None:
    r = client.post(f"{url}/predict", json={"inputs": [ROW, ROW]})
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"]) == 2


@pytest.mark.parametrize("which", ["server", pytest.param("sk_server", marks=pytest.mark.slow)])
def test_every_client_mistake_is_a_4xx_and_the_next_request_works(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Each bad request gets its 4xx with a JSON error and no traceback; a good request on the
    same server (and the same connection) right after it succeeds."""
    url = request.getfixturevalue(which)
    wrong = []
    with httpx.Client(timeout=60) as client:
        for name, body, headers, status in BAD:
            r = client.post(f"{url}/predict", content=body, headers=headers)
            error = (
                r.json().get("error")
                if r.headers.get("content-type") == "application/json"
                else None
            )
            allowed = status if isinstance(status, tuple) else (status,)
            if (
                r.status_code not in allowed
                or not isinstance(error, str)
                or not error
                or "Traceback" in r.text
            ):
                wrong.append((name, r.status_code, r.text[:200]))
            _good(client, url)
    assert not wrong, wrong


@pytest.mark.slow
def test_limits_answer_413(sk_server: str) -> None:
    """Bodies, rows and values over the server's limits are 413s, streamed or declared; the
    server reads no further than the limit and the next request works."""
    over_rows = json.dumps({"inputs": [ROW] * 51}).encode()
    over_values = json.dumps({"inputs": [[0.5] * 3201]}).encode()
    big = b'{"inputs": [' + b"[0.5]," * 40_000 + b"[0.5]]}"
    commas = b'{"inputs": [[' + b"0," * 90_000 + b"0]]}"

    def streamed() -> Iterator[bytes]:
        for _ in range(1000):  # 64 MiB, without a Content-Length
            yield b" " * (64 << 10)

    with httpx.Client(timeout=60) as client:
        for body in (over_rows, over_values, big, commas, streamed()):
            r = client.post(f"{sk_server}/predict", content=body, headers=JSON)
            assert r.status_code == 413 and r.json()["error"], r.text
            _good(client, sk_server)
        r = client.post(f"{sk_server}/predict", json={"inputs": [ROW] * 50, "batch_size": 13})
        assert r.status_code == 200 and len(r.json()["outputs"]) == 50
        r = client.post(f"{sk_server}/predict", json={"inputs": [ROW] * 50, "batch_size": 1})
        assert r.status_code == 422 and "at least 13" in r.json()["error"]


def test_wrong_method_and_path_are_json(server: str) -> None:
    """GET /predict is a 405 and an unknown path a 404, both with a JSON error."""
    r = httpx.get(f"{server}/predict")
    assert r.status_code == 405 and r.json()["error"]
    r = httpx.post(f"{server}/nope", json={})
    assert r.status_code == 404 and r.json()["error"]


def test_a_huge_batch_size_is_one_batch(server: str) -> None:
    """A batch_size far above the rows (10**30) runs the rows as one batch."""
    r = httpx.post(f"{server}/predict", json={"inputs": [ROW], "batch_size": 10**30})
    assert r.status_code == 200 and len(r.json()["outputs"]) == 1


def test_the_old_12_minute_request_is_refused_at_once(server: str) -> None:
    """64 MiB of one-row inputs with batch_size=1 (minutes of CPU before) is a 413 in a blink."""
    body = (
        b'{"batch_size": 1, "inputs": ['
        + (b"[" + b"0," * 63 + b"0],") * ((64 << 20) // 130)
        + b"[0]]}"
    )
    start = time.perf_counter()
    r = httpx.post(f"{server}/predict", content=body, headers=JSON, timeout=60)
    assert r.status_code == 413
    assert time.perf_counter() - start < 10


def test_pickle_bodies_are_never_unpickled(server: str, tmp_path: Path) -> None:
    """A pickle payload is refused under any Content-Type (415, or 400 as JSON) and never runs."""
    marker = tmp_path / "marker"
    payload = _pickle_marker(marker)
    proc = subprocess.run(
        [sys.executable, "-c", NAIVE_LOADER, "pickle", str(_write(tmp_path, payload))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert marker.exists(), proc.stderr  # the payload is real: a naive pickle.load runs it
    marker.unlink()
    with httpx.Client(timeout=30) as client:
        for ct, status in [
            ("application/octet-stream", 415),
            ("application/x-pickle", 415),
            ("application/python-pickle", 415),
            ("application/json", 400),
            (None, 400),
        ]:
            r = client.post(
                f"{server}/predict", content=payload, headers={"content-type": ct} if ct else {}
            )
            assert r.status_code == status and r.json()["error"], (ct, r.text)
            _good(client, server)
    assert not marker.exists()


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "payload.pkl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["os_system_reduce", "joblib_plain", "joblib_zlib"])
def test_serve_refuses_to_start_on_a_hostile_file(tmp_path: Path, name: str) -> None:
    """A hostile pickle/joblib file (proven to run under the naive loader) stops serve at
    start-up with the refusal, exit code 1, from the CLI and from create_app; nothing runs."""
    hostile = next(h for h in CORPUS if h.name == name)
    naive_dir = tmp_path / "naive"
    naive_dir.mkdir()
    path, marker = naive_dir / f"model{hostile.suffix}", naive_dir / "marker"
    hostile.build(path, marker)
    subprocess.run(
        [sys.executable, "-c", NAIVE_LOADER, str(hostile.naive), str(path)],
        capture_output=True,
        timeout=120,
    )
    assert marker.exists(), "the payload is real: a naive load runs it"

    path, marker = tmp_path / f"model{hostile.suffix}", tmp_path / "marker"
    hostile.build(path, marker)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-m", "modelstore", "serve", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and "refused" in proc.stderr and str(path) in proc.stderr
    with pytest.raises(ms.UnsafeModelError):
        create_app(str(path))
    assert not marker.exists()


def test_limits_are_checked() -> None:
    """Limits refuse zero, negative and non-integer values with an ArgumentError."""
    assert Limits().max_rows == 10_000
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ms.ArgumentError, match="max_rows"):
            Limits(max_rows=bad)  # type: ignore[arg-type]
    with pytest.raises(ms.ArgumentError, match="limits"):
        create_app("x.onnx", limits={"max_rows": 5})  # type: ignore[arg-type]


@pytest.mark.slow
def test_cli_limit_flags_reach_the_server(digits_onnx: Path) -> None:
    """--max-rows 2 on the command line makes a 3-row request a 413."""
    with serving(digits_onnx, "--max-rows", "2") as url:
        assert httpx.post(f"{url}/predict", json={"inputs": [ROW] * 2}).status_code == 200
        r = httpx.post(f"{url}/predict", json={"inputs": [ROW] * 3})
        assert r.status_code == 413 and "3 rows" in r.json()["error"]


def test_a_text_model_takes_a_flat_list_of_texts(tmp_path: Path) -> None:
    """A scikit-learn text pipeline is served: one text per row, in a flat list."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from starlette.testclient import TestClient

    texts, y = ["good day", "bad day", "good job", "bad job"], [1, 0, 1, 0]
    path = tmp_path / "text.joblib"
    ms.save(make_pipeline(HashingVectorizer(n_features=256), RidgeClassifier()).fit(texts, y), path)
    with TestClient(create_app(str(path))) as client:
        r = client.post("/predict", json={"inputs": ["good stuff", "bad stuff"]})
        assert r.status_code == 200 and r.json() == {"outputs": [1, 0]}
        assert client.post("/predict", json={"inputs": [["good", "day"]]}).status_code == 422

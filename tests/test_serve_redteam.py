"""modelstore serve against hostile clients: findings of a red-team review of the bare ASGI
/predict handler, numpy-first input conversion and the in-loop dispatch policy.

Each test shows one way a stranger's request broke a promise (a 4xx for every client mistake,
memory bounded by :class:`Limits`, the next request unharmed) and stays as its regression test.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore import serve  # noqa: E402
from tests import models  # noqa: E402

GOOD = {"inputs": np.full((1, 64), 0.5).tolist()}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    path = tmp_path / "net.safetensors"
    ms.save(models.trained_net(), path)
    return serve.create_app(str(path), model=models.Net)


def _peak_bytes(body: bytes, limits: serve.Limits) -> tuple[int, int]:
    """The answer's status and the most memory (traced, numpy included) it held."""
    tracemalloc.start()
    try:
        status, _ = serve.answer(None, body, limits)
        return status, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_text_after_a_number_is_refused_before_numpy_makes_a_text_array() -> None:
    """numpy converts the inputs before the walk that refuses texts mixed with numbers: a
    number first (so the text cap is skipped), then 10,000 short texts and one of 2,000
    characters made a fixed-width array of rows x longest x 4 bytes (80 MB from a 52 KB body,
    small enough to be answered in the event loop); larger ones raised MemoryError (a 500)
    or could exhaust the machine. The refusal (422) must come before that array exists."""
    limits = serve.Limits()
    for inputs in (
        [1] + ["a"] * 9_998 + ["x" * 2_000],
        [[1]] + [["a"]] * 9_998 + [["x" * 2_000]],
    ):
        body = json.dumps({"inputs": inputs}).encode()
        status, peak = _peak_bytes(body, limits)
        assert status == 422
        assert peak < 10 * len(body) + (4 << 20), f"{peak} bytes held for a {len(body)} byte body"


def test_texts_are_bounded_per_request_not_per_named_input() -> None:
    """The text cap (rows x longest within max_body_bytes) was checked per input: 16 named
    inputs of 2,000 texts, one 8,000 characters long, each passed it and together made 1 GB
    of arrays from a 290 KB body. The cap holds for the request's texts together."""
    limits = serve.Limits(max_body_bytes=1 << 20)  # same shape, 16x smaller: 64 MB before
    one = ["x" * 500] + ["a"] * 1_999  # 1M characters x 4 bytes: at the cap on its own
    data = {"inputs": {f"t{i}": one for i in range(16)}}
    tracemalloc.start()
    try:
        with pytest.raises(serve.ClientError) as e:
            serve.read_inputs(data, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.status == 413
    assert peak < 16 << 20
    # one such input alone is still accepted
    a, rows = serve.read_inputs({"inputs": {"t": one}}, limits)
    assert rows == 2_000 and a["t"].dtype.kind == "U"


def test_refused_requests_do_not_steer_the_dispatch_policy(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers run in the event loop while the median of the last 16 answers is under 10 ms,
    and every answer counted, refusals included: a client sending 16 cheap malformed
    requests to a slow model (here 30 ms per answer) switched the server to answering it in
    the event loop, where each answer stalls every other client (/health included). Only
    answers the model gave count."""
    from starlette.testclient import TestClient

    run_model = serve.run_model

    def slow(*args: Any) -> Any:
        import time

        time.sleep(0.03)
        return run_model(*args)

    monkeypatch.setattr(serve, "run_model", slow)
    with TestClient(app) as c:
        for _ in range(8):
            assert c.post("/predict", json=GOOD).status_code == 200
        assert not app.state.dispatch.inline
        for _ in range(16):
            assert c.post("/predict", content=b"{}").status_code == 422
        assert not app.state.dispatch.inline


def test_a_content_length_of_many_digits_is_a_413(app: Any) -> None:
    """The declared Content-Length was read with int(): past 4,300 digits Python refuses
    (ValueError) and the bare handler answered 500. uvicorn's parser refuses such a header
    itself, but the ASGI app must not rely on the server in front of it."""
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict", content=b"{}", headers={"content-length": "9" * 5_000})
        assert r.status_code == 413 and "error" in r.json()
        assert c.post("/predict", json=GOOD).status_code == 200


def test_unknown_field_names_are_shortened_in_the_answer() -> None:
    """A refusal of unknown fields echoed up to five of the client's field names whole: two
    names of a million characters came back as a 2 MB error message. Names are shortened,
    as every other client value in an error message is."""
    body = json.dumps({"inputs": [[1]], "x" * 1_000_000: 1, "y" * 1_000_000: 2}).encode()
    status, text = serve.answer(None, body, serve.Limits())
    assert status == 422 and "unknown fields" in text
    assert len(text) < 1_000

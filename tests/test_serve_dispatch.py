"""modelstore serve answers fast models in the event loop and slow ones in threads (issue 19).

The choice follows the measured answer times (no timing is asserted here: the tests set the
threshold so that each path is taken for certain and check the answers are the same).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore import serve  # noqa: E402
from tests import models  # noqa: E402

ROWS = np.random.default_rng(0).random((3, 64)).round(4).astype(np.float32)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    from starlette.testclient import TestClient

    path = tmp_path / "digits.safetensors"
    ms.save(models.trained_net(), path, labels=list("0123456789"))
    app = serve.create_app(str(path), model=models.Net)
    with TestClient(app) as c:
        c.expected = ms.predict(ms.load(path, model=models.Net), ROWS)
        yield c


def _ask(client: Any, n: int) -> None:
    for _ in range(n):
        r = client.post("/predict", json={"inputs": ROWS.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"], client.expected, rtol=1e-5)


def test_the_policy_follows_the_median_of_recent_answers() -> None:
    d = serve.Dispatch()
    for _ in range(7):
        d.record(1e-5)
    assert not d.inline  # too few answers timed yet: threads
    d.record(1e-5)
    assert d.inline
    for _ in range(9):
        d.record(0.05)  # the model got slow: most of the last 16 answers are
    assert not d.inline


def test_in_the_event_loop_one_answer_in_a_few_is_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing every answer costs a fast model a microsecond per request; once in the event
    loop a sample is timed, and a model that slows down still goes back to the threads."""
    clock = [0.0]
    monkeypatch.setattr(serve, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    took = [1e-5]

    def answer() -> tuple[int, str]:
        clock[0] += took[0]
        return 200, "{}"

    d = serve.Dispatch()
    for _ in range(8):
        d.timed(answer)
    assert d.inline and len(d.recent) == 8
    for _ in range(4 * serve.SAMPLE_EVERY):
        d.timed(answer)
    assert len(d.recent) == 12  # one in SAMPLE_EVERY timed
    took[0] = 0.05  # the model got slow
    for _ in range(9 * serve.SAMPLE_EVERY):
        d.timed(answer)
    assert not d.inline
    before = len(d.recent)
    d.timed(answer)  # in the threads every answer is timed again
    assert len(d.recent) == min(16, before + 1) and d.recent[-1] == pytest.approx(0.05)


@pytest.mark.parametrize("threshold", [60.0, 0.0])
def test_both_paths_answer_alike(
    client: Any, threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "INLINE_SECONDS", threshold)
    _ask(client, 12)
    assert client.app.state.dispatch.inline is (threshold > 0)
    # client mistakes stay 4xx on either path, and the next request works
    assert client.post("/predict", content=b'{"inputs": [[1e999]]}').status_code == 422
    long = b'{"inputs": [[' + b"1" * 500 + b"]]}"
    assert client.post("/predict", content=long).status_code == 400
    deep = b'{"inputs": ' + b"[" * 200 + b"]" * 200 + b"}"
    assert client.post("/predict", content=deep).status_code == 400
    _ask(client, 1)


def _threads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each answer from now on runs in one of anyio's worker threads."""
    import threading

    seen: list[bool] = []
    real = serve.answer

    def spy(*args: Any) -> Any:
        seen.append(threading.current_thread().name.startswith("AnyIO worker"))
        return real(*args)

    monkeypatch.setattr(serve, "answer", spy)
    return seen


def test_fast_answers_run_in_the_event_loop_and_large_bodies_in_threads(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "INLINE_SECONDS", 60.0)
    seen = _threads(monkeypatch)
    _ask(client, 10)
    assert seen == [True] * 8 + [False] * 2  # the first 8 are timed in threads
    monkeypatch.setattr(serve, "INLINE_BODY_BYTES", 10)  # every body counts as large now
    _ask(client, 2)
    assert seen[-2:] == [True, True]


def _walked(value: Any, limits: serve.Limits) -> Any:
    """What the request reader answered before numpy converted first: the exact walk, then
    numpy (the reference the fast path must agree with)."""
    try:
        serve.shape_of(value, limits)
        a = np.asarray(value)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise serve.ClientError(422, "overflow")
        return a
    except serve.ClientError as e:
        return e.status


CASES: list[Any] = [
    [[1.5, 2.0]],
    [[1, 2], [3, 4]],
    [[True, False]],
    [[True, 2, 3.5]],
    [[2**63 - 1, -(2**63)]],
    [[2**63]],
    [[2**63, -1]],
    [[2**63, 0.5]],
    [[-(2**63) - 1, 0.5]],
    [[1e300, 1e20]],
    [[1e999]],
    [[1, "a"]],
    [["a", "b"]],
    ["a", 1],
    [1, "a"],
    [[None]],
    [[{"a": 1}]],
    [[1, [2]]],
    [[1, 2], [3]],
    [],
    [[]],
    [[[]]],
    [1.0, 2.0],
    [[[[[[[1.0]]]]]]],
    [[[[[[1.0]]]]]],
    [[0.0]] * 10_001,
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_numpy_first_agrees_with_the_walk(value: Any) -> None:
    """The request reader lets numpy convert numbers first (a fast path) and walks the lists
    only when numpy's answer is not plainly acceptable; accepted arrays, refusals and their
    statuses are the same as walking every request (integers past 64 bits mixed with floats,
    which numpy would silently round, included)."""
    limits = serve.Limits()
    want = _walked(value, limits)
    data = {"inputs": value}
    texts = serve.may_hold_texts(json.dumps(data).encode(), data)
    assert texts == ('"' in json.dumps(value))  # numpy first for every case without texts
    try:
        got: Any = serve.read_inputs(data, limits, texts=texts)[0]
    except serve.ClientError as e:
        got = e.status
    if isinstance(want, int):
        assert got == want
    else:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_texts_are_bounded_by_the_array_they_make() -> None:
    """A flat list of texts becomes a fixed-width numpy array (4 bytes per character of the
    longest text, per row): one long text beside many short ones is refused (413) before
    numpy allocates rows x longest, while ordinary texts pass."""
    limits = serve.Limits(max_body_bytes=1 << 20)
    texts = ["x" * 200_000] + ["a"] * 9_000
    with pytest.raises(serve.ClientError) as e:
        serve.read_inputs({"inputs": texts}, limits)
    assert e.value.status == 413 and "texts" in str(e.value)
    a, rows = serve.read_inputs({"inputs": ["some text", "more"]}, limits)
    assert rows == 2 and a.dtype.kind == "U"


def test_a_fault_of_ours_on_predict_is_a_500_and_raised_to_the_server(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /predict is answered before Starlette's middleware: a bug there still gets the
    client a JSON 500 (as the other routes' errors do), and the server sees the exception."""
    from starlette.testclient import TestClient

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(serve, "answer", broken)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/predict", json={"inputs": ROWS.tolist()})
        assert r.status_code == 500 and r.json() == {"error": "internal error"}
        assert c.get("/health").status_code == 200
    with TestClient(client.app) as c, pytest.raises(RuntimeError, match="a bug"):
        c.post("/predict", json={"inputs": ROWS.tolist()})

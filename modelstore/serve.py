"""``modelstore serve``: an HTTP JSON service for one model (Starlette on uvicorn).

    POST /predict  {"inputs": [[...], ...], "output": "raw"|"proba"|"label", "batch_size": N}
                   -> {"outputs": [...]}  (an object {name: [...]} for named outputs)
    GET  /health   -> {"status": "ok", "model": PATH}
    GET  /info     -> what ``modelstore inspect --json`` prints

The model is loaded once, through the same trust gate as ``ms.load``. Requests come from
strangers, so each is bounded before any work is done on it (:class:`Limits`): body size
(counted while streaming), JSON nesting, array dimensions, rows, values and batches. Every
client mistake is a 4xx with ``{"error": "..."}`` (400 not JSON, 413 too large, 415 not JSON
by its Content-Type, 422 JSON the model cannot use); tracebacks never reach the client, and a
request body is only ever parsed as JSON (never unpickled), whatever its Content-Type says.
Install with ``pip install "modelstore-safe[serve]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

from ._serve_request import (
    FIELDS,
    JSON_DEPTH,
    MAX_NAMED_INPUTS,
    ClientError,
    Limits,
    batch_size_for,
    json_media,
    may_hold_texts,
    parse_body,
    plain_numbers,
    read_body,
    read_inputs,
    route_path,
    shape_of,
)
from .api import inspect, load, predict
from .errors import ArgumentError, MissingDependencyError, ModelstoreError
from .security import jsonsafe

__all__ = [
    "FIELDS",
    "JSON_DEPTH",
    "MAX_NAMED_INPUTS",
    "ClientError",
    "Limits",
    "answer",
    "batch_size_for",
    "create_app",
    "may_hold_texts",
    "parse_body",
    "plain_numbers",
    "read_inputs",
    "run",
    "shape_of",
]

#: A request whose answer took less than this (median of the last few) is answered in the
#: event loop itself, as a plain async handler would: a thread hand-off cost a 2.4 ms forest a
#: third of its request rate on 2 cores (the worker and the event loop contend for the GIL).
INLINE_SECONDS = 0.01
#: Once answers run in the event loop, one fast answer in this many is recorded (every slow
#: one is: a client cannot keep slow answers out of the median by ordering its requests).
SAMPLE_EVERY = 4
#: Bodies above this size are always parsed in a worker thread (they take long to parse).
INLINE_BODY_BYTES = 64 << 10
#: Threads answering slower models.
WORKERS = min(8, max(2, os.cpu_count() or 1))

# -- answering ------------------------------------------------------------------------------


class Dispatch:
    """Where a request is answered: in the event loop while recent answers took under
    INLINE_SECONDS (the median of the last 16 recorded; the first 8 are timed in a thread),
    else in a small pool of threads. Large bodies always go to the pool. Every answer is timed;
    in the event loop one fast answer in SAMPLE_EVERY is recorded, and every slow one, so a
    client that orders its requests cannot hide slow answers between the sampled ones. Only
    answers the model gave (status 200) are recorded: cheap refusals must not let a client
    move a slow model into the event loop."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=16)
        self.inline = False
        self.calls = 0
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        with self._lock:  # worker threads and the event loop both record
            self.recent.append(seconds)
            n = len(self.recent)
            if n >= 8:  # the median, without statistics.median's per-call overhead
                r = sorted(self.recent)
                median = r[n // 2] if n % 2 else (r[n // 2 - 1] + r[n // 2]) / 2
                self.inline = median < INLINE_SECONDS

    def timed(self, fn: Callable[[], tuple[int, str]]) -> tuple[int, str]:
        self.calls += 1
        t = time.perf_counter()
        status, text = fn()
        if status == 200:
            took = time.perf_counter() - t
            # settled in the event loop, one fast answer in SAMPLE_EVERY is recorded (recording
            # is what costs); a slow one always is: which answers count is not a client's pick
            if not self.inline or took >= INLINE_SECONDS or not self.calls % SAMPLE_EVERY:
                self.record(took)
        return status, text


def answer(loaded: Any, body: bytes, limits: Limits) -> tuple[int, str]:
    """Status and JSON text for one POST /predict body."""
    try:
        data = parse_body(body, limits)
        texts = may_hold_texts(body, data)
        inputs, rows = read_inputs(
            data, limits, texts=texts, plain=not texts and plain_numbers(body)
        )
        batch_size = batch_size_for(data, rows, limits)
        result = run_model(loaded, inputs, data.get("output", "raw"), batch_size)
    except ClientError as e:
        return e.status, jsonsafe.dumps({"error": str(e)})
    try:
        return 200, jsonsafe.dumps({"outputs": plain(result)})
    except ValueError:
        return 422, jsonsafe.dumps(
            {"error": "the model produced NaN or infinite outputs for these inputs"}
        )
    except (
        TypeError,
        AttributeError,
    ) as e:  # not an array, or labels JSON cannot carry: ours to fix
        return 500, jsonsafe.dumps(
            {"error": f"the model's outputs cannot be written as JSON ({e})"}
        )


def plain(result: Any) -> Any:
    """``predict``'s result as JSON values: arrays as nested lists, a model's dict of named
    outputs as a JSON object, a list of outputs (or labels) as a list."""
    if isinstance(result, dict):
        return {str(k): plain(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [plain(v) for v in result]
    return result.tolist() if hasattr(result, "tolist") else result


def run_model(loaded: Any, inputs: Any, output: str, batch_size: int | None) -> Any:
    """``predict`` on checked inputs; any failure there is these inputs' fault, so a 422."""
    try:
        return predict(loaded, inputs, output=output, batch_size=batch_size)
    except ModelstoreError as e:
        raise ClientError(422, str(e)[:1000]) from None
    except MemoryError:
        raise ClientError(
            413, "the inputs need more memory than the server has; send fewer rows"
        ) from None
    except Exception as e:  # the framework refused these inputs (wrong feature count, dtype, ...)
        first = (str(e).splitlines() or [""])[0][:500]
        raise ClientError(
            422, f"the model cannot run on these inputs: {type(e).__name__}: {first}"
        ) from None


def servable(path: str, loaded: Any) -> None:
    """Refuse at start-up what no request could run: weights without their class."""
    from .api.inspect import recorded_metadata
    from .api.predict import predictor
    from .errors import UnsupportedModelError

    try:
        predictor(type(loaded), loaded)
        return
    except UnsupportedModelError:
        pass
    what = (
        "weights only (a state dict or checkpoint)"
        if isinstance(loaded, dict)
        else f"a {type(loaded).__qualname__}"
    )
    try:
        recorded = recorded_metadata(path).get("model_class")
    except ModelstoreError:
        recorded = None
    hint = (
        f"pass the recorded class: --model {recorded} (Python: model=)"
        if isinstance(recorded, str)
        else "pass the model's class: --model MODULE:CLASS or path/to/file.py:CLASS (Python: model=)"
    )
    raise ArgumentError(f"{path}: holds {what}, which cannot answer /predict; {hint}")


async def _send(send: Any, status: int, payload: Any) -> None:
    """One JSON answer (``payload`` a dict, or JSON text already written)."""
    text = payload if isinstance(payload, str) else jsonsafe.dumps(payload)
    body = text.encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    path: str,
    *,
    model: Any = None,
    trust: bool | list[str] = False,
    limits: Limits | None = None,
    signed_by: Any = None,
    signature: str | None = None,
) -> Any:
    """The ASGI application serving the model at ``path``.

    The model is loaded here (a hostile file raises :class:`UnsafeModelError` and nothing
    serves); ``limits`` bounds each request (see :class:`Limits` and docs/cli.md).
    """
    try:
        from anyio import CapacityLimiter, to_thread
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise MissingDependencyError(
            'serving needs starlette and uvicorn; run: pip install "modelstore-safe[serve]"',
            name="starlette",
        ) from None
    limits = limits if limits is not None else Limits()
    if not isinstance(limits, Limits):
        raise ArgumentError(
            f"limits must be a modelstore.serve.Limits, not {type(limits).__name__}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a PickleWarning is the load's business; a refusal raises
        loaded = load(path, model=model, trust=trust, signed_by=signed_by, signature=signature)
    servable(path, loaded)
    info = inspect(path).to_dict()
    cap = limits.max_body_bytes
    dispatch, workers = Dispatch(), CapacityLimiter(WORKERS)

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": message}, status_code=status)

    async def predict_route(scope: Any, receive: Any, send: Any) -> None:
        """POST /predict as a bare ASGI handler: the hot path, without Starlette's request
        and response objects (their cost per request is what a small model's predict costs)."""
        content_type, declared = None, b""
        for key, value in scope["headers"]:  # lower-case names; the first of each counts
            if key == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif key == b"content-length" and not declared:
                declared = value
        if not json_media(content_type):
            msg = (
                f"POST /predict reads JSON only, not {str(content_type)[:60]!r}; send "
                f"Content-Type: application/json (curl: --json)"
            )
            return await _send(send, 415, {"error": msg})
        try:
            body = await read_body(receive, declared, cap)
        except ClientError as e:
            return await _send(send, e.status, {"error": str(e)})

        def run() -> tuple[int, str]:
            return answer(loaded, body, limits)

        if dispatch.inline and len(body) <= INLINE_BODY_BYTES:
            status, text = dispatch.timed(run)  # a fast model: no thread hand-off
        else:
            status, text = await to_thread.run_sync(dispatch.timed, run, limiter=workers)
        await _send(send, status, text)

    async def health(request: Request) -> Any:
        return JSONResponse({"status": "ok", "model": str(path)})

    async def info_route(request: Request) -> Any:
        return JSONResponse(info)

    async def http_error(request: Request, exc: Exception) -> Any:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, str(detail))

    class ServeApp(Starlette):
        """Starlette, with POST /predict answered before its middleware stack and router (the
        other routes, and other methods on /predict, go through them as usual). Middleware
        given to the app (``add_middleware``: authentication, allowed hosts, rate limits) sees
        every request: POST /predict then goes through it and the router, as a route."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if (
                scope["type"] == "http"
                and scope["method"] == "POST"
                and not self.user_middleware
                and route_path(scope) == "/predict"
            ):
                try:
                    await predict_route(scope, receive, send)
                except Exception:  # ours to fix: a 500, as Starlette answers the other routes
                    with contextlib.suppress(Exception):
                        await _send(send, 500, {"error": "internal error"})
                    raise
            else:
                await super().__call__(scope, receive, send)

    class PredictEndpoint:
        """POST /predict as a route (a bare ASGI app): reached when the app has middleware."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await predict_route(scope, receive, send)

    app = ServeApp(
        routes=[
            Route("/predict", PredictEndpoint(), methods=["POST"]),  # other methods get a 405
            Route("/health", health, methods=["GET"]),
            Route("/info", info_route, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    app.state.dispatch = dispatch  # where requests are answered (read by tests)
    return app


def run(
    path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model: Any = None,
    trust: bool | list[str] = False,
    limits: Limits | None = None,
    signed_by: Any = None,
    signature: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (see :func:`create_app`). ``ready(url)`` is called once the
    model is loaded and the port is listening (the CLI prints "serving ... on ..." there)."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(
            'serving needs uvicorn; run: pip install "modelstore-safe[serve]"', name="uvicorn"
        ) from None
    app = create_app(
        path, model=model, trust=trust, limits=limits, signed_by=signed_by, signature=signature
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    asyncio.run(_serve(server, lambda: ready(f"http://{host}:{port}") if ready else None))


async def _serve(server: Any, on_started: Callable[[], None]) -> None:
    task = asyncio.ensure_future(server.serve())
    while not task.done() and not server.started:
        await asyncio.sleep(0.02)
    if server.started:
        on_started()
    await task

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
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .api import OUTPUTS, inspect, load, predict
from .errors import ArgumentError, MissingDependencyError, ModelstoreError
from .security import jsonsafe

#: JSON nesting accepted by the parser; arrays are bounded more tightly by ``Limits.max_dims``.
JSON_DEPTH = 128
#: Fields a POST /predict body may have.
FIELDS = ("inputs", "output", "batch_size")
#: Named inputs (``{"inputs": {"name": [...]}}``) accepted in one request.
MAX_NAMED_INPUTS = 16
_INT64 = 1 << 63


@dataclass(frozen=True)
class Limits:
    """What one POST /predict may ask of the server; each refusal names the limit it hit.

    Together they bound a request's memory and CPU: the body's bytes, the values the model
    runs on (``max_values``, rows x features summed over named inputs) and the number of
    model calls (``max_batches``); the defaults keep the worst request to about a second of
    parsing plus the model's own time on a million values.
    """

    max_body_bytes: int = 16 << 20
    max_dims: int = 6
    max_rows: int = 10_000
    max_values: int = 1_000_000
    max_batches: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ArgumentError(
                    f"serve limit {f.name} must be a positive integer, not {value!r}"
                )


class ClientError(Exception):
    """A request the server cannot use: becomes a 4xx answer, never escapes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- reading a request ---------------------------------------------------------------------


def parse_body(body: bytes, limits: Limits) -> dict[str, Any]:
    """The request's JSON object, its fields checked (inputs not yet)."""
    # Parsing costs about 0.3 s per million values or lists; a body with more than the limit
    # allows (each value needs a comma or a bracket beside it) is refused before parsing.
    room = 2 * limits.max_values + 1024
    if body.count(b",") > room or body.count(b"[") > room // 2:
        raise ClientError(
            413, f"the request holds more than the {limits.max_values} values accepted"
        )
    try:
        data = jsonsafe.loads(
            body, where="the request body", max_bytes=limits.max_body_bytes, max_depth=JSON_DEPTH
        )
    except jsonsafe.JSONLimitError as e:
        # JSON has no NaN or Infinity, and 1e999 is no float: numbers the model cannot use
        unusable = "non-standard constant" in str(e) or "overflows a float" in str(e)
        raise ClientError(422 if unusable else 400, str(e)) from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise ClientError(422, 'expected a JSON object {"inputs": [...]}')
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ClientError(422, f"unknown fields {unknown[:5]}; a request has {list(FIELDS)}")
    output = data.get("output", "raw")
    if output not in OUTPUTS:
        raise ClientError(422, f"output must be one of {list(OUTPUTS)}, not {_short(output)}")
    batch_size = data.get("batch_size")
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise ClientError(422, f"batch_size must be a positive integer, not {_short(batch_size)}")
    return data


def _short(value: Any) -> str:
    """A client's value for an error message: scalars shortened, containers by kind only."""
    if isinstance(value, (str, int, float)) or value is None:
        return repr(value)[:40]
    return "an object" if isinstance(value, dict) else "a list"


def shape_of(value: Any, limits: Limits, name: str = "inputs") -> tuple[int, ...]:
    """The shape of a nested list of numbers (or a flat list of strings), level by level.

    Iterative, so nesting costs no recursion, and refused at ``max_dims`` levels, before
    anything is converted to numpy.
    """
    shape: list[int] = []
    level = [value]
    while isinstance(level[0], list):
        if len(shape) == limits.max_dims:
            raise ClientError(422, f"{name} has more than {limits.max_dims} dimensions")
        n = len(level[0])
        if any(not isinstance(v, list) or len(v) != n for v in level):
            raise ClientError(422, f"{name} is not rectangular at dimension {len(shape)}")
        if n == 0:
            raise ClientError(422, f"{name} is empty at dimension {len(shape)}")
        if not shape and n > limits.max_rows:
            raise ClientError(
                413, f"{n} rows is more than the {limits.max_rows} accepted; split the request"
            )
        if len(level) * n > limits.max_values:
            raise ClientError(
                413, f"{name} holds more than {limits.max_values} values; send fewer rows"
            )
        shape.append(n)
        level = [v for row in level for v in row]
    if not shape:
        raise ClientError(422, f"{name} must be an array (a list of rows), not a single value")
    _check_leaves(level, len(shape), name)
    return tuple(shape)


def _check_leaves(leaves: list[Any], dims: int, name: str) -> None:
    kinds = {type(v) for v in leaves}
    if kinds <= {int, float, bool}:
        if int in kinds and any(type(v) is int and not -_INT64 <= v < _INT64 for v in leaves):
            raise ClientError(422, f"{name} holds an integer outside the 64-bit range")
        return
    if kinds == {str} and dims == 1:
        return  # one text per row, for text models
    odd = sorted(_JSON_NAMES.get(t, t.__name__) for t in kinds - {int, float, bool, str})
    found = ", ".join(odd) if odd else "texts inside rows or mixed with numbers"
    raise ClientError(422, f"{name} must hold numbers (or be a flat list of texts); found {found}")


_JSON_NAMES = {dict: "an object", type(None): "null", list: "a list beside numbers"}


def read_inputs(data: dict[str, Any], limits: Limits) -> tuple[Any, int]:
    """The request's inputs as numpy (one array, or a dict for named inputs) and its rows."""
    import numpy as np

    raw = data["inputs"]
    named = isinstance(raw, dict)
    items = raw if named else {"inputs": raw}
    if named and not 0 < len(items) <= MAX_NAMED_INPUTS:
        raise ClientError(
            422, f"named inputs must be 1 to {MAX_NAMED_INPUTS} arrays, got {len(items)}"
        )
    shapes = {
        key: shape_of(value, limits, f"inputs[{key[:40]!r}]" if named else "inputs")
        for key, value in items.items()
    }
    total = sum(math.prod(s) for s in shapes.values())
    if total > limits.max_values:
        raise ClientError(
            413, f"the inputs hold {total} values, more than the {limits.max_values} accepted"
        )
    rows = max(s[0] for s in shapes.values())
    arrays = {key: np.asarray(value) for key, value in items.items()}
    return (arrays if named else arrays["inputs"]), rows


def batch_size_for(data: dict[str, Any], rows: int, limits: Limits) -> int | None:
    """The batch size to pass to predict: None for one batch; refused if it means many calls."""
    batch_size: int | None = data.get("batch_size")
    if batch_size is None or batch_size >= rows:
        return None
    if -(-rows // batch_size) > limits.max_batches:
        least = -(-rows // limits.max_batches)
        msg = (
            f"batch_size {batch_size} splits {rows} rows into more than {limits.max_batches} "
            f"batches; use a batch_size of at least {least}, or none"
        )
        raise ClientError(422, msg)
    return batch_size


# -- answering ------------------------------------------------------------------------------


def answer(loaded: Any, body: bytes, limits: Limits) -> tuple[int, str]:
    """Status and JSON text for one POST /predict body (run in a worker thread)."""
    try:
        data = parse_body(body, limits)
        inputs, rows = read_inputs(data, limits)
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


def _json_media(content_type: str | None) -> bool:
    if content_type is None:
        return True  # a bare POST: read as JSON, the only thing this server reads
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


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
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import JSONResponse, Response
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

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise ClientError(413, f"the request body is over {cap} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise ClientError(413, f"the request body is over {cap} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientError(400, "the client left before sending the whole body") from None
        return b"".join(chunks)

    async def predict_route(request: Request) -> Any:
        content_type = request.headers.get("content-type")
        if not _json_media(content_type):
            msg = (
                f"POST /predict reads JSON only, not {str(content_type)[:60]!r}; send "
                f"Content-Type: application/json (curl: --json)"
            )
            return error(415, msg)
        try:
            body = await read_body(request)
        except ClientError as e:
            return error(e.status, str(e))
        status, text = await run_in_threadpool(answer, loaded, body, limits)
        return Response(text, status_code=status, media_type="application/json")

    async def health(request: Request) -> Any:
        return JSONResponse({"status": "ok", "model": str(path)})

    async def info_route(request: Request) -> Any:
        return JSONResponse(info)

    async def http_error(request: Request, exc: Exception) -> Any:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, str(detail))

    return Starlette(
        routes=[
            Route("/predict", predict_route, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", info_route, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )


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

"""``modelstore serve``: an HTTP JSON service for one model (Starlette on uvicorn).

    POST /predict  {"inputs": [[...], ...], "output": "raw"|"proba"|"label", "batch_size": N}
                   -> {"outputs": [...]}
    GET  /health   -> {"status": "ok", "model": PATH}
    GET  /info     -> what ``modelstore inspect --json`` prints

The model is loaded once, through the same trust gate as ``ms.load``. Bad JSON, a wrong
shape or an unknown output mode is a 4xx with a one-line message; tracebacks never reach the
client. Install with ``pip install "modelstore[serve]"``.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from ._api import inspect, load, predict
from .errors import ArgumentError, MissingDependencyError, ModelstoreError, UnsupportedModelError

MAX_BODY = 64 << 20


def create_app(path: str, *, model: Any = None, trust: bool | list[str] = False) -> Any:
    """The ASGI application serving the model at ``path``."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise MissingDependencyError('serving needs starlette and uvicorn; run: pip install "modelstore[serve]"',
                                     name="starlette") from None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the load's PickleWarning is logged below instead
        loaded = load(path, model=model, trust=trust)
    info = inspect(path).to_dict()

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": message}, status_code=status)

    async def predict_route(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return error(413, f"request body over {MAX_BODY} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return error(413, f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as e:
            return error(400, f"the body is not valid JSON: {str(e)[:200] or type(e).__name__}")
        if not isinstance(data, dict) or "inputs" not in data:
            return error(422, 'expected a JSON object {"inputs": [...]}')
        output = data.get("output", "raw")
        batch_size = data.get("batch_size")
        try:
            result = await run_in_threadpool(predict, loaded, data["inputs"], output=output,
                                             batch_size=batch_size)
        except (ArgumentError, UnsupportedModelError) as e:
            return error(422, str(e))
        except ModelstoreError as e:
            return error(400, str(e))
        except Exception as e:  # never a traceback to the client
            return error(500, f"prediction failed: {type(e).__name__}")
        outputs = result if isinstance(result, list) else result.tolist()
        try:
            body = json.dumps({"outputs": outputs}, allow_nan=False)
        except ValueError:
            return error(422, "the model produced NaN or infinite outputs for these inputs")
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Any:
        return JSONResponse({"status": "ok", "model": str(path)})

    async def info_route(request: Request) -> Any:
        return JSONResponse(info)

    return Starlette(routes=[
        Route("/predict", predict_route, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/info", info_route, methods=["GET"]),
    ])


def run(path: str, *, host: str = "127.0.0.1", port: int = 8000, model: Any = None,
        trust: bool | list[str] = False) -> None:
    """Serve until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError('serving needs uvicorn; run: pip install "modelstore[serve]"',
                                     name="uvicorn") from None
    app = create_app(path, model=model, trust=trust)
    uvicorn.run(app, host=host, port=port, log_level="warning")

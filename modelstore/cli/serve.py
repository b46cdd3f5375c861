"""``modelstore serve PATH``: serve a model over HTTP (POST /predict, GET /health, GET /info)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .common import add_model_options, model_class

EXAMPLE = (
    "examples:\n  modelstore serve digits.onnx --port 8000\n"
    '  curl -s localhost:8000/predict --json \'{"inputs": [[0, 1, ...]], "output": "label"}\''
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(
        sub, "serve", "serve a model over HTTP: POST /predict, GET /health, GET /info", EXAMPLE
    )
    add_serve_options(p)
    p.set_defaults(func=run)


#: ``modelstore serve`` flags for the per-request limits: (flag, Limits field, help).
SERVE_LIMITS = (
    ("--max-body-bytes", "max_body_bytes", "largest request body, counted while it streams in"),
    ("--max-dims", "max_dims", "most dimensions of an input array"),
    ("--max-rows", "max_rows", "most rows in one request"),
    ("--max-values", "max_values", "most numbers in one request (rows x features)"),
    ("--max-batches", "max_batches", "most model calls one request's batch_size may cause"),
)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    from ..serve import Limits

    p.add_argument("path")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    defaults = Limits()
    for flag, field, text in SERVE_LIMITS:
        p.add_argument(
            flag,
            type=int,
            default=getattr(defaults, field),
            metavar="N",
            help=f"{text} (default %(default)s)",
        )
    add_model_options(p)
    p.add_argument(
        "--signed-by",
        metavar="KEY.pub|CA.pem|POLICY.toml",
        help="refuse to start unless the model is signed by this key, certificate or policy",
    )
    p.add_argument("--signature", metavar="FILE.sig", help="the bundle for --signed-by")


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..serve import Limits
    from ..serve import run as serve

    limits = Limits(**{field: getattr(args, field) for _, field, _ in SERVE_LIMITS})
    model = model_class(args.model, args.config)
    from .sign import signer_arg

    def ready(url: str) -> None:  # the model is loaded and the port listens
        out.write(f"serving {args.path} on {url} (POST /predict, GET /health, GET /info)\n")
        out.flush()

    serve(
        args.path,
        host=args.host,
        port=args.port,
        model=model,
        trust=args.trust,
        limits=limits,
        signed_by=signer_arg(args.signed_by),
        signature=args.signature,
        ready=ready,
    )
    return 0

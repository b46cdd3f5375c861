"""The ``convert``, ``predict`` and ``serve`` subcommands of the ``modelstore`` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from .errors import ArgumentError, ModelExistsError, StorageError

PROGRESS_BYTES = 50 << 20


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="MODULE:CLASS",
                   help="the class to load weights into (a module path or file.py, then :Class)")
    p.add_argument("--config", metavar="JSON", help="constructor arguments for --model, as JSON")
    p.add_argument("--trust", action="store_true", help="allow code from the file to run (pickles, Lambdas)")


def model_class(spec: str | None, config: str | None) -> Any:
    """Import the class the user named (their own code, named on the command line)."""
    if spec is None:
        if config:
            raise ArgumentError("--config needs --model (the class it configures)")
        return None
    module_name, _, qual = spec.rpartition(":")
    if not module_name or not qual:
        raise ArgumentError(f"--model {spec!r}: expected MODULE:CLASS or path/to/file.py:CLASS")
    try:
        if module_name.endswith(".py"):
            loc = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loc is None or loc.loader is None:
                raise ImportError(module_name)
            sys.path.insert(0, str(Path(module_name).resolve().parent))
            module = importlib.util.module_from_spec(loc)
            loc.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        cls: Any = module
        for part in qual.split("."):
            cls = getattr(cls, part)
    except Exception as e:  # the user's module failed to import (SyntaxError, ImportError, ...)
        raise ArgumentError(f"--model {spec!r} cannot be imported: {type(e).__name__}: {e}") from None
    if config:
        try:
            kwargs = json.loads(config)
        except ValueError as e:
            raise ArgumentError(f"--config is not JSON: {e}") from None
        if not isinstance(kwargs, dict):
            raise ArgumentError("--config must be a JSON object of constructor arguments")
        try:
            return cls(**kwargs)
        except Exception as e:
            raise ArgumentError(f"--model {spec} --config {config}: {type(e).__name__}: {e}") from None
    return cls


def read_inputs(path: str) -> Any:
    """A .npy (no pickles allowed) or a numeric .csv (a header row is skipped)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ArgumentError(f"--input {path}: no such file")
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p, allow_pickle=False)
        if p.suffix.lower() in (".csv", ".txt"):
            try:
                return np.loadtxt(p, delimiter=",", ndmin=2)
            except ValueError:
                return np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1)
    except (ValueError, OSError) as e:
        raise ArgumentError(f"--input {path}: cannot read numbers from it ({e})") from None
    raise ArgumentError(f"--input {path}: use a .npy or .csv file")


def _show(progress: bool, step: str) -> None:
    if progress:
        sys.stderr.write(f"{step}\n")
        sys.stderr.flush()


def cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    from ._api import convert

    dst = Path(args.dst)
    if dst.exists() and not args.force:
        raise ModelExistsError(17, f"{dst}: already exists; pass --force to replace it", str(dst))
    big = Path(args.src).is_file() and Path(args.src).stat().st_size >= PROGRESS_BYTES
    progress = (sys.stderr.isatty() and big) if args.progress is None else args.progress
    sample = read_inputs(args.sample) if args.sample else None
    model = model_class(args.model, args.config)
    _show(progress, f"[1/2] loading {args.src} (scan, verify, load)")
    _show(progress, f"[2/2] writing {args.dst}")
    info = convert(args.src, dst, model=model, sample_input=sample, trust=args.trust)
    _show(progress, "done")
    if args.json:
        json.dump(info.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(f"{info.path}: {info.format}, {info.size_bytes:,} bytes, {info.num_params:,} parameters, "
                  f"sha256 {info.sha256}\n")
    return 0


def cmd_predict(args: argparse.Namespace, out: TextIO) -> int:
    import warnings

    import numpy as np

    from ._api import load, predict

    x = read_inputs(args.input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the refusal, not the warning, is what matters here
        model = load(args.path, model=model_class(args.model, args.config), trust=args.trust)
    result = predict(model, x, output=args.output, batch_size=args.batch_size)
    values = result if isinstance(result, list) else np.asarray(result).tolist()
    if args.out:
        target = Path(args.out)
        try:
            if target.suffix == ".npy":
                np.save(target, np.asarray(result))
            elif target.suffix == ".csv":
                np.savetxt(target, np.asarray(result).reshape(len(values), -1), delimiter=",", fmt="%s")
            else:
                target.write_text(json.dumps(values))
        except OSError as e:
            raise StorageError(e.errno or 5, f"{target}: cannot write the results: {e.strerror or e}", str(target)) from None
        sys.stderr.write(f"wrote {len(values)} results to {target}\n")
    else:
        json.dump(values, out)
        out.write("\n")
    return 0


#: ``modelstore serve`` flags for the per-request limits: (flag, Limits field, help).
SERVE_LIMITS = (
    ("--max-body-bytes", "max_body_bytes", "largest request body, counted while it streams in"),
    ("--max-dims", "max_dims", "most dimensions of an input array"),
    ("--max-rows", "max_rows", "most rows in one request"),
    ("--max-values", "max_values", "most numbers in one request (rows x features)"),
    ("--max-batches", "max_batches", "most model calls one request's batch_size may cause"),
)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    from .serve import Limits

    p.add_argument("path")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    defaults = Limits()
    for flag, field, text in SERVE_LIMITS:
        p.add_argument(flag, type=int, default=getattr(defaults, field), metavar="N",
                       help=f"{text} (default %(default)s)")
    add_model_options(p)


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from .serve import Limits, run

    limits = Limits(**{field: getattr(args, field) for _, field, _ in SERVE_LIMITS})
    model = model_class(args.model, args.config)
    out.write(f"serving {args.path} on http://{args.host}:{args.port} (POST /predict, GET /health, GET /info)\n")
    out.flush()
    run(args.path, host=args.host, port=args.port, model=model, trust=args.trust, limits=limits)
    return 0


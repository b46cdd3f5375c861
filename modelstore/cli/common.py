"""What several subcommands share: ``--model/--config/--trust`` and reading inputs."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ArgumentError


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        metavar="MODULE:CLASS",
        help="the class to load weights into (a module path or file.py, then :Class)",
    )
    p.add_argument("--config", metavar="JSON", help="constructor arguments for --model, as JSON")
    p.add_argument(
        "--trust", action="store_true", help="allow code from the file to run (pickles, Lambdas)"
    )


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
        raise ArgumentError(
            f"--model {spec!r} cannot be imported: {type(e).__name__}: {e}"
        ) from None
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
            raise ArgumentError(
                f"--model {spec} --config {config}: {type(e).__name__}: {e}"
            ) from None
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
    except MemoryError:  # a header declaring more than it stores (red team: "internal error")
        raise ArgumentError(f"--input {path}: its header declares more than memory holds") from None
    raise ArgumentError(f"--input {path}: use a .npy or .csv file")

"""Reliability tests run bounded in CI; MODELSTORE_FULL=1 runs the full counts by hand
(python tests/reliability/run_full.py). Figures go to MODELSTORE_RELIABILITY_REPORT if set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FULL = os.environ.get("MODELSTORE_FULL") == "1"
WORKERS = Path(__file__).with_name("workers.py")


def count(ci: int, full: int) -> int:
    return full if FULL else ci


def record(section: str, figures: dict[str, Any]) -> None:
    """Add figures to the report file (JSON lines), for docs/reliability.md."""
    target = os.environ.get("MODELSTORE_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"section": section, **figures}) + "\n")


def spawn(*args: str, stdin: Any = None, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, str(WORKERS), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )


@pytest.fixture
def need() -> Any:
    def _need(family: str) -> None:
        module = {"safetensors": "torch", "torch": "torch", "sklearn": "sklearn", "keras": "keras"}[
            family
        ]
        pytest.importorskip(module)

    return _need

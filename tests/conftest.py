from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow quiet in test output

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64() -> np.ndarray:
    """A batch of 16 digit-shaped inputs (64 features)."""
    return np.random.default_rng(0).random((16, 64), dtype=np.float32)


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    """A real S3-speaking server (moto) on loopback for the whole session."""
    from tests import s3server

    server = s3server.start()
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server) -> str:  # type: ignore[no-untyped-def]
    """``s3://<fresh bucket>`` on the loopback server."""
    return f"s3://{s3_server.bucket()}"


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run shares (the run's base folder; one worker's
    own folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


_WHOLLY_SLOW = "\npytestmark = pytest.mark.slow"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The quick subset (``-m "not slow"``) does not import modules marked slow as a whole:
    their deselection would come only after each xdist worker had imported their frameworks
    (transformers, xgboost, lightgbm, hypothesis: seconds per worker)."""
    if config.getoption("markexpr", "").strip() != "not slow":
        return None
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return _WHOLLY_SLOW in collection_path.read_text(encoding="utf-8") or None

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow quiet in test output

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64() -> np.ndarray:
    """A batch of 16 digit-shaped inputs (64 features)."""
    return np.random.default_rng(0).random((16, 64), dtype=np.float32)

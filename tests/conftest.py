from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def x64() -> np.ndarray:
    """A batch of 16 digit-shaped inputs (64 features)."""
    return np.random.default_rng(0).random((16, 64), dtype=np.float32)

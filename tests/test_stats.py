"""Weight arrays and statistics read straight from safe files (inspect --stats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.api.stats import stats, weights  # noqa: E402


def test_safetensors_arrays_keep_names_and_values(tmp_path: Path) -> None:
    """Every dtype comes back under its tensor's name; bfloat16 is widened to float32."""
    sd = {"a": torch.randn(3).bfloat16(), "b": torch.arange(4), "c": torch.tensor([True]), "d": torch.randn(2).half()}
    path = tmp_path / "w.safetensors"
    ms.save(sd, path)
    arrays = weights(path)
    assert set(arrays) == set(sd)
    np.testing.assert_array_equal(arrays["a"], sd["a"].float().numpy())
    np.testing.assert_array_equal(arrays["b"], np.arange(4))
    rows = {r["name"]: r for r in stats(arrays)}
    assert rows["b"]["max"] == 3 and rows["b"]["min"] == 0

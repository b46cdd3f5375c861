"""summary, stats, plot_weights, evaluate and plot_predictions on every hostile file: refused, nothing runs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402
from tests.hostile import CORPUS  # noqa: E402


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_every_tutorial_call_refuses_hostile_files(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each call either describes the file without unpickling it or raises a ModelstoreError; no marker."""
    marker = tmp_path / "marker"
    path = tmp_path / f"{case.name}{case.suffix}"
    case.build(path, marker)
    x = np.zeros((2, 64), dtype=np.float32)
    calls = [
        lambda: ms.summary(path),
        lambda: ms.stats(path),
        lambda: ms.plot_weights(path, tmp_path / "w.png"),
        lambda: ms.evaluate(path, x, [0, 1]),
        lambda: ms.plot_predictions(path, x, [0, 1], tmp_path / "g.png"),
    ]
    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            try:
                call()
            except ms.ModelstoreError:
                pass
        assert not marker.exists(), f"{case.name}: the payload ran"

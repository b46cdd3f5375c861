"""Benign sweep: every scikit-learn estimator the zoo can fit loads by default and predicts
exactly as before, however it was saved.

Each estimator is saved with ``ms.save`` and one more way (rotating through ``joblib.dump``
plain and compressed and ``pickle.dump`` protocols 2-5); the estimators issue 12 found refused
get every way. ``MODELSTORE_FULL=1`` runs every way for every estimator (~7 minutes here).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402
from tests.sklearn_zoo import fitted_once, outputs  # noqa: E402

WAYS = ["joblib", "joblib-zlib", "pickle-2", "pickle-3", "pickle-4", "pickle-5"]
EVERY_WAY = ("HistGradientBoosting", "HGB", "Calibrated", "GridSearch", "ColumnTransformer")
FULL = os.environ.get("MODELSTORE_FULL") == "1"


def _write(est: Any, path: Path, way: str) -> Path:
    if way == "ms.save":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ms.save(est, path.with_suffix(".joblib"))
        return path.with_suffix(".joblib")
    if way.startswith("joblib"):
        joblib.dump(est, path, compress=3 if way.endswith("zlib") else 0)
    else:
        path.write_bytes(pickle.dumps(est, protocol=int(way[-1])))
    return path


def _same(a: list[Any], b: list[Any]) -> bool:
    if [m for m, _ in a] != [m for m, _ in b]:
        return False
    for (_, x), (_, y) in zip(a, b):
        if x.dtype.kind == "O" or y.dtype.kind == "O":
            if x.tolist() != y.tolist():
                return False
        elif not np.array_equal(x, y, equal_nan=True):
            return False
    return True


@pytest.mark.slow
def test_every_fittable_estimator_loads_and_predicts_identically(
    tmp_path: Path, shared_tmp: Path
) -> None:
    """No benign estimator is refused, none scans unsafe, and predictions are bit-identical."""
    failures, count = [], 0
    with warnings.catch_warnings():  # (deprecated estimators warn when rebuilt)
        warnings.simplefilter("ignore")
        for i, (name, est, xs) in enumerate(fitted_once(shared_tmp)):
            want = outputs(est, xs)
            ways = (
                ["ms.save", *WAYS]
                if FULL or name.startswith(EVERY_WAY)
                else ["ms.save", WAYS[i % len(WAYS)]]
            )
            for way in ways:
                path = _write(est, tmp_path / f"m{i}-{way}.pkl", way)
                count += 1
                try:
                    verdict = ms.scan(path).verdict
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        got = outputs(ms.load(path), xs)
                except ms.ModelstoreError as e:
                    failures.append(f"{name} via {way}: {type(e).__name__}: {str(e)[:200]}")
                    continue
                if verdict != "safe" or not _same(got, want):
                    failures.append(
                        f"{name} via {way}: scan {verdict}, identical={_same(got, want)}"
                    )
                path.unlink()
    assert count > 400
    assert not failures, "\n".join(failures)

"""The engine-independent part of batch scoring (modelstore._batch): planning on the driver,
rows from batches, the per-process cache. Quick: no Spark, no Dask."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from modelstore import _batch

pd = pytest.importorskip("pandas")


def plan(ref: Any, **kw: Any) -> _batch.Plan:
    args: dict[str, Any] = dict(
        output="raw", trust=False, signed_by=None, sha256=None, batch_size=None, load_options={}
    )
    args.update(kw)
    return _batch.plan(ref, **args)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.bin"  # planning reads bytes only: any file will do
    path.write_bytes(b"weights" * 1000)
    return path


def test_plan_records_the_sha256_and_no_model(model_file: Path) -> None:
    """The plan holds the absolute path, the file's sha256 and plain options: nothing loaded."""
    job = plan(str(model_file), trust=["a.B", "c.D"], load_options={"format": "onnx"})
    assert job.path == str(model_file.resolve())
    assert job.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert job.load_kwargs() == {"format": "onnx", "trust": ["a.B", "c.D"], "sha256": job.sha256}
    assert plan(model_file, sha256=job.sha256.upper()).sha256 == job.sha256


def test_plan_refuses_bad_arguments(model_file: Path) -> None:
    """Every unusable argument is an ArgumentError (or the file's own error) on the driver."""
    for kw, match in [
        ({"output": "logits"}, "output"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"trust": "yes"}, "trust"),
        ({"sha256": 5}, "sha256"),
    ]:
        with pytest.raises(ms.ArgumentError, match=match):
            plan(model_file, **kw)
    with pytest.raises(ms.ArgumentError, match="model_ref"):
        plan(3)
    with pytest.raises(ms.ModelNotFoundError, match="no such model file"):
        plan(model_file.parent / "missing.onnx")
    with pytest.raises(ms.IntegrityError, match="the sha256= pin"):
        plan(model_file, sha256="ab" * 32)


def test_signed_by_is_passed_on_or_refused(model_file: Path) -> None:
    """signed_by= travels in the plan to every executor's ms.load (checked there, before a byte
    of the model is parsed)."""
    assert plan(model_file, signed_by="key.pub").load_kwargs()["signed_by"] == "key.pub"


def test_features_from_columns_or_one_array_column() -> None:
    """Several scalar columns sit side by side; one column of arrays is stacked row by row."""
    a, b = pd.Series([1.0, 2.0]), pd.Series([3.0, 4.0])
    np.testing.assert_array_equal(_batch.features([a, b]), [[1, 3], [2, 4]])
    np.testing.assert_array_equal(_batch.features([a]), [[1], [2]])
    arrays = pd.Series([np.array([1, 2], np.float32), np.array([3, 4], np.float32)])
    assert _batch.features([arrays]).dtype == np.float32
    np.testing.assert_array_equal(_batch.features([pd.Series([[1, 2], [3, 4]])]), [[1, 2], [3, 4]])
    with pytest.raises(ms.ArgumentError, match="differ in length"):
        _batch.features([pd.Series([[1, 2], [3]])])


def test_the_cache_is_bounded(model_file: Path) -> None:
    """At most CACHE_SIZE models stay loaded per process; the oldest goes first."""
    jobs = [
        plan(model_file, load_options={"format": f"f{i}"}) for i in range(_batch.CACHE_SIZE + 2)
    ]
    for i, job in enumerate(jobs):
        _batch.remember(job, f"model {i}")
    assert _batch.model_for(jobs[-1]) == f"model {len(jobs) - 1}"  # served from the cache
    assert jobs[0].key() not in _batch._CACHE and len(_batch._CACHE) <= _batch.CACHE_SIZE

"""modelstore.dask.predict_partitions on a real local Dask cluster: the same results as
ms.predict, loaded once per worker process through the trust gate and the sha256 pin."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from tests.hostile import _system, joblib_dumped
from tests.integrations.conftest import Models, expected

pytest.importorskip("dask.dataframe")

pytestmark = pytest.mark.slow

COLUMNS = [f"f{i}" for i in range(64)]


def frame(x: np.ndarray, partitions: int = 4) -> Any:
    """Feature columns f0..f63 of ``x`` in a few partitions."""
    import dask.dataframe as dd
    import pandas as pd

    return dd.from_pandas(pd.DataFrame(x, columns=COLUMNS), npartitions=partitions)


def test_sklearn_onnx_torch_equal_ms_predict(dask_client: Any, models: Models) -> None:
    """Each kind of model gives what ms.predict gives on the same rows, partition by partition."""
    from modelstore.dask import predict_partitions
    from tests.models import Net

    ddf = frame(models.x)
    with pytest.warns(ms.PickleWarning):
        labels = predict_partitions(ddf, models.sklearn, output="label").compute()
    assert labels.to_list() == [str(v) for v in expected(models.sklearn, models.x, "label")]
    assert labels.name == "prediction" and (labels.index == ddf.index.compute()).all()
    with warnings.catch_warnings():  # the same file again: its pickle note came once already
        warnings.simplefilter("ignore", ms.PickleWarning)
        proba = predict_partitions(ddf, models.sklearn, output="proba").compute()
    np.testing.assert_allclose(
        np.stack(proba.to_list()), expected(models.sklearn, models.x, "proba")
    )
    onnx = predict_partitions(ddf, models.onnx, columns=COLUMNS).compute()
    np.testing.assert_allclose(
        np.stack(onnx.to_list()), expected(models.onnx, models.x), rtol=1e-5, atol=1e-6
    )
    torch_out = predict_partitions(ddf, models.torch, model=Net, batch_size=16).compute()
    np.testing.assert_allclose(
        np.stack(torch_out.to_list()),
        expected(models.torch, models.x, model=Net),
        rtol=1e-5,
        atol=1e-6,
    )


def test_loads_once_per_process(dask_client: Any, models: Models, tmp_path: Path) -> None:
    """With meta given, nothing loads on the client; eight partitions cost one load on the
    worker, not one per partition."""
    from modelstore import _batch
    from modelstore.dask import predict_partitions

    path = tmp_path / "digits.onnx"
    path.write_bytes(models.onnx.read_bytes())
    before = _batch.load_count()
    out = predict_partitions(frame(models.x, 8), path, output="label", meta=("prediction", object))
    assert _batch.load_count() == before
    assert out.compute().to_list() == [str(v) for v in expected(models.onnx, models.x, "label")]
    assert _batch.load_count() == before + 1  # the worker runs in this process (processes=False)


def test_hostile_joblib_refused(dask_client: Any, models: Models, tmp_path: Path) -> None:
    """A hostile file is refused on the client (meta inferred) and on the workers (meta
    given), with modelstore's error, and its payload never runs."""
    from modelstore.dask import predict_partitions

    path, marker = tmp_path / "evil.joblib", tmp_path / "marker"
    joblib_dumped(_system)(path, marker)
    with pytest.raises(ms.UnsafeModelError, match="system"):
        predict_partitions(frame(models.x), path)
    lazy = predict_partitions(frame(models.x), path, meta=("prediction", "i8"))
    with pytest.raises(ms.UnsafeModelError, match="nothing from the file was executed"):
        lazy.compute()
    assert not marker.exists()


def test_file_swapped_after_planning_is_refused(
    dask_client: Any, models: Models, tmp_path: Path
) -> None:
    """The pin recorded when the graph was built refuses a file replaced before it runs."""
    from modelstore.dask import predict_partitions

    path = tmp_path / "digits.onnx"
    path.write_bytes(models.onnx.read_bytes())
    lazy = predict_partitions(frame(models.x), path, meta=object)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ms.IntegrityError, match="sha256"):
        lazy.compute()


def test_a_worker_process_refuses_too(models: Models, tmp_path: Path) -> None:
    """On a cluster of separate worker processes the graph carries no model and the worker's
    own load refuses a hostile file; no marker appears."""
    distributed = pytest.importorskip("distributed")
    from modelstore.dask import predict_partitions

    path, marker = tmp_path / "evil.joblib", tmp_path / "marker"
    joblib_dumped(_system)(path, marker)
    good = tmp_path / "digits.onnx"
    good.write_bytes(models.onnx.read_bytes())
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = client.compute(predict_partitions(frame(models.x), good, output="label")).result()
        assert got.to_list() == [str(v) for v in expected(models.onnx, models.x, "label")]
        lazy = predict_partitions(frame(models.x), path, meta=("prediction", "i8"))
        with pytest.raises(ms.UnsafeModelError):
            client.compute(lazy).result()
    assert not marker.exists()


def test_bad_arguments(models: Models) -> None:
    """Unknown outputs, a wrong frame, bad columns and meta are refused with ArgumentError."""
    from modelstore.dask import predict_partitions

    with pytest.raises(ms.ArgumentError, match="output"):
        predict_partitions(frame(models.x), models.onnx, output="logits")
    with pytest.raises(ms.ArgumentError, match="Dask"):
        predict_partitions(models.x, models.onnx)
    with pytest.raises(ms.ArgumentError, match="columns"):
        predict_partitions(frame(models.x), models.onnx, columns="f0")
    with pytest.raises(ms.ArgumentError, match="meta"):
        predict_partitions(frame(models.x), models.onnx, meta=object())
    with pytest.raises(ms.ArgumentError, match="key or certificate"):
        predict_partitions(frame(models.x), models.onnx, signed_by="someone@example.com")


def test_remote_store_reference(dask_client: Any, models: Models) -> None:
    """A (Store, 'name@alias') pair on a URI store (memory://, shared by the in-process worker):
    the manifest's sha256 becomes the pin, and each worker loads its own checked copy."""
    from modelstore.dask import predict_partitions

    store = ms.Store("memory://engine-tests/models")
    version = store.push(models.onnx, "digits")
    store.alias("digits", version, "prod")
    got = predict_partitions(
        frame(models.x), (store, "digits@prod"), output="label", meta=("prediction", object)
    ).compute()
    assert got.to_list() == [str(v) for v in expected(models.onnx, models.x, "label")]


def test_weights_need_a_class(dask_client: Any, models: Models) -> None:
    """A safetensors file without model= is a state dict: refused with a hint; trust=True
    builds the class recorded in the file on each worker and predicts like model=Net."""
    from modelstore.dask import predict_partitions
    from tests.models import Net

    with pytest.raises(ms.ArgumentError, match="model=YourClass"):
        predict_partitions(frame(models.x), models.torch)
    got = predict_partitions(frame(models.x), models.torch, trust=True, meta=object).compute()
    np.testing.assert_allclose(
        np.stack(got.to_list()), expected(models.torch, models.x, model=Net), rtol=1e-5, atol=1e-6
    )

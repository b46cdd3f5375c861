"""modelstore.spark.predict_udf on a real local Spark session: same results as ms.predict, the
trust gate and the sha256 pin enforced on the executors."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from tests.hostile import _system, joblib_dumped
from tests.integrations.conftest import Models, expected

pytest.importorskip("pyspark")
pytest.importorskip("pandas")

pytestmark = pytest.mark.slow

COLUMNS = [f"f{i}" for i in range(64)]


def collect(df: Any, column: Any) -> Any:
    """The column, in the frame's row order (``row`` keeps it through the repartition)."""
    from pyspark.sql import functions as F

    out = df.select(F.col("row"), column.alias("y")).toPandas().sort_values("row")
    return out["y"].to_list()


def run_job(df: Any, column: Any) -> None:
    """Score every row and drop the result (a failing job raises the executor's error as is;
    toPandas would first warn that its Arrow path failed)."""
    df.select(column.alias("y")).write.format("noop").mode("overwrite").save()


def with_rows(spark: Any, x: np.ndarray) -> Any:
    """Feature columns f0..f63 (doubles), one array column ``x`` (floats) and a ``row`` number,
    in four partitions."""
    import pandas as pd

    pdf = pd.DataFrame(x.astype(np.float64), columns=COLUMNS)
    pdf["x"] = list(x)
    pdf["row"] = np.arange(len(x))
    return spark.createDataFrame(pdf).repartition(4)


def test_sklearn_raw_proba_and_label_equal_ms_predict(spark: Any, models: Models) -> None:
    """A joblib classifier scored over 64 feature columns gives what ms.predict gives."""
    from modelstore.spark import predict_udf

    df = with_rows(spark, models.x)
    for output in ("raw", "proba", "label"):
        with warnings.catch_warnings(
            record=True
        ) as caught:  # the driver's own load, through the allow-list
            warnings.simplefilter("always")
            score = predict_udf(spark, models.sklearn, output=output)
        # a pickle note, once per file per process: only at the first load of this file here
        assert all(issubclass(w.category, ms.PickleWarning) for w in caught)
        got = collect(df, score(*COLUMNS))
        want = expected(models.sklearn, models.x, output)
        if output == "proba":
            np.testing.assert_allclose(np.stack(got), want, rtol=1e-5, atol=1e-7)  # float64 columns
        elif output == "label":
            assert got == [str(v) for v in want]
        else:
            assert list(got) == list(want)


def test_torch_state_dict_with_model_class(spark: Any, models: Models) -> None:
    """A safetensors file loaded on each executor with model=Net scores an array column."""
    from modelstore.spark import predict_udf
    from tests.models import Net

    df = with_rows(spark, models.x)
    got = collect(df, predict_udf(spark, models.torch, model=Net)("x"))
    want = expected(models.torch, models.x, model=Net)
    np.testing.assert_allclose(np.stack(got), want, rtol=1e-5, atol=1e-6)
    labels = collect(df, predict_udf(spark, models.torch, output="label", model=Net)("x"))
    assert labels == [str(v) for v in expected(models.torch, models.x, "label", model=Net)]


def test_onnx_over_feature_columns(spark: Any, models: Models) -> None:
    """An ONNX file scores double feature columns (cast to the model's float32 input)."""
    from modelstore.spark import predict_udf

    df = with_rows(spark, models.x)
    got = collect(df, predict_udf(spark, models.onnx)(*COLUMNS))
    np.testing.assert_allclose(np.stack(got), expected(models.onnx, models.x), rtol=1e-5, atol=1e-6)
    proba = collect(df, predict_udf(spark, models.onnx, output="proba", batch_size=7)("x"))
    np.testing.assert_allclose(
        np.stack(proba), expected(models.onnx, models.x, "proba"), rtol=1e-5, atol=1e-6
    )


def test_store_reference(spark: Any, models: Models, tmp_path: Path) -> None:
    """A (Store, 'name@version') pair resolves on the driver and loads pinned on executors."""
    from modelstore.spark import predict_udf

    store = ms.Store(tmp_path / "store")
    store.push(models.onnx, "digits")
    df = with_rows(spark, models.x)
    got = collect(df, predict_udf(spark, (store, "digits@latest"), output="label")("x"))
    assert got == [str(v) for v in expected(models.onnx, models.x, "label")]


def test_hostile_joblib_refused_on_the_driver(spark: Any, tmp_path: Path) -> None:
    """Without result_type the driver loads first: the refusal comes before any job runs."""
    from modelstore.spark import predict_udf

    path, marker = tmp_path / "evil.joblib", tmp_path / "marker"
    joblib_dumped(_system)(path, marker)
    with pytest.raises(ms.UnsafeModelError, match="posix.system|os.system"):
        predict_udf(spark, path)
    assert not marker.exists()


def test_hostile_joblib_refused_on_the_executors(
    spark: Any, models: Models, tmp_path: Path
) -> None:
    """With result_type given nothing loads on the driver; every executor refuses the file and
    the job fails with modelstore's message, the payload never having run."""
    from modelstore.spark import predict_udf

    path, marker = tmp_path / "evil.joblib", tmp_path / "marker"
    joblib_dumped(_system)(path, marker)
    score = predict_udf(spark, path, result_type="bigint")
    df = with_rows(spark, models.x[:40])
    with pytest.raises(Exception, match="UnsafeModelError") as info:
        run_job(df, score(*COLUMNS))
    assert type(info.value).__name__ == "PythonException"  # raised on an executor, not here
    assert "nothing from the file was executed" in str(info.value)  # modelstore's own refusal
    assert not marker.exists()


def test_file_swapped_after_planning_is_refused(spark: Any, models: Models, tmp_path: Path) -> None:
    """The driver pins the sha256 when the UDF is made; a file replaced afterwards, by another
    valid model or by a hostile one, is refused on the executors, not loaded."""
    from sklearn.dummy import DummyClassifier

    from modelstore.spark import predict_udf

    path, marker = tmp_path / "digits.joblib", tmp_path / "marker"
    path.write_bytes(models.sklearn.read_bytes())
    with pytest.warns(ms.PickleWarning):
        score = predict_udf(spark, path)
    df = with_rows(spark, models.x[:40])
    retrained = DummyClassifier().fit(models.x[:50], np.arange(50) % 3)
    ms.save(retrained, path)  # a valid model, but not the one planned
    with pytest.raises(Exception, match="IntegrityError") as info:
        run_job(df, score(*COLUMNS))
    assert type(info.value).__name__ == "PythonException" and "sha256" in str(info.value)
    joblib_dumped(_system)(path, marker)  # now a hostile file in its place
    with pytest.raises(Exception, match="IntegrityError"):
        run_job(df, score(*COLUMNS))
    assert not marker.exists()


def test_a_wrong_pin_is_refused_when_planning(spark: Any, models: Models) -> None:
    """sha256= that the file does not match fails at once, on the driver."""
    from modelstore.spark import predict_udf

    with pytest.raises(ms.IntegrityError, match="sha256"):
        predict_udf(spark, models.onnx, sha256="0" * 64)
    info = ms.inspect(models.onnx)
    assert predict_udf(spark, models.onnx, sha256=info.sha256.upper(), result_type="array<float>")


def test_bad_arguments(spark: Any, models: Models) -> None:
    """Unknown outputs, unusable types and a missing file are refused with ArgumentError."""
    from modelstore.spark import predict_udf

    with pytest.raises(ms.ArgumentError, match="output"):
        predict_udf(spark, models.onnx, output="logits")
    with pytest.raises(ms.ArgumentError, match="SparkSession"):
        predict_udf("spark", models.onnx)
    with pytest.raises(ms.ArgumentError, match="model_ref"):
        predict_udf(spark, 42)
    with pytest.raises(ms.ModelNotFoundError):
        predict_udf(spark, models.folder / "missing.onnx")
    with pytest.raises(ms.ArgumentError, match="result_type"):
        predict_udf(spark, models.onnx, result_type=3.5)

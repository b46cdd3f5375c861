"""Score a saved model on Apache Spark through modelstore's trust gate.

>>> from modelstore.spark import predict_udf
>>> score = predict_udf(spark, "digits.onnx", output="label")
>>> df.withColumn("digit", score("pixels")).show()

Unlike a UDF that ships a pickled model to the executors (one hostile file is then code
execution on every executor), :func:`predict_udf` ships only the model's path, its sha256
and the load options. Each executor process loads the file itself through
:func:`modelstore.load`, with the driver's trust policy and the sha256 pin, once per process.
Importing this module does not import pyspark; calling :func:`predict_udf` does.
"""

from __future__ import annotations

from typing import Any, Iterator  # typing's: the hint names pyspark recognises

from . import _batch
from .errors import ArgumentError, MissingDependencyError

__all__ = ["predict_udf"]

_SPARK_TYPES = {
    "float32": "float",
    "float64": "double",
    "int64": "bigint",
    "int32": "int",
    "bool": "boolean",
    "str": "string",
}


def predict_udf(
    spark: Any,
    model_ref: Any,
    *,
    output: str = "raw",
    trust: bool | list[str] = False,
    signed_by: Any = None,
    sha256: str | None = None,
    batch_size: int | None = None,
    result_type: Any = None,
    **load_options: Any,
) -> Any:
    """A Spark pandas UDF (iterator of Arrow batches) that scores rows with a saved model.

    Parameters
    ----------
    spark : the active ``SparkSession`` (classic or Spark Connect).
    model_ref : a local path (resolved on the driver: executors must see the same path, as
        on one machine or a shared file system), an fsspec URI (``s3://...``), or a
        ``(Store, "name@version")`` pair.
    output : ``"raw"``, ``"proba"`` or ``"label"``, as in :func:`modelstore.predict`.
    trust : the trust policy of every load, as in :func:`modelstore.load`.
    signed_by : the signer the file must be signed by; needs a ``modelstore.load`` that takes
        ``signed_by=`` (an ``ArgumentError`` says so otherwise).
    sha256 : a pin from a trusted place; the file must match it. Without one, the driver
        records the file's sha256 and executors refuse a file whose digest differs.
    batch_size : rows per model call inside one Arrow batch (default: the whole batch).
    result_type : the Spark type of the result (``"double"``, ``"array<float>"``, a
        ``DataType``). Without it the driver loads the model once (through the same gate) to
        choose: labels are strings, probabilities ``array<double>``, raw outputs a scalar for
        one value per row and an array otherwise (torch and Keras: ``array<float>``).
    **load_options : passed to :func:`modelstore.load` on every executor (``model=Net``,
        ``storage_options=...``, ``format=...``).

    Returns
    -------
    A pandas UDF: call it with the feature columns (several numeric columns, or one array
    column) to get a column of predictions.

    Raises
    ------
    ArgumentError, IntegrityError (the file does not match a pin), ModelNotFoundError,
    MissingDependencyError (pyspark, pandas or pyarrow missing), and on the driver, when
    ``result_type`` is not given, whatever :func:`modelstore.load` raises (``UnsafeModelError``).
    On the executors the same refusals fail the Spark job, their message in its error.

    Examples
    --------
    >>> score = predict_udf(spark, "digits.joblib", output="label")
    >>> df.select(score("f0", "f1", "f2").alias("label"))
    >>> score = predict_udf(spark, (ms.Store("s3://models"), "digits@prod"), result_type="bigint")
    """
    _require()
    if not type(spark).__name__ == "SparkSession":
        raise ArgumentError(f"predict_udf needs a SparkSession first, not {type(spark).__name__}")
    job = _batch.plan(
        model_ref,
        output=output,
        trust=trust,
        signed_by=signed_by,
        sha256=sha256,
        batch_size=batch_size,
        load_options=dict(load_options),
    )
    if result_type is None:
        import modelstore

        model = modelstore.load(job.path, **job.load_kwargs())  # the gate, on the driver first
        _batch.remember(job, model)
        shape, dtype = _batch.result_kind(model, output)
        result_type = _SPARK_TYPES[dtype] if shape == "scalar" else f"array<{_SPARK_TYPES[dtype]}>"
    return _udf(job, result_type, _shape_of(result_type))


def _require() -> None:
    import importlib.util

    missing = [m for m in ("pyspark", "pandas", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f'modelstore.spark needs {", ".join(missing)}: pip install "modelstore-safe[spark]"'
        )


def _shape_of(result_type: Any) -> str:
    if isinstance(result_type, str):
        return "array" if result_type.replace(" ", "").lower().startswith("array<") else "scalar"
    from pyspark.sql.types import ArrayType, DataType

    if not isinstance(result_type, DataType):
        raise ArgumentError(
            f"result_type must be a Spark type name or DataType, not {type(result_type).__name__}"
        )
    return "array" if isinstance(result_type, ArrayType) else "scalar"


def _udf(job: _batch.Plan, result_type: Any, shape: str) -> Any:
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    def score(batches: Any) -> Any:
        # runs on the executors: only `job` (strings, numbers, load options) was shipped
        for batch in batches:
            columns = list(batch) if isinstance(batch, tuple) else [batch]
            yield pd.Series(_batch.run(job, _batch.features(columns), shape))

    # real objects, not strings: pyspark reads these hints to pick the iterator UDF type
    score.__annotations__ = {
        "batches": Iterator[tuple[pd.Series, ...]],
        "return": Iterator[pd.Series],
    }
    return pandas_udf(score, returnType=result_type)  # type: ignore[call-overload]  # hints set above

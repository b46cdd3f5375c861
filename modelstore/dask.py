"""Score a saved model on Dask partitions through modelstore's trust gate.

>>> from modelstore.dask import predict_partitions
>>> ddf["digit"] = predict_partitions(ddf, "digits.onnx", output="label")

The same contract as :func:`modelstore.spark.predict_udf`: the client resolves the model
once and records its sha256; the task graph carries only the path, the pin and the load
options, and each worker process loads the file through :func:`modelstore.load` (same trust
policy, pinned) once, then reuses it for every partition. Importing this module does not
import dask; calling :func:`predict_partitions` does.
"""

from __future__ import annotations

from typing import Any

from . import _batch
from .errors import ArgumentError, MissingDependencyError

__all__ = ["predict_partitions"]

NAME = "prediction"


def predict_partitions(
    ddf: Any,
    model_ref: Any,
    *,
    columns: list[str] | None = None,
    output: str = "raw",
    trust: bool | list[str] = False,
    signed_by: Any = None,
    sha256: str | None = None,
    batch_size: int | None = None,
    meta: Any = None,
    **load_options: Any,
) -> Any:
    """Predictions of a saved model for every row of a Dask DataFrame, as a Dask Series.

    Parameters
    ----------
    ddf : a ``dask.dataframe`` DataFrame (or Series: one column, of numbers or of arrays).
    model_ref : a local path (workers must see the same path), an fsspec URI, or a
        ``(Store, "name@version")`` pair.
    columns : the feature columns, in the order the model takes them (default: all). A single
        column of lists or arrays is stacked into rows.
    output, trust, signed_by, sha256, batch_size : as in :func:`modelstore.spark.predict_udf`.
    meta : the Dask ``meta`` of the result (e.g. ``("prediction", "f8")``). Without it the
        client loads the model once (through the same gate) to choose: a numeric Series for
        one value per row, an object Series of arrays otherwise, strings for labels. With an
        object ``meta`` and ``output`` other than ``"label"``, each row holds an array.
    **load_options : passed to :func:`modelstore.load` on every worker.

    Returns
    -------
    A Dask Series named ``"prediction"``, partitioned (and indexed) like ``ddf``.

    Raises
    ------
    ArgumentError, IntegrityError, ModelNotFoundError, MissingDependencyError; on the client,
    when ``meta`` is not given, whatever :func:`modelstore.load` raises; on the workers the
    same refusals, raised again when the result is computed.

    Examples
    --------
    >>> pred = predict_partitions(ddf, "digits.joblib", columns=[f"f{i}" for i in range(64)])
    >>> pred.compute()
    """
    _require()
    import pandas as pd

    if not hasattr(ddf, "map_partitions"):
        raise ArgumentError(
            f"predict_partitions needs a Dask DataFrame or Series, not {type(ddf).__name__}"
        )
    job = _batch.plan(
        model_ref,
        output=output,
        trust=trust,
        signed_by=signed_by,
        sha256=sha256,
        batch_size=batch_size,
        load_options=dict(load_options),
    )
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ArgumentError("columns must be a list of column names")
        ddf = ddf[list(columns)]
    if meta is None:
        import modelstore

        model = modelstore.load(job.path, **job.load_kwargs())  # the gate, on the client first
        _batch.remember(job, model)
        shape, kind = _batch.result_kind(model, output)
        dtype = pd.api.types.pandas_dtype(object if shape == "array" or kind == "str" else kind)
    else:
        dtype = _meta_dtype(meta)
        shape = "array" if getattr(dtype, "kind", None) == "O" and output != "label" else "scalar"
    empty = pd.Series([], dtype=dtype, name=NAME)
    return ddf.map_partitions(_score, job, shape, dtype, meta=empty)


def _score(part: Any, job: _batch.Plan, shape: str, dtype: Any) -> Any:
    """One partition, on a worker: only ``job`` (path, pin, options) came with the task."""
    import pandas as pd

    columns = [part] if isinstance(part, pd.Series) else [part[c] for c in part.columns]
    if len(part) == 0:
        return pd.Series([], dtype=dtype, name=NAME, index=part.index)
    y = _batch.run(job, _batch.features(columns), shape)
    return pd.Series(y, index=part.index, name=NAME, dtype=dtype)


def _meta_dtype(meta: Any) -> Any:
    import pandas as pd

    if isinstance(meta, pd.Series):
        return meta.dtype
    if isinstance(meta, tuple) and len(meta) == 2:
        meta = meta[1]
    try:
        return pd.api.types.pandas_dtype(meta)
    except TypeError:
        raise ArgumentError(
            f"meta must be a dtype, a (name, dtype) pair or an empty Series, not {meta!r}"
        ) from None


def _require() -> None:
    import importlib.util

    missing = [m for m in ("dask", "pandas") if importlib.util.find_spec(m) is None]
    if not missing and importlib.util.find_spec("dask.dataframe") is None:
        missing.append("dask[dataframe]")
    if missing:
        raise MissingDependencyError(
            f'modelstore.dask needs {", ".join(missing)}: pip install "modelstore-safe[dask]"'
        )

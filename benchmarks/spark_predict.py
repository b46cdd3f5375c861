"""Rows per second of ``modelstore.spark.predict_udf`` vs a hand-written pandas UDF.

Same Spark session (local[2], loopback), same cached data (ROWS rows of one ``array<float>``
column of 64 features), same model file, for two models:

* ``onnx``    the digits MLP exported to ONNX; the hand-written UDF opens it with
              ``onnxruntime.InferenceSession`` (the framework's raw loader, no checks);
* ``sklearn`` a LogisticRegression saved as .joblib; the hand-written UDF calls ``joblib.load``.

Both UDFs are iterator-of-batches pandas UDFs; predict_udf loads through ``ms.load`` with a
sha256 pin once per executor process, the hand-written one loads once per task (as such code
usually does). Each job writes to Spark's ``noop`` sink, so every row is scored and nothing
else is measured. The methods run interleaved, REPEAT times each after one warm-up; the
median is reported.

    python benchmarks/spark_predict.py                     # 1M rows, 3 repeats
    python benchmarks/spark_predict.py --rows 100000 --repeat 2 --out /tmp/spark_predict.md
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd  # module level: pyspark resolves the UDFs' type hints against it


def make_models(folder: Path) -> "dict[str, Path]":
    import torch
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from torch import nn

    import modelstore as ms

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    ms.save(clf, folder / "digits.joblib")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms.export_onnx(net, folder / "digits.onnx", sample_input=x[:4])
    return {"onnx": folder / "digits.onnx", "sklearn": folder / "digits.joblib"}


def raw_udf(kind: str, path: Path) -> Any:
    """The hand-written pandas UDF a user would write with the framework's own loader."""
    from pyspark.sql.functions import pandas_udf

    if kind == "onnx":

        @pandas_udf("array<float>")  # type: ignore[call-overload]
        def onnx_raw(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            for s in batches:
                x = np.stack(s.to_numpy()).astype(np.float32)
                yield pd.Series(list(sess.run(None, {name: x})[0]))

        return onnx_raw

    @pandas_udf("bigint")  # type: ignore[call-overload]
    def sklearn_raw(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import joblib

        model = joblib.load(path)
        for s in batches:
            yield pd.Series(model.predict(np.stack(s.to_numpy())))

    return sklearn_raw


def timed(df: Any, udf: Any) -> float:
    start = time.perf_counter()
    df.select(udf("x").alias("y")).write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()

    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    import pyspark
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import modelstore as ms
    from modelstore.spark import predict_udf

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("modelstore-bench")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(args.partitions))
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    folder = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    paths = make_models(folder)
    df = (
        spark.range(args.rows, numPartitions=args.partitions)
        .select(F.array(*[F.rand(seed=i).cast("float") for i in range(64)]).alias("x"))
        .cache()
    )
    df.count()  # materialise the cache: the timed jobs read the same rows from memory
    # the same shape, small: starts every Python worker and imports the frameworks before timing
    warm = spark.range(4000, numPartitions=args.partitions).select(
        F.array(*[F.rand(seed=i).cast("float") for i in range(64)]).alias("x")
    )

    rows = []
    for kind, path in paths.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            ms_udf = predict_udf(spark, path)
        udfs = {"hand-written pandas UDF": raw_udf(kind, path), "modelstore predict_udf": ms_udf}
        times: dict[str, list[float]] = {name: [] for name in udfs}
        for udf in udfs.values():  # warm-up: Python workers started, models loaded
            timed(warm, udf)
        for _ in range(args.repeat):
            for name, udf in udfs.items():
                times[name].append(timed(df, udf))
        base = args.rows / statistics.median(times["hand-written pandas UDF"])
        for name in udfs:
            rate = args.rows / statistics.median(times[name])
            rows.append(
                f"| {kind} | {name} | {statistics.median(times[name]):.2f} | {rate:,.0f} | {rate / base:.2f}x |"
            )
    spark.stop()

    import onnxruntime
    import sklearn

    lines = [
        f"python {platform.python_version()}, pyspark {pyspark.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, scikit-learn {sklearn.__version__}, modelstore {ms.__version__}, "
        f"{os.cpu_count()} CPUs, local[2], {args.rows:,} rows x 64 float features, "
        f"{args.partitions} partitions, median of {args.repeat}",
        "",
        "| model | method | median s | rows/s | vs hand-written |",
        "|---|---|---:|---:|---:|",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

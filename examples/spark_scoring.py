"""Score a saved model on Spark and on Dask through modelstore's trust gate.

Trains a small classifier on iris, saves it, scores it with ``modelstore.spark.predict_udf`` on
a local Spark session and with ``modelstore.dask.predict_partitions`` on a local Dask cluster,
then swaps the file after planning and shows the executors refusing it.

    python examples/spark_scoring.py [--out DIR]       # needs "modelstore-safe[spark,dask,sklearn]" and Java
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelstore as ms


def main(out: Path) -> None:
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    path = out / "iris.joblib"
    ms.save(model, path, labels=list(iris.target_names))
    warnings.simplefilter("ignore", ms.PickleWarning)  # this script's own choice: it saved the file
    import pandas as pd

    features = [name.replace(" (cm)", "").replace(" ", "_") for name in iris.feature_names]
    pdf = pd.DataFrame(iris.data, columns=features)
    want = [str(v) for v in ms.predict(ms.load(path), iris.data, output="label")]

    # -- Spark: the driver pins the file's sha256; executors load it themselves, once each
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    from modelstore.spark import predict_udf

    df = spark.createDataFrame(pdf)
    score = predict_udf(
        spark, path, output="label"
    )  # the gate runs here first, then on every executor
    got = df.select(score(*features).alias("species")).toPandas()["species"].to_list()
    print(f"spark: {len(got)} rows scored, same as ms.predict: {got == want}")
    assert got == want

    # -- Dask: the same contract on partitions
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from modelstore.dask import predict_partitions

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster),
    ):
        pred = predict_partitions(
            dd.from_pandas(pdf, npartitions=3), path, output="label"
        ).compute()
    print(f"dask: {len(pred)} rows scored, same as ms.predict: {pred.to_list() == want}")
    assert pred.to_list() == want

    # -- a file replaced after the UDF was made is refused on the executors, not loaded
    fresh = out / "iris-v2.joblib"
    ms.save(model, fresh)
    score_v2 = predict_udf(spark, fresh, result_type="string")  # the driver records its sha256
    ms.save(
        LogisticRegression(max_iter=500).fit(iris.data[:100], iris.target[:100]), fresh
    )  # swapped
    try:
        df.select(score_v2(*features)).collect()
    except Exception as e:  # Spark wraps the executor's IntegrityError in its own exception
        refused = "IntegrityError" in str(e) and "sha256" in str(e)
    else:
        refused = False
    print(f"swapped file refused on the executors: {refused}")
    assert refused
    spark.stop()


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)

"""Shared parts of the engine tests: tiny real models saved once per session, one Spark session."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Models:
    """Model files of each kind, and the rows they score."""

    folder: Path
    x: np.ndarray  # digits, float32, 64 features
    sklearn: Path  # LogisticRegression, .joblib
    torch: Path  # tests.models.Net, .safetensors (load with model=Net)
    onnx: Path  # the same Net exported to ONNX


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A scikit-learn classifier, a torch MLP and its ONNX export, saved by modelstore."""
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from tests.models import trained_net

    folder = tmp_path_factory.mktemp("engine-models")
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    ms.save(clf, folder / "digits.joblib", labels=[str(i) for i in range(10)])
    net = trained_net(hidden=16)
    ms.save(net, folder / "digits.safetensors", config={"hidden": 16})
    with warnings.catch_warnings():  # the exporter's own deprecation chatter is not ours
        warnings.simplefilter("ignore")
        ms.export_onnx(net, folder / "digits.onnx", sample_input=x[:4])
    return Models(
        folder,
        x[:300],
        folder / "digits.joblib",
        folder / "digits.safetensors",
        folder / "digits.onnx",
    )


def expected(path: Path, x: np.ndarray, output: str = "raw", **load_options: Any) -> Any:
    """What ``ms.predict`` gives for the same rows on the driver."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        model = ms.load(path, **load_options)
    return ms.predict(model, x, output=output)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session (2 cores, loopback, no UI) shared by every Spark test."""
    pytest.importorskip("pyspark")
    pytest.importorskip("pyarrow")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime (apt-get install default-jre-headless)")
    from pyspark.sql import SparkSession

    saved = {
        k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH")
    }
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # executors import tests.models (the class given as model=Net) and this checkout's modelstore
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])
    )
    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelstore-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A real local Dask cluster (one in-process worker, two threads, HTTP on a free loopback port)."""
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")

    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
    )  # inproc: no host
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()

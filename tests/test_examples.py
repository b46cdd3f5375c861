"""Examples are tests: each one runs top to bottom in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_quickstart_then_evaluate(tmp_path: Path) -> None:
    """quickstart trains, saves, reloads identically; evaluate_digits reads its file and draws a grid."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    proc = run_example("quickstart.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "identical outputs: True" in proc.stdout
    acc = float(proc.stdout.split("test accuracy: ")[1].split()[0])
    assert acc > 0.9
    pytest.importorskip("matplotlib")
    png = tmp_path / "grid.png"
    proc = run_example(
        "evaluate_digits.py",
        "--model",
        str(tmp_path / "digits.safetensors"),
        "--png",
        str(png),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "confusion matrix (rows: true, columns: predicted)" in proc.stdout
        and "macro avg" in proc.stdout
    )


@pytest.mark.slow
def test_sklearn_iris(tmp_path: Path) -> None:
    """sklearn_iris saves, inspects without unpickling, loads through the gate, predicts the same."""
    pytest.importorskip("sklearn")
    proc = run_example("sklearn_iris.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scan: safe" in proc.stdout and "predicts the same: True" in proc.stdout
    assert (tmp_path / "iris_forest.joblib.modelstore.json").exists()


@pytest.mark.slow
def test_load_untrusted(tmp_path: Path) -> None:
    """load_untrusted loads the safe files, refuses the hostile ones, and the payload never runs."""
    pytest.importorskip("torch")
    proc = run_example("load_untrusted.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused:") == 2 and proc.stdout.count("loaded:") == 2
    assert "payload ran: False" in proc.stdout


@pytest.mark.slow
def test_keras_digits(tmp_path: Path) -> None:
    """keras_digits saves .h5/.keras/.weights.h5, reloads each way, predicts the same."""
    pytest.importorskip("keras")
    proc = run_example("keras_digits.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("same predictions as the trained model: True") == 3
    assert "total params 2,410" in proc.stdout


@pytest.mark.slow
def test_onnx_bridge(tmp_path: Path) -> None:
    """onnx_bridge exports with parity and predicts in a child process without torch."""
    pytest.importorskip("onnxruntime")
    proc = run_example("onnx_bridge.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout


@pytest.mark.slow
def test_model_store(tmp_path: Path) -> None:
    """model_store keeps two versions, aliases the better one, loads it, shards and casts it."""
    pytest.importorskip("torch")
    proc = run_example("model_store.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "saved digits-mlp@2" in proc.stdout and "aliases ['prod']" in proc.stdout
    assert "float16 shards predict the same labels: True; module dtype torch.float32" in proc.stdout
    assert (tmp_path / "store" / "digits-mlp" / "versions" / "000002.json").is_file()
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()


@pytest.mark.slow
def test_plugin_example_passes_the_contract_suite(tmp_path: Path) -> None:
    """examples/plugin_linear_json, a backend outside the package written with public names
    only, passes modelstore.testing's contract suite and wins by priority (its own pytest run,
    in a fresh interpreter, so its registration does not leak into this process)."""
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(EXAMPLES / "plugin_linear_json"),
            str(EXAMPLES / "plugin_linear_json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


@pytest.mark.slow
def test_signed_models(tmp_path: Path) -> None:
    """signed_models signs, verifies and loads, then refuses a tampered, a foreign and an unsigned file."""
    pytest.importorskip("torch")
    pytest.importorskip("model_signing")
    proc = run_example("signed_models.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: Net" in proc.stdout and proc.stdout.count("refused (") == 3


@pytest.mark.slow
def test_model_summary(tmp_path: Path) -> None:
    """model_summary prints a layer table with a frozen layer, and the same table from the file."""
    pytest.importorskip("torch")
    proc = run_example("model_summary.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "trainable 4,474 of 4,554; buffers 17" in proc.stdout
    assert (
        "BatchNorm2d  1x8x8x8" in proc.stdout
        and "same layers and shapes from the file: True" in proc.stdout
    )


@pytest.mark.slow
def test_weight_histograms(tmp_path: Path) -> None:
    """weight_histograms reads a plain torch.save state dict without trust and writes a PNG."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    png = tmp_path / "w.png"
    proc = run_example(
        "weight_histograms.py", "--out", str(tmp_path), "--png", str(png), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "fc1.weight" in proc.stdout and "NaN/Inf: 0" in proc.stdout and "trust" not in proc.stderr
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_spark_scoring(tmp_path: Path) -> None:
    """spark_scoring scores on Spark and Dask like ms.predict, and a swapped file is refused."""
    import shutil

    for name in ("sklearn", "pyspark", "pyarrow", "dask.dataframe", "distributed"):
        pytest.importorskip(name)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime")
    proc = run_example("spark_scoring.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "spark: 150 rows scored, same as ms.predict: True" in proc.stdout
    assert "dask: 150 rows scored, same as ms.predict: True" in proc.stdout
    assert "swapped file refused on the executors: True" in proc.stdout


@pytest.mark.slow
def test_quantize(tmp_path: Path) -> None:
    """quantize writes float16 and int8 ONNX and int8 torch files, smaller, with the same accuracy."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    proc = run_example("quantize.py", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "torch int8 reloaded with model=Net gives identical outputs: True" in proc.stdout
    ratio = float(proc.stdout.split("ONNX int8 (ms.quantize)")[1].split()[1])
    assert ratio < 0.4
    assert (tmp_path / "digits.int8.onnx").is_file() and (tmp_path / "digits.fp16.onnx").is_file()

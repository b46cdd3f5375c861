"""`modelstore summary` and `modelstore evaluate`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "modelstore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_summary_command(tmp_path: Path) -> None:
    """summary prints the tensor-name table for a file, and the built table with --model."""
    path = tmp_path / "net.safetensors"
    ms.save(models.trained_net(hidden=8), path, config={"hidden": 8})
    plain = run("summary", str(path))
    assert plain.returncode == 0, plain.stderr
    assert "total params: 610" in plain.stdout and "model=Net" in plain.stdout
    built = run(
        "summary", str(path), "--model", "tests.models:Net", "--input-size", "3,64", "--json"
    )
    assert built.returncode == 0, built.stderr
    data = json.loads(built.stdout)
    assert data["total_params"] == 610 and data["input_shapes"] == [[3, 64]]
    assert [r["output_shape"] for r in data["layers"]] == [[3, 8], [3, 8], [3, 10]]
    bad = run("summary", str(path), "--model", "tests.models:Net", "--input-size", "3,a")
    assert bad.returncode == 2 and "--input-size" in bad.stderr


@pytest.mark.slow
def test_evaluate_command(tmp_path: Path) -> None:
    """evaluate reads X and y from .npy/.csv, prints the report or JSON, and draws a grid."""
    pytest.importorskip("matplotlib")
    net = models.trained_net(hidden=8)
    path = tmp_path / "net.safetensors"
    ms.save(net, path, config={"hidden": 8}, labels=[f"d{i}" for i in range(10)])
    x = np.random.default_rng(0).random((20, 64), dtype=np.float32)
    y = ms.predict(net, x).argmax(axis=1)
    y[0] = (y[0] + 1) % 10
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.csv").write_text("\n".join(f"d{v}" for v in y))
    proc = run(
        "evaluate",
        str(path),
        "--model",
        "tests.models:Net",
        "--input",
        str(tmp_path / "x.npy"),
        "--target",
        str(tmp_path / "y.npy"),
        "--plot",
        str(tmp_path / "g.png"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "accuracy 0.9500 (19/20 correct)" in proc.stdout and (tmp_path / "g.png").is_file()
    proc = run(
        "evaluate",
        str(path),
        "--model",
        "tests.models:Net",
        "--input",
        str(tmp_path / "x.npy"),
        "--target",
        str(tmp_path / "y.csv"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["wrong"] == [0]
    missing = run(
        "evaluate",
        str(path),
        "--input",
        str(tmp_path / "x.npy"),
        "--target",
        str(tmp_path / "no.npy"),
    )
    assert missing.returncode == 2 and "--target" in missing.stderr

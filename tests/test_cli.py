"""The modelstore command, run as a real subprocess on real files (the longer sequences of
command lines run in one child, each as ``python -m modelstore`` would: tests/cli_batch.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import cli_batch, models  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "modelstore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    net = models.trained_net(hidden=8)
    out = {"st": root / "m.safetensors", "pt": root / "m.pth", "whole": root / "whole.pt"}
    ms.save(net, out["st"], config={"hidden": 8}, labels=list("0123456789"))
    torch.save(net.state_dict(), out["pt"])
    torch.save(net, out["whole"])
    return out


def test_inspect_table(files: dict[str, Path]) -> None:
    """inspect prints format, sha256, safety and a per-tensor table with totals."""
    proc = run("inspect", str(files["st"]))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "safetensors (torch)" in text and "executes code  no" in text
    assert "fc1.weight" in text and "8x64" in text and "total" in text and "610" in text


def test_inspect_json_for_each_format(files: dict[str, Path]) -> None:
    """--json gives ModelInfo as JSON for safetensors and torch files."""
    for key, fmt in (("st", "safetensors"), ("pt", "torch")):
        proc = run("inspect", str(files[key]), "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["format"] == fmt and data["num_params"] == 610
    whole = json.loads(run("inspect", str(files["whole"]), "--json").stdout)
    assert whole["executes_code"] is True and "tests.models.Net" in whole["globals"]


def test_scan_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    """scan exits 0 for safe files, 1 for unsafe ones, 2 for unknown or bad input."""
    assert run("scan", str(files["st"]), str(files["pt"])).returncode == 0
    proc = run("scan", str(files["whole"]), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["verdict"] == "unsafe"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    assert run("scan", str(junk)).returncode == 2


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    """A missing file is one clear line on stderr and exit code 2."""
    proc = run("inspect", str(tmp_path / "absent.safetensors"))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_has_examples() -> None:
    """Each subcommand's --help shows examples."""
    for sub in ("inspect", "scan"):
        proc = run(sub, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout
    assert run().returncode == 2


def test_scan_recurses_into_folders_with_progress(tmp_path: Path) -> None:
    """scan DIR finds model files recursively (not sidecars or notes) and draws progress."""
    import pickle

    from tests.hostile import Reduce

    (tmp_path / "a" / "b").mkdir(parents=True)
    ms.save(models.trained_net(), tmp_path / "a" / "m.pt")
    ms.save(models.trained_net(), tmp_path / "a" / "b" / "m.safetensors")
    (tmp_path / "notes.txt").write_text("not a model")
    proc = run("scan", str(tmp_path), "--json", "--progress")
    assert proc.returncode == 0, proc.stderr
    paths = sorted(Path(r["path"]).name for r in json.loads(proc.stdout))
    assert paths == ["m.pt", "m.safetensors"]
    assert "scanning" in proc.stderr and "2/2" in proc.stderr
    (tmp_path / "a" / "evil.pkl").write_bytes(pickle.dumps(Reduce(os.getcwd)))
    proc = run("scan", str(tmp_path))
    assert (
        proc.returncode == 1 and "evil.pkl: unsafe" in proc.stdout and "posix.getcwd" in proc.stdout
    )
    assert run("scan", str(tmp_path / "a" / "b" / "nothing")).returncode == 2


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, np.random.default_rng(0).random((6, 64), dtype=np.float32))
    return path


@pytest.mark.slow
def test_inspect_stats_and_plot(files: dict[str, Path], tmp_path: Path) -> None:
    """--stats gives mean/std/min/max per tensor; --plot writes a PNG of histograms;
    a plain state dict needs no --trust; a pickled whole module does."""
    png = tmp_path / "w.png"
    proc = run("inspect", str(files["st"]), "--stats", "--plot", str(png), "--json")
    assert proc.returncode == 0, proc.stderr
    stats = {row["name"]: row for row in json.loads(proc.stdout)["stats"]}
    assert set(stats) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    w = models.trained_net(hidden=8).fc1.weight.detach().numpy()
    assert abs(stats["fc1.weight"]["mean"] - float(w.mean())) < 1e-6
    assert png.read_bytes()[:4] == b"\x89PNG"
    plain = run("inspect", str(files["pt"]), "--stats")
    assert plain.returncode == 0 and "fc2.bias" in plain.stdout and "mean" in plain.stdout, (
        plain.stderr
    )
    refused = run("inspect", str(files["whole"]), "--stats")
    assert refused.returncode == 1 and "--trust" in refused.stderr
    trusted = run("inspect", str(files["whole"]), "--stats", "--trust")
    assert trusted.returncode == 0 and "fc2.bias" in trusted.stdout


@pytest.mark.slow
def test_convert_and_predict(files: dict[str, Path], tmp_path: Path, sample: Path) -> None:
    """convert .pth -> .safetensors and -> .onnx (with --model/--sample); predict from .npy and .csv;
    never overwrite without --force."""
    import numpy as np

    dst = tmp_path / "w.safetensors"
    onnx_path = tmp_path / "w.onnx"
    csv = tmp_path / "x.csv"
    np.savetxt(
        csv,
        np.load(sample),
        delimiter=",",
        header=",".join(f"f{i}" for i in range(64)),
        comments="",
    )
    out = tmp_path / "proba.npy"
    net = ["--model", "tests.models:Net", "--config", '{"hidden": 8}']
    # one child runs the command lines in turn, each as `python -m modelstore` would
    first, exists, forced, to_onnx, labels, proba, bad, wrong = cli_batch.run(
        [
            ["convert", str(files["pt"]), str(dst), "--json"],
            ["convert", str(files["pt"]), str(dst)],
            ["convert", str(files["pt"]), str(dst), "--force"],
            ["convert", str(files["st"]), str(onnx_path), *net, "--sample", str(sample)],
            ["predict", str(onnx_path), "--input", str(sample), "--output", "label"],
            ["predict", str(files["st"]), "--input", str(csv), "--output", "proba", *net]
            + ["--out", str(out), "--batch-size", "4"],
            ["predict", str(files["whole"]), "--input", str(sample)],
            ["predict", str(onnx_path), "--input", str(csv) + ".missing"],
        ]
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["format"] == "safetensors"
    assert exists.returncode == 2  # exists
    assert forced.returncode == 0
    assert to_onnx.returncode == 0, to_onnx.stderr
    assert labels.returncode == 0, labels.stderr
    got = json.loads(labels.stdout)
    assert len(got) == 6 and all(v in list("0123456789") for v in got)
    assert proba.returncode == 0, proba.stderr
    np.testing.assert_allclose(np.load(out).sum(axis=1), 1, rtol=1e-5)
    assert bad.returncode == 1 and "refused" in bad.stderr and "Traceback" not in bad.stderr
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1


def test_every_subcommand_has_help_with_examples() -> None:
    """--help of every subcommand shows examples."""
    for sub in ("inspect", "scan", "convert", "predict", "serve", "store"):
        proc = run(sub, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout, sub


@pytest.fixture(scope="module")
def every_format(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file per available format."""
    import numpy as np

    root = tmp_path_factory.mktemp("formats")
    out: dict[str, Path] = {}
    net = models.trained_net(hidden=8)
    out["safetensors"] = root / "m.safetensors"
    ms.save(net, out["safetensors"], config={"hidden": 8})
    out["torch"] = root / "m.pth"
    ms.save(net, out["torch"], config={"hidden": 8})
    try:
        from sklearn.linear_model import LogisticRegression

        out["sklearn"] = root / "m.joblib"
        rng = np.random.default_rng(0)
        ms.save(
            LogisticRegression().fit(rng.random((20, 64)), rng.integers(0, 3, 20)), out["sklearn"]
        )
    except ImportError:
        pass
    try:
        import keras

        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
        out["keras"] = root / "m.h5"
        ms.save(model, out["keras"])
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401

        out["onnx"] = root / "m.onnx"
        ms.export_onnx(net, out["onnx"], sample_input=np.zeros((2, 64), np.float32))
    except ImportError:
        pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "torch", "sklearn", "keras", "onnx"])
def test_every_format_through_the_command(
    every_format: dict[str, Path], fmt: str, sample: Path, tmp_path: Path
) -> None:
    """inspect --json, scan, predict (and convert where it applies) on each format."""
    if fmt not in every_format:
        pytest.skip(f"{fmt} not installed")
    path = every_format[fmt]
    extra = (
        ["--model", "tests.models:Net", "--config", '{"hidden": 8}']
        if fmt in ("safetensors", "torch")
        else []
    )
    commands = [
        ["inspect", str(path), "--json"],
        ["scan", str(path)],
        ["predict", str(path), "--input", str(sample), *extra],
    ]
    if fmt == "keras":
        commands += [
            ["convert", str(path), str(tmp_path / "m.keras")],
            ["inspect", str(tmp_path / "m.keras"), "--json"],
        ]
    # one child runs the command lines in turn, each as `python -m modelstore` would
    inspect, scan, predict, *converted = cli_batch.run(commands)
    assert inspect.returncode == 0, inspect.stderr
    data = json.loads(inspect.stdout)
    assert data["format"] == fmt and data["verdict"] == "safe" and data["num_params"] > 0
    assert scan.returncode == 0
    assert predict.returncode == 0, predict.stderr
    assert len(json.loads(predict.stdout)) == 6
    if fmt == "keras":
        convert, again = converted
        assert convert.returncode == 0, convert.stderr
        assert json.loads(again.stdout)["format"] == "keras"

"""Crafted inputs for the Keras, ONNX, CLI and serve paths (second review's findings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms

torch = pytest.importorskip("torch")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "modelstore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_failed_reexport_keeps_previous_onnx_with_external_data(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A re-export that fails parity leaves the previous model and its external data whole."""
    pytest.importorskip("onnxruntime")
    from modelstore.formats.onnx import export as _onnx_export

    monkeypatch.setattr(_onnx_export, "EXTERNAL_DATA_BYTES", 0)  # as if the model were over 2 GB
    x = np.random.default_rng(0).random((4, 16), dtype=np.float32)
    good = torch.nn.Linear(16, 8)
    path = tmp_path / "m.onnx"
    ms.export_onnx(good, path, sample_input=x)
    assert list(tmp_path.glob("m.onnx.*.data"))

    class Noisy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(16, 8)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.fc(v) + torch.rand_like(self.fc(v))

    with pytest.raises(ms.ExportMismatchError):
        ms.export_onnx(Noisy(), path, sample_input=x)
    np.testing.assert_allclose(
        ms.predict(ms.load(path), x),
        good(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    ms.export_onnx(torch.nn.Linear(16, 8), path, sample_input=x)
    assert len(list(tmp_path.glob("m.onnx.*.data"))) == 1  # the old data file was removed


def test_sparse_initializer_external_data_is_refused(tmp_path: Path) -> None:
    """External data in a sparse initializer is confined like any other tensor."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    values = TensorProto(name="sv", data_type=TensorProto.FLOAT, dims=[1])
    values.data_location = TensorProto.EXTERNAL
    entry = values.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    indices = helper.make_tensor("si", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [3])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    graph.sparse_initializer.append(sparse)
    path = tmp_path / "s.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert ms.scan(path).verdict == "unsafe"
    assert onnx  # imported for the helper


def test_h5_declaring_unstored_gigabytes_is_refused(tmp_path: Path) -> None:
    """An HDF5 dataset that declares far more than it stores is refused before any read."""
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("keras")
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/dense/vars/0", shape=(512, 1024, 256), dtype="f4"
        )  # 512 MiB, unwritten
        f.attrs["modelstore"] = json.dumps({"checksum": "xxh3_128:" + "0" * 32})
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ms.UnsafeModelError, match="declares"):
        ms.load(path, model=None)


@pytest.mark.slow  # seconds; the full suite runs it
def test_export_arguments(tmp_path: Path) -> None:
    """Integer samples work for float models; bad shapes, strings and bare state dicts are clear."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    xi = np.random.default_rng(0).integers(0, 5, (30, 4))
    model = LogisticRegression().fit(xi, np.arange(30) % 2)
    assert ms.export_onnx(model, tmp_path / "lr.onnx", sample_input=xi).format == "onnx"
    with pytest.raises(ms.UnsupportedModelError, match="sample_input"):
        ms.export_onnx(
            torch.nn.Linear(4, 3), tmp_path / "bad.onnx", sample_input=np.zeros((2, 5), np.float32)
        )
    with pytest.raises(ms.ArgumentError):
        ms.export_onnx(torch.nn.Linear(4, 3), tmp_path / "bad.onnx", sample_input=[[1, 2, 3, "a"]])
    ms.save(torch.nn.Linear(4, 3), tmp_path / "w.safetensors")
    with pytest.raises(ms.UnsupportedModelError, match="model="):
        ms.convert(
            tmp_path / "w.safetensors",
            tmp_path / "w.onnx",
            sample_input=np.zeros((2, 4), np.float32),
        )
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "w.onnx").exists()


def test_malformed_old_sidecar_is_replaced(tmp_path: Path) -> None:
    """A save over a file whose sidecar is malformed replaces the sidecar."""
    path = tmp_path / "m.pt"
    ms.save(torch.nn.Linear(2, 2), path)
    Path(str(path) + ".modelstore.json").write_text('{"sidecar_version": 2, "versions": 5}')
    ms.save(torch.nn.Linear(2, 2), path)
    with pytest.warns(ms.PickleWarning):
        ms.load(path)


@pytest.mark.slow
def test_cli_bad_arguments_are_one_line(tmp_path: Path) -> None:
    """--config that is not an object, --config without --model, an unwritable --out: exit 2, one line."""
    path = tmp_path / "m.safetensors"
    ms.save(torch.nn.Linear(64, 2), path)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 64), np.float32))
    for args in (
        ["--model", "torch.nn:Linear", "--config", "[1]"],
        ["--config", '{"a": 1}'],
        ["--model", "torch.nn:Linear", "--config", '{"nope": 1}'],
        [
            "--model",
            "torch.nn:Linear",
            "--config",
            '{"in_features": 64, "out_features": 2}',
            "--out",
            str(tmp_path / "missing" / "o.json"),
        ],
    ):
        proc = cli("predict", str(path), "--input", str(x), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_scan_folder_keeps_going_past_a_broken_file(tmp_path: Path) -> None:
    """One unreadable file in a folder is reported unknown; the others are still scanned."""
    keras = pytest.importorskip("keras")
    good = tmp_path / "b.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(good)
    bad = tmp_path / "a.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "[" * 100_000)
        zf.writestr("metadata.json", "{}")
    proc = cli("scan", str(tmp_path), "--json")
    verdicts = {Path(r["path"]).name: r["verdict"] for r in json.loads(proc.stdout)}
    assert verdicts == {"a.keras": "unknown", "b.keras": "safe"} and proc.returncode == 2


def test_keras_binary_labels_ragged_and_device(tmp_path: Path) -> None:
    """One sigmoid unit: proba has two columns and labels threshold at 0.5; ragged inputs and
    unusable devices are ArgumentErrors."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    model.layers[-1].set_weights([np.array([[10.0]], np.float32), np.array([0.0], np.float32)])
    path = tmp_path / "b.keras"
    ms.save(model, path, labels=["neg", "pos"])
    loaded = ms.load(path)
    x = np.array([[-1.0], [1.0]], np.float32)
    assert ms.predict(loaded, x, output="proba").shape == (2, 2)
    assert ms.predict(loaded, x, output="label") == ["neg", "pos"]
    with pytest.raises(ms.ArgumentError):
        ms.predict(loaded, [[1.0], [1.0, 2.0]])
    with pytest.raises(ms.ArgumentError):
        ms.load(path, device="cuda:7")


def test_serve_nonfinite_and_deep_json(tmp_path: Path) -> None:
    """NaN outputs are a 422, a 100k-deep body a 400, batch_size=true a 422."""
    import asyncio

    pytest.importorskip("starlette")
    httpx = pytest.importorskip("httpx")

    from modelstore.serve import create_app

    path = tmp_path / "m.safetensors"
    ms.save(torch.nn.Linear(2, 2), path)
    app = create_app(str(path), model=torch.nn.Linear(2, 2))

    async def statuses() -> list[int]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            bodies: list[Any] = [
                b'{"inputs": [[NaN, 1]]}',
                b'{"inputs": ' + b"[" * 100_000,
                json.dumps({"inputs": [[1, 2]], "batch_size": True}).encode(),
                json.dumps({"inputs": [[1, 2]]}).encode(),
            ]
            return [(await client.post("/predict", content=b)).status_code for b in bodies]

    assert asyncio.run(statuses()) == [422, 400, 422, 200]


def test_malformed_keras_configs(tmp_path: Path) -> None:
    """A .keras whose config is not an object scans unknown; an .h5 with a list model_config is damaged."""
    h5py = pytest.importorskip("h5py")
    keras = pytest.importorskip("keras")
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "[1, 2, 3]")
        zf.writestr("metadata.json", "{}")
    assert ms.scan(path).verdict == "unknown"
    h5 = tmp_path / "m.h5"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(h5)
    with h5py.File(h5, "a") as f:
        f.attrs["model_config"] = "[1, 2]"
    with pytest.raises((ms.FormatError, ms.IntegrityError)):
        ms.load(h5)

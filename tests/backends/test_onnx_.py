"""ONNX: export from torch, scikit-learn and Keras with parity checks; the onnxruntime backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.testing import BackendContract, run_python  # noqa: E402
from tests import models  # noqa: E402

X = np.random.default_rng(0).random((8, 64), dtype=np.float32)


@pytest.mark.slow
class TestOnnxContract(BackendContract):
    backend_name = "onnx"
    suffix = ".onnx"
    backend_module = "modelstore.formats.onnx.backend"
    framework_modules = ("onnx", "onnxruntime", "torch")
    rtol, atol = 1e-5, 1e-6

    def make_model(self) -> Any:
        return models.trained_net()

    def make_input(self) -> Any:
        return X

    def save_kwargs(self) -> dict[str, Any]:
        return {"sample_input": X}

    def native_save(self, model: Any, path: Path) -> None:
        import contextlib
        import warnings

        with warnings.catch_warnings(), contextlib.redirect_stdout(None):  # type: ignore[type-var]
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.from_numpy(X),),
                str(path),
                dynamo=True,
                verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )

    def native_load(self, path: Path) -> Any:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        return loaded.run(None, {loaded.get_inputs()[0].name: x})[0]


@pytest.mark.slow
def test_torch_export_records_parity_and_runs_without_torch(tmp_path: Path) -> None:
    """export_onnx checks parity on 1/7/N batches, records it, and predict needs no torch."""
    net = models.trained_net()
    path = tmp_path / "digits.onnx"
    info = ms.export_onnx(net, path, sample_input=X)
    onnx_meta = json.loads(
        {p.key: p.value for p in onnx.load(str(path)).metadata_props}["modelstore"]
    )["onnx"]
    assert onnx_meta["exporter"].startswith("torch.onnx.export")
    assert onnx_meta["parity"]["batches"] == [8, 1, 7, 8]
    assert (onnx_meta["parity"]["max_abs_diff"] < 1e-5 and onnx_meta["opset"] is None) or onnx_meta[
        "opset"
    ]
    assert (
        info.metadata["inputs"][0]["shape"][1] == 64
        and info.metadata["inputs"][0]["shape"][0] is not None
    )
    expected = ms.predict(net, X)
    np.save(tmp_path / "x.npy", X)
    proc = run_python(f"""
        import sys, numpy as np, modelstore as ms
        x = np.load({str(tmp_path / "x.npy")!r}).astype(np.float64)   # float64 is cast to the input's float32
        out = ms.predict({str(path)!r}, x, batch_size=3)
        np.save({str(tmp_path / "out.npy")!r}, out)
        print('torch' in sys.modules, 'tensorflow' in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_parity_failure_is_export_mismatch(tmp_path: Path) -> None:
    """A model whose outputs the ONNX file cannot reproduce raises ExportMismatchError."""

    class Noisy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand_like(x)

    with pytest.raises(ms.ExportMismatchError, match="max abs diff"):
        ms.export_onnx(Noisy(), tmp_path / "n.onnx", sample_input=X)
    assert not (tmp_path / "n.onnx").exists()
    info = ms.export_onnx(Noisy(), tmp_path / "n.onnx", sample_input=X, check=False)
    assert info.format == "onnx"


def test_sklearn_export_labels_and_probabilities(tmp_path: Path) -> None:
    """A classifier pipeline exports with labels and probabilities; output='label' maps names."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(iris.data, iris.target)
    path = tmp_path / "iris.onnx"
    ms.save(model, path, sample_input=iris.data[:30], labels=list(iris.target_names))
    loaded = ms.load(path)
    np.testing.assert_array_equal(ms.predict(loaded, iris.data), model.predict(iris.data))
    np.testing.assert_allclose(
        ms.predict(loaded, iris.data, output="proba"), model.predict_proba(iris.data), atol=1e-5
    )
    assert ms.predict(loaded, iris.data[:2], output="label") == ["setosa", "setosa"]
    assert ms.inspect(path).labels == list(iris.target_names)


def test_sklearn_regressor_and_convert_records_source(tmp_path: Path) -> None:
    """convert(.joblib -> .onnx) exports a regressor and records the source file's sha256."""
    import warnings

    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    xr = rng.random((50, 4))
    model = Ridge().fit(xr, xr @ np.array([1.0, 2.0, 3.0, 4.0]))
    src = tmp_path / "ridge.joblib"
    src_info = ms.save(model, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        ms.convert(src, tmp_path / "ridge.onnx", sample_input=xr[:10])
    meta = json.loads(
        {p.key: p.value for p in onnx.load(str(tmp_path / "ridge.onnx")).metadata_props}[
            "modelstore"
        ]
    )
    assert (
        meta["onnx"]["source_sha256"] == src_info.sha256
        and meta["onnx"]["source_format"] == "sklearn"
    )
    np.testing.assert_allclose(
        ms.predict(tmp_path / "ridge.onnx", xr).reshape(-1), model.predict(xr), rtol=1e-4
    )


def test_keras_export(tmp_path: Path) -> None:
    """A Keras model that was never called exports (called once on the sample) with parity."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    info = ms.export_onnx(model, tmp_path / "k.onnx", sample_input=X)
    assert info.format == "onnx"
    loaded = ms.load(tmp_path / "k.onnx")
    np.testing.assert_allclose(
        ms.predict(loaded, X), model.predict(X, verbose=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(ms.predict(loaded, X, output="proba").sum(axis=1), 1, rtol=1e-5)


def _two_input_model(path: Path) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 3])
    out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"])], "add", [a, b], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_multiple_inputs_as_dict(tmp_path: Path) -> None:
    """Several inputs are passed as a dict by name (or a tuple in order); lists are cast."""
    path = tmp_path / "add.onnx"
    _two_input_model(path)
    model = ms.load(path)
    a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
    np.testing.assert_allclose(ms.predict(model, {"a": a, "b": b}), 3.0)
    np.testing.assert_allclose(ms.predict(model, (a.tolist(), b)), 3.0)
    with pytest.raises(ms.ArgumentError, match="lack"):
        ms.predict(model, {"a": a})
    with pytest.raises(ms.ArgumentError):
        ms.predict(model, {"a": np.ones((2, 4)), "b": np.ones((2, 4))})


def test_cuda_without_provider_is_clear(tmp_path: Path) -> None:
    """device='cuda' without onnxruntime's CUDA provider says what to install."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path = tmp_path / "add.onnx"
    _two_input_model(path)
    with pytest.raises(ms.ArgumentError, match="CUDAExecutionProvider"):
        ms.load(path, device="cuda")


def _external_model(folder: Path, location: str, offset: int = 0, length: int = 12) -> Path:
    """A model whose one initializer (3 floats) is read from external data at ``location``."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w]
    )
    path = folder / "m.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


def test_external_data_inside_folder_loads(tmp_path: Path) -> None:
    """External data next to the model loads and runs."""
    (tmp_path / "w.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    path = _external_model(tmp_path, "w.bin")
    assert ms.scan(path).verdict == "safe"
    np.testing.assert_allclose(ms.predict(ms.load(path), np.zeros(3, np.float32)), [1, 2, 3])


@pytest.mark.parametrize("trick", ["dotdot", "absolute", "symlink", "hardlink", "offset"])
def test_hostile_external_data(tmp_path: Path, trick: str) -> None:
    """External data leading outside the folder, or past the end of its file, is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(b"\x00" * 12)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    location, offset = "w.bin", 0
    if trick == "dotdot":
        location = "../outside/secret.bin"
    elif trick == "absolute":
        location = str(secret)
    elif trick == "symlink":
        os.symlink(secret, model_dir / "w.bin")
    elif trick == "hardlink":
        os.link(secret, model_dir / "w.bin")
    else:
        (model_dir / "w.bin").write_bytes(b"\x00" * 12)
        offset = 8
    path = _external_model(model_dir, location, offset=offset)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and report.untrusted[0].startswith("external:")
    with pytest.raises(ms.UnsafeModelError, match="external"):
        ms.load(path)


def test_corrupt_onnx_is_format_error(tmp_path: Path) -> None:
    """Random bytes or an invalid graph named .onnx give a FormatError."""
    path = tmp_path / "bad.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ms.FormatError):
        ms.load(path)
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ms.FormatError, match="checker"):
        ms.load(path)


@pytest.mark.slow
def test_inspect_reads_the_graph(tmp_path: Path) -> None:
    """inspect: inputs/outputs, opset, producer, initializers, params; nothing runs."""
    path = tmp_path / "d.onnx"
    ms.export_onnx(models.trained_net(), path, sample_input=X)
    info = ms.inspect(path)
    md = info.metadata
    assert md["outputs"][0]["shape"][1] == 10 and md["producer"].startswith("pytorch")
    assert md["opset"]["ai.onnx"] >= 13 and md["initializers"] == 4
    assert info.num_params == 64 * 32 + 32 + 32 * 10 + 10 and not info.executes_code

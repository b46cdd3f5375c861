"""Half precision through ONNX: float16 torch models export with a parity check in float16 and
run under ``ms.predict``; bfloat16 is refused with what to do, before ONNX Runtime fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402

X = np.random.default_rng(0).random((8, 64), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("sample_dtype", [np.float16, np.float32])
def test_float16_model_exports_with_parity_in_float16(tmp_path: Path, sample_dtype: type) -> None:
    """A .half() module exports to a float16 graph; parity runs in float16 with wider, recorded tolerances."""
    net = models.trained_net().half()
    path = tmp_path / "half.onnx"
    info = ms.export_onnx(net, path, sample_input=X.astype(sample_dtype))
    assert info.metadata["inputs"][0]["dtype"] == "float16"
    assert {t.dtype for t in info.tensors} == {"float16"}
    parity = info.metadata["parity"]  # inspect shows the recorded check
    assert parity["batches"] == [8, 1, 7, 8]
    assert parity["input_dtype"] == "float16"
    assert parity["rtol"] == 1e-2 and parity["atol"] == 1e-2  # float16's, not float32's
    assert 0 < parity["max_abs_diff"] <= 1e-2
    # the file runs on plain CPU onnxruntime in float16
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": X.astype(np.float16)})[0]
    assert out.dtype == np.float16


@pytest.mark.slow
def test_predict_casts_inputs_to_the_graphs_float16(tmp_path: Path) -> None:
    """ms.predict on a float16 .onnx takes float32/float64 arrays and lists (cast to float16)."""
    net = models.trained_net().half()
    path = tmp_path / "half.onnx"
    ms.export_onnx(net, path, sample_input=X.astype(np.float16))
    with torch.inference_mode():
        want = net(torch.from_numpy(X).half()).float().numpy()
    for given in (X, X.astype(np.float64), X.tolist()):
        got = ms.predict(path, given)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, atol=1e-2)
    model = ms.load(path)
    proba = ms.predict(model, X, output="proba")
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-3)
    assert list(ms.predict(model, X, output="label")) == list(want.argmax(axis=1))


@pytest.mark.slow
def test_float32_model_with_float16_sample_exports_float32(tmp_path: Path) -> None:
    """The sample is cast to the model's dtype: a float32 module stays a float32 graph."""
    info = ms.export_onnx(
        models.trained_net(), tmp_path / "m.onnx", sample_input=X.astype(np.float16)
    )
    assert info.metadata["inputs"][0]["dtype"] == "float32"
    assert info.metadata["parity"]["rtol"] == 1e-3


@pytest.mark.parametrize("where", ["model", "sample"])
def test_bfloat16_is_refused_with_what_to_do(tmp_path: Path, where: str) -> None:
    """A bfloat16 model or sample: a ModelstoreError naming the target and the fix, no file left."""
    net = models.Net()
    sample: object = X
    if where == "model":
        net = net.bfloat16()
    else:
        sample = torch.from_numpy(X).bfloat16()
    path = tmp_path / "bf.onnx"
    with pytest.raises(ms.UnsupportedModelError) as e:
        ms.export_onnx(net, path, sample_input=sample)
    text = str(e.value)
    assert "CPU ONNX Runtime cannot run bfloat16" in text and "model.float()" in text
    assert text.startswith(str(path))
    assert list(tmp_path.iterdir()) == []

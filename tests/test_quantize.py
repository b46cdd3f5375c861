"""ms.quantize: ONNX to int8 with onnxruntime's dynamic quantizer, metadata carried over, an
accuracy check on a sample, the same gate as load on the source, and the CLI command."""

from __future__ import annotations

import io
import json
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.cli.main import main  # noqa: E402
from modelstore.formats.onnx.files import embed_metadata  # noqa: E402
from modelstore.testing import run_python  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.random((64, 64), dtype=np.float32)
LABELS = [f"digit {i}" for i in range(10)]


def mlp_graph(path: Path, *, hidden: int = 128, meta: bool = True) -> Path:
    """A 64 -> hidden -> 10 MLP written with the onnx package (MatMul, Add, Relu)."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (64, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, hidden).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (hidden, 10)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(10, np.float32), "b2")
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    if meta:  # what ms.export_onnx records, on a file ms did not export
        embed_metadata(
            path,
            {
                "format": "onnx",
                "framework": "torch",
                "labels": LABELS,
                "signature": {
                    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 64]}]
                },
                "metadata": {"dataset": "digits"},
            },
        )
    return path


def test_quantize_writes_int8_keeps_metadata_and_records_the_check(tmp_path: Path) -> None:
    """The int8 file is smaller, runs, keeps labels/signature/metadata and records the check."""
    src = mlp_graph(tmp_path / "mlp.onnx")
    dst = tmp_path / "mlp.int8.onnx"
    info = ms.quantize(src, dst, sample_input=X)
    assert info.path == str(dst) and info.format == "onnx"
    assert info.size_bytes < 0.4 * src.stat().st_size
    assert info.labels == LABELS
    assert info.signature == {
        "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 64]}]
    }
    assert info.metadata["dataset"] == "digits"
    record = info.metadata["quantization"]  # inspect shows the record
    assert record["method"] == "dynamic" and record["weight_type"] == "int8"
    assert record["integer_ops"]["MatMulInteger"] == 2
    assert record["source_sha256"] == ms.inspect(src).sha256
    assert record["source_size_bytes"] == src.stat().st_size
    acc = record["accuracy"]
    assert acc["samples"] == 64
    assert 0 < acc["max_abs_diff"] < 0.1
    assert acc["agreement"] >= 0.9
    assert acc["outputs"]["output"]["argmax_agreement"] == acc["agreement"]
    assert "notes" not in record  # onnxruntime's pre-processing nag is not passed on
    assert ms.inspect(dst).to_dict() == info.to_dict()
    # a plain onnxruntime runs it, and ms.predict maps labels through the carried list
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    raw = session.run(None, {"input": X})[0]
    np.testing.assert_array_equal(ms.predict(dst, X), raw)
    assert ms.predict(dst, X[:3], output="label") == [LABELS[i] for i in raw[:3].argmax(axis=1)]
    assert ms.scan(dst).verdict == "safe"


def test_gemm_with_constant_weight_is_quantized(tmp_path: Path) -> None:
    """torch exports Linear as Gemm(transB=1): rewritten as MatMul + Add, then quantized."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (10, 64)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["output"], name="fc", transB=1)],
        "gemm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [w, b],
        value_info=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [10, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "gemm.onnx"))
    info = ms.quantize(tmp_path / "gemm.onnx", tmp_path / "q.onnx", sample_input=X)
    record = info.metadata["quantization"]
    assert record["gemm_as_matmul"] == 1 and record["integer_ops"]["MatMulInteger"] == 1
    assert record["accuracy"]["max_abs_diff"] < 0.05
    want = X @ numpy_helper.to_array(w).T + numpy_helper.to_array(b)
    np.testing.assert_allclose(ms.predict(tmp_path / "q.onnx", X), want, atol=0.05)


def test_quantize_without_sample_and_with_options(tmp_path: Path) -> None:
    """No sample: no accuracy entry; uint8, per-channel and op_types are passed and recorded."""
    src = mlp_graph(tmp_path / "mlp.onnx", meta=False)
    info = ms.quantize(
        src, tmp_path / "q.onnx", weight_type="uint8", per_channel=True, op_types=["MatMul"]
    )
    record = info.metadata["quantization"]
    assert "accuracy" not in record
    assert (record["weight_type"], record["per_channel"], record["op_types"]) == (
        "uint8",
        True,
        ["MatMul"],
    )
    weights = [
        t
        for t in onnx.load(str(tmp_path / "q.onnx")).graph.initializer
        if t.data_type == TensorProto.UINT8
    ]
    assert weights  # uint8 weights were written
    info = ms.quantize(src, tmp_path / "q2.onnx", exclude_nodes=[])
    assert info.metadata["quantization"]["exclude_nodes"] is None


def test_thresholds_refuse_and_leave_dst_alone(tmp_path: Path) -> None:
    """max_abs_diff / min_agreement beyond the check: ExportMismatchError, the old dst intact."""
    src = mlp_graph(tmp_path / "mlp.onnx")
    dst = tmp_path / "q.onnx"
    dst.write_bytes(b"previous")
    with pytest.raises(ms.ExportMismatchError, match="beyond max_abs_diff=0"):
        ms.quantize(src, dst, sample_input=X, max_abs_diff=0)
    with pytest.raises(ms.ExportMismatchError, match="below min_agreement=1"):
        many = np.random.default_rng(5).random((2000, 64), dtype=np.float32)  # agreement 0.996
        ms.quantize(src, dst, sample_input=many, min_agreement=1.0, max_abs_diff=1)
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", "q.onnx"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quant_format": "QDQ"}, "unknown option.*quant_format=.*only dynamic"),
        ({"method": "static"}, "method='static' is not offered"),
        ({"weight_type": "int4"}, "weight_type='int4'"),
        ({"op_types": "MatMul"}, "op_types= takes a list"),
        ({"max_abs_diff": 0.1}, "judge the check on sample_input="),
        ({"sample_input": X, "min_agreement": 2}, "between 0 and 1"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    """Unknown keywords and bad values: ArgumentError naming the valid choices, nothing written."""
    src = mlp_graph(tmp_path / "mlp.onnx")
    with pytest.raises(ms.ArgumentError, match=match):
        ms.quantize(src, tmp_path / "q.onnx", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "q.onnx").exists()


def test_source_must_be_onnx_and_dst_may_be_kept(tmp_path: Path) -> None:
    """A non-ONNX source says how to export first; overwrite=False keeps an existing dst."""
    np.save(tmp_path / "a.npy", X)
    with pytest.raises(ms.ArgumentError, match="quantize takes an ONNX model.*export_onnx"):
        ms.quantize(tmp_path / "a.npy", tmp_path / "q.onnx")
    src = mlp_graph(tmp_path / "mlp.onnx")
    (tmp_path / "q.onnx").write_bytes(b"keep")
    with pytest.raises(ms.ModelExistsError):
        ms.quantize(src, tmp_path / "q.onnx", overwrite=False)
    assert (tmp_path / "q.onnx").read_bytes() == b"keep"


def test_nothing_to_quantize_is_said(tmp_path: Path) -> None:
    """A graph without MatMul/Conv/...: UnsupportedModelError listing what it has."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])],
        "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "relu.onnx"))
    with pytest.raises(ms.UnsupportedModelError, match="nothing in this graph.*graph has Relu"):
        ms.quantize(tmp_path / "relu.onnx", tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_source_goes_through_the_load_gate(tmp_path: Path) -> None:
    """External data outside the folder is refused; a tampered source fails its checksum."""
    proto = onnx.load(str(mlp_graph(tmp_path / "plain.onnx", meta=False)))
    w1 = proto.graph.initializer[0]
    w1.data_location = TensorProto.EXTERNAL
    del w1.external_data[:]
    entry = w1.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    w1.ClearField("raw_data")
    (tmp_path / "evil").mkdir()
    onnx.save(proto, str(tmp_path / "evil" / "m.onnx"))
    with pytest.raises(ms.UnsafeModelError):
        ms.quantize(tmp_path / "evil" / "m.onnx", tmp_path / "q.onnx")
    src = mlp_graph(tmp_path / "mlp.onnx")
    data = bytearray(src.read_bytes())
    i = data.index(b"b1") + 40  # a byte inside the bias initializer
    data[i] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(ms.IntegrityError):
        ms.quantize(src, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_external_data_source_gives_one_file(tmp_path: Path) -> None:
    """A source with its weights in an external data file (confined): quantized into one file."""
    proto = onnx.load(str(mlp_graph(tmp_path / "plain.onnx", meta=False)))
    (tmp_path / "ext").mkdir()
    onnx.save(
        proto,
        str(tmp_path / "ext" / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )
    assert (tmp_path / "ext" / "m.weights").is_file()
    info = ms.quantize(tmp_path / "ext" / "m.onnx", tmp_path / "q.onnx", sample_input=X)
    assert info.metadata["quantization"]["accuracy"]["agreement"] >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "plain.onnx", "q.onnx"]
    np.testing.assert_allclose(
        ms.predict(tmp_path / "q.onnx", X), ms.predict(tmp_path / "plain.onnx", X), atol=0.1
    )


def test_remote_source_and_target(tmp_path: Path) -> None:
    """URIs work on both sides (fsspec's memory filesystem)."""
    pytest.importorskip("fsspec")
    root = f"memory://q-{uuid.uuid4().hex[:10]}"
    src = mlp_graph(tmp_path / "mlp.onnx")
    import fsspec

    with fsspec.open(f"{root}/mlp.onnx", "wb") as f:
        f.write(src.read_bytes())
    info = ms.quantize(f"{root}/mlp.onnx", f"{root}/int8.onnx", sample_input=X)
    assert info.path == f"{root}/int8.onnx"
    assert info.metadata["quantization"]["accuracy"]["samples"] == 64
    with pytest.raises(ms.UnsupportedModelError, match="already quantized.*MatMulInteger"):
        ms.quantize(f"{root}/int8.onnx", tmp_path / "twice.onnx")


@pytest.mark.slow
def test_quantizer_leaves_the_root_logger_alone(tmp_path: Path) -> None:
    """onnxruntime's quantizer logs on the root logger; the call installs no handler there."""
    src = mlp_graph(tmp_path / "mlp.onnx")
    proc = run_python(f"""
        import logging, modelstore as ms
        ms.quantize({str(src)!r}, {str(tmp_path / "q.onnx")!r})
        print(len(logging.getLogger().handlers))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0"]
    assert "pre-processing" not in proc.stderr


def test_cli_quantize(tmp_path: Path) -> None:
    """`modelstore quantize SRC DST --sample x.npy` prints size, operators and the check; --json the ModelInfo."""
    src = mlp_graph(tmp_path / "mlp.onnx")
    np.save(tmp_path / "x.npy", X)
    out = io.StringIO()
    dst = tmp_path / "q.onnx"
    code = main(["quantize", str(src), str(dst), "--sample", str(tmp_path / "x.npy")], out)
    text = out.getvalue()
    assert code == 0, text
    assert "int8 ONNX" in text and "MatMulInteger x2" in text and "arg-max agreement" in text
    out = io.StringIO()
    code = main(
        [
            "quantize",
            str(src),
            str(dst),
            "--force",
            "--json",
            "--per-channel",
            "--op-types",
            "MatMul",
        ],
        out,
    )
    assert code == 0
    record = json.loads(out.getvalue())["metadata"]["quantization"]
    assert record["per_channel"] is True and record["op_types"] == ["MatMul"]
    assert main(["quantize", str(src), str(dst)], io.StringIO()) == 2  # exists, no --force


@pytest.mark.slow
def test_sklearn_classifier_labels_agree(tmp_path: Path) -> None:
    """An skl2onnx MLPClassifier (label and probability outputs): label agreement is reported."""
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((64,), max_iter=200, random_state=0).fit(x[:1200], y[:1200])
    ms.export_onnx(clf, tmp_path / "mlp.onnx", sample_input=x[:8])
    info = ms.quantize(tmp_path / "mlp.onnx", tmp_path / "q.onnx", sample_input=x[1200:])
    acc = info.metadata["quantization"]["accuracy"]
    label_output = next(e for e in acc["outputs"].values() if "agreement" in e)
    assert label_output["agreement"] >= 0.97
    assert acc["agreement"] >= 0.97
    proba = ms.predict(tmp_path / "q.onnx", x[1200:], output="proba")
    assert proba.shape == (len(x) - 1200, 10)
    assert (ms.predict(tmp_path / "q.onnx", x[1200:], output="label") == y[1200:]).mean() > 0.9

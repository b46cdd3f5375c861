"""dtype=: cast floating-point weights on save, get the saved dtypes (or another) on load."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import modelstore as ms  # noqa: E402
from modelstore.api import recorded_metadata  # noqa: E402
from tests import models  # noqa: E402


def header_dtypes(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def bn_net() -> Any:
    torch.manual_seed(0)
    net = models.BNNet().train()
    net(torch.randn(32, 8))
    return net.eval()


@pytest.fixture
def x() -> Any:
    return torch.from_numpy(np.random.default_rng(0).random((16, 64), dtype=np.float32))


@pytest.mark.parametrize(
    ("dtype", "code", "torch_dtype"),
    [
        ("float16", "F16", "float16"),
        ("bfloat16", "BF16", "bfloat16"),
        ("fp16", "F16", "float16"),
    ],
)
def test_save_casts_and_load_restores(
    tmp_path: Path, x: Any, dtype: str, code: str, torch_dtype: str
) -> None:
    """Half the bytes on disk; Net gets float32 back and predicts within 1e-2."""
    net = models.trained_net()
    full = tmp_path / "full.safetensors"
    half = tmp_path / "half.safetensors"
    ms.save(net, full)
    info = ms.save(net, half, dtype=dtype)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert set(header_dtypes(half).values()) == {code}
    assert {t.dtype for t in info.tensors} == {torch_dtype}
    assert recorded_metadata(half)["cast"] == {"to": torch_dtype, "from": "float32"}

    loaded = ms.load(half, model=models.Net)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=1e-2, rtol=0)
    instance = models.Net()
    ms.load(half, model=instance)
    assert instance.fc1.weight.dtype == torch.float32
    built = ms.load(half, trust=True)  # the recorded class, built in its own dtype
    assert built.fc2.weight.dtype == torch.float32

    sd = ms.load(half)
    assert {t.dtype for t in sd.values()} == {torch.float32}
    torch.testing.assert_close(sd["fc1.weight"], net.fc1.weight, atol=1e-2, rtol=0)
    as_stored = ms.load(half, dtype=dtype)
    assert {t.dtype for t in as_stored.values()} == {getattr(torch, torch_dtype)}
    plain = safetensors_torch.load_file(str(half))  # the package's own loader
    assert {t.dtype for t in plain.values()} == {getattr(torch, torch_dtype)}


def test_load_dtype_converts_modules_and_state_dicts(tmp_path: Path, x: Any) -> None:
    net = models.trained_net()
    path = tmp_path / "m.safetensors"
    ms.save(net, path)
    half = ms.load(path, model=models.Net, dtype="float16")
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert {t.dtype for t in ms.load(path, dtype=torch.bfloat16).values()} == {torch.bfloat16}
    assert {t.dtype for t in ms.load(path).values()} == {torch.float32}


def test_integer_buffers_are_left_alone(tmp_path: Path) -> None:
    """BatchNorm's num_batches_tracked stays int64; its running stats are cast."""
    net = bn_net()
    path = tmp_path / "bn.safetensors"
    ms.save(net, path, dtype="float16")
    codes = header_dtypes(path)
    assert codes["bn.num_batches_tracked"] == "I64"
    assert codes["bn.running_mean"] == "F16" and codes["fc.weight"] == "F16"
    loaded = ms.load(path, model=models.BNNet)
    assert (
        loaded.bn.num_batches_tracked.dtype == torch.int64
        and loaded.bn.num_batches_tracked.item() == 1
    )
    assert loaded.bn.running_var.dtype == torch.float32
    xb = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(xb), net(xb), atol=1e-2, rtol=1e-2)
    sd = ms.load(path, dtype="float16")
    assert sd["bn.num_batches_tracked"].dtype == torch.int64


def test_tied_weights_stay_tied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lm = models.TiedLM()
    path = tmp_path / "lm.safetensors"
    ms.save(lm, path, dtype="bfloat16")
    assert set(header_dtypes(path)) == {"emb.weight"}  # cast once, stored once
    loaded = ms.load(path, model=models.TiedLM)
    assert loaded.head.weight is loaded.emb.weight and loaded.emb.weight.dtype == torch.float32
    sd = ms.load(path)
    assert sd["head.weight"] is sd["emb.weight"] and sd["emb.weight"].dtype == torch.float32


def test_torch_files_cast_too(tmp_path: Path, x: Any) -> None:
    net = models.trained_net()
    path = tmp_path / "m.pt"
    ms.save(net, path, dtype="float16")
    raw = torch.load(path, weights_only=True)
    assert {t.dtype for t in raw.values()} == {torch.float16}
    with pytest.warns(ms.PickleWarning):
        loaded = ms.load(path, model=models.Net)
    assert loaded.fc1.weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=1e-2, rtol=0)
    sd = ms.load(path)  # the PickleWarning came once for this file, above
    assert {t.dtype for t in sd.values()} == {torch.float32}
    sd16 = ms.load(path, dtype="float16")
    assert {t.dtype for t in sd16.values()} == {torch.float16}


def test_mixed_dtypes_are_recorded_per_tensor(tmp_path: Path) -> None:
    sd = {"a": torch.randn(4, dtype=torch.float64), "b": torch.randn(4), "ids": torch.arange(4)}
    path = tmp_path / "mixed.safetensors"
    ms.save(sd, path, dtype="float16")
    assert recorded_metadata(path)["cast"] == {
        "to": "float16",
        "from": {"a": "float64", "b": "float32"},
    }
    back = ms.load(path)
    assert back["a"].dtype == torch.float64 and back["b"].dtype == torch.float32
    assert back["ids"].dtype == torch.int64 and torch.equal(back["ids"], sd["ids"])
    torch.testing.assert_close(back["a"], sd["a"], atol=1e-2, rtol=1e-2)


def test_the_model_passed_in_is_not_changed(tmp_path: Path) -> None:
    net = models.trained_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ms.save(net, tmp_path / "m.safetensors", dtype="float16")
    assert all(
        v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in net.state_dict().items()
    )


def test_dtype_with_shards(tmp_path: Path, x: Any) -> None:
    net = models.trained_net(hidden=128)
    ms.save(net, tmp_path / "full", max_shard_size="10KB")
    info = ms.save(
        net, tmp_path / "half", max_shard_size="10KB", dtype="bfloat16", config={"hidden": 128}
    )
    full_total = json.loads((tmp_path / "full" / "model.safetensors.index.json").read_text())[
        "metadata"
    ]["total_size"]
    index = json.loads(Path(info.path).read_text())
    assert index["metadata"]["total_size"] * 2 == full_total
    assert index["metadata"]["modelstore"]["cast"] == {"to": "bfloat16", "from": "float32"}
    assert {t.dtype for t in info.tensors} == {"bfloat16"}
    loaded = ms.load(tmp_path / "half", model=models.Net)
    assert loaded.fc1.weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=5e-2, rtol=0)
    assert {t.dtype for t in ms.load(tmp_path / "half").values()} == {torch.float32}
    assert {t.dtype for t in ms.load(tmp_path / "half", dtype="bfloat16").values()} == {
        torch.bfloat16
    }
    half_module = ms.load(tmp_path / "half", model=models.Net, dtype="float16")
    assert half_module.fc2.bias.dtype == torch.float16


@pytest.mark.parametrize("bad", ["int8", "float17", "", 3, None.__class__])
def test_invalid_dtypes_are_argument_errors(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "m.safetensors"
    with pytest.raises(ms.ArgumentError, match="dtype"):
        ms.save(models.trained_net(), path, dtype=bad)
    assert not path.exists()
    ms.save(models.trained_net(), path)
    with pytest.raises(ms.ArgumentError, match="dtype"):
        ms.load(path, dtype=bad)
    ms.save(models.trained_net(), tmp_path / "s", max_shard_size="10KB")
    with pytest.raises(ms.ArgumentError, match="dtype"):
        ms.load(tmp_path / "s", dtype=bad)


def test_dtype_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    linear = pytest.importorskip("sklearn.linear_model")
    X, y = sklearn_datasets.load_iris(return_X_y=True)
    clf = linear.LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(ms.ArgumentError, match="dtype"):
        ms.save(clf, tmp_path / "clf.joblib", dtype="float16")
    assert not (tmp_path / "clf.joblib").exists()
    ms.save(clf, tmp_path / "clf.joblib")
    with pytest.raises(ms.ArgumentError, match="dtype"):  # refused before anything is unpickled
        ms.load(tmp_path / "clf.joblib", dtype="float16")

    checkpoint = {"model": models.trained_net().state_dict(), "epoch": 3}
    with pytest.raises(ms.ArgumentError, match="checkpoint"):
        ms.save(checkpoint, tmp_path / "ckpt.pt", dtype="float16")
    ms.save(checkpoint, tmp_path / "ckpt.pt")
    with pytest.raises(
        ms.ArgumentError, match="checkpoint"
    ):  # no PickleWarning: nothing was loaded
        ms.load(tmp_path / "ckpt.pt", dtype="float16")
    with pytest.raises(ms.ArgumentError):
        ms.save(
            models.trained_net(),
            tmp_path / "m.onnx",
            dtype="float16",
            sample_input=np.zeros((1, 64), np.float32),
        )


def test_malformed_cast_metadata_is_a_format_error(tmp_path: Path) -> None:
    from tests.backends.test_safetensors_ import rewrite_header

    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path, dtype="float16")

    def edit(h: dict[str, Any]) -> None:
        meta = json.loads(h["__metadata__"]["modelstore"])
        meta["cast"] = {"to": "float16", "from": ["os.system"]}
        h["__metadata__"]["modelstore"] = json.dumps(meta)
        del h["__metadata__"]["modelstore.checksum"]

    rewrite_header(path, edit)
    with pytest.raises(ms.FormatError, match="cast"):
        ms.load(path)

    def edit2(h: dict[str, Any]) -> None:
        meta = json.loads(h["__metadata__"]["modelstore"])
        meta["cast"] = {
            "to": "float16",
            "from": "load",
        }  # not a dtype: ignored, never looked up as code
        h["__metadata__"]["modelstore"] = json.dumps(meta)

    rewrite_header(path, edit2)
    assert {t.dtype for t in ms.load(path).values()} == {torch.float16}

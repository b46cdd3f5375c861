"""safetensors backend: the contract suite plus what is particular to it."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import modelstore as ms  # noqa: E402
from modelstore.formats.safetensors.backend import CHECKSUM_KEY, META_KEY  # noqa: E402
from modelstore.testing import BackendContract  # noqa: E402
from tests import models  # noqa: E402
from tests.backends.torch_hooks import NetHooks  # noqa: E402


def rewrite_header(path: Path, edit: Any) -> None:
    """Apply ``edit(header_dict)`` and write the file back with a re-sized header."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-(8 + len(blob)) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n :])


class TestSafetensorsContract(NetHooks, BackendContract):
    backend_name = "safetensors"
    suffix = ".safetensors"
    backend_module = "modelstore.formats.safetensors.backend"
    framework_modules = ("torch", "safetensors")

    def native_save(self, model: Any, path: Path) -> None:
        safetensors_torch.save_model(model, str(path))

    def native_load(self, path: Path) -> Any:
        net = models.Net()
        net.load_state_dict(safetensors_torch.load_file(str(path)))
        return net.eval()

    def set_recorded_class(self, path: Path, class_path: str) -> None:
        def edit(h: dict[str, Any]) -> None:
            meta = json.loads(h["__metadata__"][META_KEY])
            meta["model_class"] = class_path
            h["__metadata__"][META_KEY] = json.dumps(meta)

        rewrite_header(path, edit)

    def test_recorded_class_imported_only_with_trust(self, tmp_path: Path) -> None:
        """load(path) returns a state dict; trust=True builds the recorded class."""
        path = tmp_path / "m.safetensors"
        ms.save(models.trained_net(hidden=8), path, config={"hidden": 8})
        sd = ms.load(path)
        assert isinstance(sd, dict) and set(sd) == {
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
        }
        net = ms.load(path, trust=True)
        assert isinstance(net, models.Net) and net.fc1.out_features == 8 and not net.training


def test_module_is_built_on_meta_device_without_random_init(tmp_path: Path) -> None:
    """load(model=Net) constructs Net on the meta device, then assigns the file's tensors."""
    path = tmp_path / "m.safetensors"
    net = models.trained_net(hidden=16)
    ms.save(net, path, config={"hidden": 16})
    models.BUILT_ON.clear()
    loaded = ms.load(path, model=models.Net)
    assert models.BUILT_ON == ["meta"]
    assert loaded.fc1.weight.device.type == "cpu" and not loaded.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


def test_config_and_labels_round_trip(tmp_path: Path) -> None:
    """config, labels, metadata and signature travel in the header and show in inspect."""
    path = tmp_path / "m.safetensors"
    ms.save(
        models.trained_net(hidden=12),
        path,
        config={"hidden": 12},
        labels=list("abcdefghij"),
        metadata={"accuracy": 0.97},
        sample_input=torch.zeros(4, 64),
    )
    info = ms.inspect(path)
    assert info.labels == list("abcdefghij")
    assert info.metadata["accuracy"] == 0.97
    assert info.signature == {
        "inputs": [{"name": "input_0", "shape": [None, 64], "dtype": "float32"}]
    }
    assert info.num_params == 64 * 12 + 12 + 12 * 10 + 10
    assert not info.executes_code and info.globals == []
    assert {t.name: t.shape for t in info.tensors}["fc1.weight"] == (12, 64)
    loaded = ms.load(path, model=models.Net)
    assert loaded.fc1.out_features == 12


def test_tied_weights_saved_once_and_retied(tmp_path: Path) -> None:
    """Shared tensors are stored once and re-tied on load (same Parameter object)."""
    path = tmp_path / "lm.safetensors"
    lm = models.TiedLM()
    ms.save(lm, path)
    names = [t.name for t in ms.inspect(path).tensors]
    assert len(names) == 1
    loaded = ms.load(path, model=models.TiedLM)
    assert loaded.head.weight is loaded.emb.weight
    ids = torch.arange(10)
    torch.testing.assert_close(loaded(ids), lm(ids))
    # the file from safetensors' own save_model (which drops one tied name) loads too
    foreign = tmp_path / "lm_foreign.safetensors"
    safetensors_torch.save_model(lm, str(foreign))
    again = ms.load(foreign, model=models.TiedLM)
    assert again.head.weight is again.emb.weight
    torch.testing.assert_close(again(ids), lm(ids))


def test_non_persistent_buffers_and_batchnorm(tmp_path: Path) -> None:
    """Modules with buffers absent from the state dict still load correctly."""
    torch.manual_seed(0)
    net = models.BNNet()
    net.train()
    net(torch.randn(32, 8))
    net.eval()
    path = tmp_path / "bn.safetensors"
    ms.save(net, path)
    loaded = ms.load(path, model=models.BNNet)
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded(x), net(x))


def test_fills_an_existing_instance(tmp_path: Path) -> None:
    """model=instance copies the weights into that very object."""
    path = tmp_path / "m.safetensors"
    src = models.trained_net(seed=3)
    ms.save(src, path)
    target = models.Net()
    out = ms.load(path, model=target)
    assert out is target
    torch.testing.assert_close(target.fc2.bias, src.fc2.bias)


def test_architecture_mismatch_lists_keys(tmp_path: Path) -> None:
    """Wrong class: the error lists missing, unexpected and mis-shaped keys."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(hidden=16), path)  # no config recorded: Net() has hidden=32
    with pytest.raises(ms.ArchitectureMismatchError) as e:
        ms.load(path, model=models.Net)
    assert "fc1.weight: file (16, 64) vs model (32, 64)" in str(e.value)
    assert str(path) in str(e.value)
    assert set(e.value.mismatched[0:1])
    with pytest.raises(ms.ArchitectureMismatchError) as e:
        ms.load(path, model=models.BNNet)
    assert "bn.running_mean" in e.value.missing and "fc1.weight" in e.value.unexpected


def test_strict_false_loads_what_matches(tmp_path: Path) -> None:
    """strict=False loads matching keys, warns about the rest, keeps the model usable."""
    path = tmp_path / "m.safetensors"
    src = models.trained_net(hidden=32)
    sd = src.state_dict()
    del sd["fc2.bias"]
    sd["extra"] = torch.zeros(3)
    ms.save(sd, path)
    with pytest.warns(ms.ArchitectureMismatchWarning, match="fc2.bias"):
        net = ms.load(path, model=models.Net, strict=False)
    torch.testing.assert_close(net.fc1.weight, src.fc1.weight)
    assert not net.fc2.bias.is_meta
    assert net(torch.zeros(1, 64)).shape == (1, 10)


def test_bad_config_is_architecture_error(tmp_path: Path) -> None:
    """A recorded config the class does not accept raises ArchitectureMismatchError."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path, config={"width": 3})
    with pytest.raises(ms.ArchitectureMismatchError, match="width"):
        ms.load(path, model=models.Net)


def test_dtypes_round_trip(tmp_path: Path) -> None:
    """Every common dtype, including bfloat16 and empty tensors, survives a round trip."""
    sd = {
        "f16": torch.randn(3, 2).half(),
        "bf16": torch.randn(5).bfloat16(),
        "i64": torch.arange(7),
        "u8": torch.arange(4, dtype=torch.uint8),
        "b": torch.tensor([True, False]),
        "f64": torch.randn(2, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }
    path = tmp_path / "d.safetensors"
    ms.save(sd, path)
    out = ms.load(path)
    for k, v in sd.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        torch.testing.assert_close(out[k], v, rtol=0, atol=0)
    theirs = safetensors_torch.load_file(str(path))
    for k, v in sd.items():
        torch.testing.assert_close(theirs[k], v, rtol=0, atol=0)


def test_header_edit_is_caught_by_checksum(tmp_path: Path) -> None:
    """A consistent edit to the header (renamed tensor, changed labels) fails verification."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path, labels=list("0123456789"))

    def edit(h: dict[str, Any]) -> None:
        meta = json.loads(h["__metadata__"][META_KEY])
        meta["labels"] = list("9876543210")
        h["__metadata__"][META_KEY] = json.dumps(meta)

    rewrite_header(path, edit)
    with pytest.raises(ms.IntegrityError, match="checksum"):
        ms.load(path, model=models.Net)
    assert isinstance(ms.load(path, model=models.Net, verify=False), models.Net)


def test_metadata_checksum_key_is_present(tmp_path: Path) -> None:
    """The header carries format=pt, modelstore metadata and an xxh3 checksum."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)
    with safetensors_torch.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and META_KEY in meta
    assert meta[CHECKSUM_KEY].startswith("xxh3_128:")


def test_device_cpu_and_unavailable_cuda(tmp_path: Path) -> None:
    """device='cpu' works; device='cuda' without CUDA is a clear ArgumentError."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)
    assert ms.load(path, model=models.Net, device="cpu").fc1.weight.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ms.ArgumentError, match="CUDA is not available"):
            ms.load(path, model=models.Net, device="cuda")


def test_nested_checkpoint_cannot_be_safetensors(tmp_path: Path) -> None:
    """A nested checkpoint dict is refused for .safetensors with advice to use .pt."""
    ckpt = {"model": models.trained_net().state_dict(), "epoch": 1}
    with pytest.raises(ms.UnsupportedModelError, match=r"\.pt"):
        ms.save(ckpt, tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_checksum_written_after_the_tensors_is_the_one_computed_before(
    tmp_path: Path,
) -> None:
    """ms.save writes the header with a placeholder and puts the checksum in its place once
    the tensors are written (hashed meanwhile): the file is byte for byte what writing the
    checksum first gives, safetensors reads it, and the checksum verifies."""
    from modelstore.formats.safetensors.write import savable, write_tensors

    net = models.trained_net()
    tensors, _ = savable(net, "")
    meta = {"format": "pt", "x": "y" * 100}
    late = write_tensors(tmp_path / "after.safetensors", tensors, meta, later=True)
    first = write_tensors(tmp_path / "before.safetensors", tensors, meta)
    after = (tmp_path / "after.safetensors").read_bytes()
    assert after == (tmp_path / "before.safetensors").read_bytes()
    pending = late.sha256
    assert not isinstance(pending, str)
    assert pending() == first.sha256 == hashlib.sha256(after).hexdigest()
    assert b'"' + CHECKSUM_KEY.encode() + b'":"xxh3_128:' in after
    loaded = safetensors_torch.load_file(str(tmp_path / "after.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    path = tmp_path / "m.safetensors"
    info = ms.save(net, path)
    assert info.sha256 == ms.inspect(path).sha256
    assert isinstance(ms.load(path, model=models.Net), models.Net)


def test_a_tensor_named_like_the_header_metadata_is_refused(tmp_path: Path) -> None:
    """A tensor named ``__metadata__`` was overwritten by the header's metadata: the save
    succeeded and the file could not be read back. It is refused, with what to do."""
    sd = {"__metadata__": torch.zeros(2), "a": torch.ones(3)}
    with pytest.raises(ms.UnsupportedModelError, match="rename that tensor, or save as .pt"):
        ms.save(sd, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []
    ms.save(sd, tmp_path / "m.pt")
    with pytest.warns(ms.PickleWarning):
        assert torch.equal(ms.load(tmp_path / "m.pt")["__metadata__"], torch.zeros(2))

"""torch backend (.pt/.pth): the contract suite plus checkpoints, trust and legacy files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.testing import BackendContract, run_python  # noqa: E402
from tests import models  # noqa: E402
from tests.backends.torch_hooks import NetHooks  # noqa: E402


class Payload:
    """Unpickling this runs ``os.system`` - harmless here: it only creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class TestTorchContract(NetHooks, BackendContract):
    backend_name = "torch"
    suffix = ".pth"
    backend_module = "modelstore.formats.torch.backend"
    framework_modules = ("torch",)

    def native_save(self, model: Any, path: Path) -> None:
        torch.save(model.state_dict(), path)

    def native_load(self, path: Path) -> Any:
        net = models.Net()
        net.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        return net.eval()

    def write_hostile(self, path: Path, marker: Path) -> bool:
        torch.save({"weights": torch.zeros(2), "x": Payload(marker)}, path)
        return True


def test_load_warns_pickle_and_uses_sidecar(tmp_path: Path) -> None:
    """A .pt load emits PickleWarning; metadata and checksum live in PATH.modelstore.json."""
    path = tmp_path / "m.pt"
    ms.save(models.trained_net(hidden=8), path, config={"hidden": 8}, labels=list("0123456789"))
    side = tmp_path / "m.pt.modelstore.json"
    data = json.loads(side.read_text())
    assert data["sidecar_version"] == 2 and len(data["versions"]) == 1
    meta = data["versions"][0]
    assert meta["config"] == {"hidden": 8} and meta["checksum"].startswith("xxh3_128:")
    assert meta["model_class"] == "tests.models:Net"
    with pytest.warns(ms.PickleWarning):
        net = ms.load(path, model=models.Net)
    assert net.fc1.out_features == 8
    assert ms.inspect(path).labels == list("0123456789")


def test_whole_pickled_module_is_refused_with_advice(tmp_path: Path) -> None:
    """torch.save(model) is refused; the message names the class, trust= and safetensors."""
    path = tmp_path / "whole.pt"
    torch.save(models.trained_net(), path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    text = str(e.value)
    assert "tests.models.Net" in text and "trust=" in text and "safetensors" in text
    assert "tests.models.Net" in e.value.untrusted
    with pytest.warns(ms.PickleWarning):
        net = ms.load(path, trust=True)
    assert isinstance(net, models.Net) and not net.training
    with pytest.warns(ms.PickleWarning):
        net = ms.load(path, trust=e.value.untrusted)
    assert isinstance(net, models.Net)


def test_hostile_pickle_in_torch_zip_never_runs(tmp_path: Path) -> None:
    """os.system inside a torch zip is refused by the scan; the marker is never created."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "p": Payload(marker)}, path)
    with pytest.raises(ms.UnsafeModelError, match="posix.system|os.system"):
        ms.load(path)
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path, trust=["collections.OrderedDict"])
    report = ms.scan(path)
    assert report.verdict == "unsafe" and any("system" in g for g in report.untrusted)
    info = ms.inspect(path)
    assert info.executes_code and any("system" in g for g in info.globals)
    assert not marker.exists()


def test_checkpoint_resumes_training(tmp_path: Path) -> None:
    """{"model", "optimizer", "epoch"} saves and loads; the optimizer resumes where it was."""
    torch.manual_seed(0)
    net = models.Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    path = tmp_path / "ckpt.pt"
    ms.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    assert ms.inspect(path).metadata == {"epoch": 3}
    with pytest.warns(ms.PickleWarning):
        ckpt = ms.load(path)
    assert ckpt["epoch"] == 3
    net2 = models.Net()
    net2.load_state_dict(ckpt["model"])
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.state_dict()["state"][0]["step"].item() == 3
    # one more step on both gives identical weights
    for n, o in ((net, opt), (net2, opt2)):
        n.train()
        torch.manual_seed(1)
        o.zero_grad()
        torch.nn.functional.cross_entropy(n(x), y).backward()
        o.step()
    torch.testing.assert_close(net2.fc1.weight, net.fc1.weight)
    # model= picks the weights out of the checkpoint
    net3 = ms.load(path, model=models.Net)  # the same file: it warned once already
    torch.testing.assert_close(net3.fc2.bias, ckpt["model"]["fc2.bias"], rtol=0, atol=0)


def test_checkpoint_with_numpy_scalar_is_refused_at_save(tmp_path: Path) -> None:
    """Saving something only trust= could load again is refused, and nothing is written."""
    path = tmp_path / "bad.pt"
    with pytest.raises(ms.UnsupportedModelError, match="numpy"):
        ms.save({"w": torch.zeros(1), "acc": np.float64(0.5)}, path)
    assert list(tmp_path.iterdir()) == []


def test_legacy_torch_format_inspects_and_loads(tmp_path: Path) -> None:
    """A pre-1.6 (non-zip) torch.save file is scanned, inspected and loaded."""
    net = models.trained_net()
    path = tmp_path / "legacy.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    assert ms.scan(path).verdict == "safe"
    info = ms.inspect(path)
    assert {t.name for t in info.tensors} == set(net.state_dict())
    with pytest.warns(ms.PickleWarning):
        loaded = ms.load(path, model=models.Net)
    torch.testing.assert_close(loaded.fc1.weight, net.fc1.weight)


def test_inspect_never_imports_torch(tmp_path: Path) -> None:
    """inspect and scan of a .pt read opcodes only: torch stays unimported."""
    path = tmp_path / "m.pth"
    torch.save(models.trained_net().state_dict(), path)
    proc = run_python(f"""
        import sys, modelstore as ms
        info = ms.inspect({str(path)!r}); rep = ms.scan({str(path)!r})
        print(info.num_params, rep.verdict, 'torch' in sys.modules, 'numpy' in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(64 * 32 + 32 + 32 * 10 + 10), "safe", "False", "False"]


def test_plain_load_returns_state_dict(tmp_path: Path) -> None:
    """load(path) of a state dict .pth gives the dict; device moves it."""
    path = tmp_path / "sd.pth"
    torch.save(models.trained_net().state_dict(), path)
    with pytest.warns(ms.PickleWarning):
        sd = ms.load(path, device="cpu")
    assert set(sd) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_convert_pth_to_safetensors(tmp_path: Path) -> None:
    """convert() turns a .pth into a .safetensors that loads into the same module."""
    net = models.trained_net(hidden=8)
    src = tmp_path / "w.pth"
    ms.save(net, src, config={"hidden": 8})
    with pytest.warns(ms.PickleWarning):
        info = ms.convert(src, tmp_path / "w.safetensors")
    assert info.format == "safetensors" and not info.executes_code
    loaded = ms.load(tmp_path / "w.safetensors", model=models.Net)
    torch.testing.assert_close(loaded.fc1.weight, net.fc1.weight)


def test_sidecar_stale_after_foreign_overwrite(tmp_path: Path) -> None:
    """A .pt replaced by another tool next to an old sidecar is reported as a stale sidecar
    (the file itself is whole), not as damage, and the new weights load (issue 14, item 9)."""
    path = tmp_path / "m.pt"
    ms.save(models.trained_net(seed=1), path)
    new = models.trained_net(seed=2)
    torch.save(new.state_dict(), path)
    with (
        pytest.warns(ms.MetadataWarning, match="rewritten by another tool"),
        pytest.warns(ms.PickleWarning),
    ):
        loaded = ms.load(path, model=models.Net)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), new.state_dict().values())
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        assert isinstance(ms.load(path, model=models.Net, verify=False), models.Net)

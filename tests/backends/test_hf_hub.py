"""Hugging Face folders without transformers (quick): a PyTorchModelHubMixin folder, and
huggingface_hub's sharded .bin checkpoints, every shard through the pickle gate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
hub = pytest.importorskip("huggingface_hub")

import modelstore as ms  # noqa: E402

from ..hostile import Reduce, py_touch  # noqa: E402


class HubNet(torch.nn.Module, hub.PyTorchModelHubMixin):  # type: ignore[misc]
    def __init__(self, hidden: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(5, hidden)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x: Any) -> Any:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.slow  # seconds; the full suite runs it
def test_hub_mixin_builds_from_its_config(tmp_path: Path) -> None:
    """load(folder, model=HubNet) takes hidden=7 from config.json; ms.save of a mixin writes a
    folder from_pretrained reads; inspect lists the folder's files."""
    torch.manual_seed(0)
    net = HubNet(hidden=7).eval()
    net.save_pretrained(tmp_path / "hub")
    x = torch.randn(2, 5)
    loaded = ms.load(tmp_path / "hub", model=HubNet)
    assert loaded.fc1.out_features == 7 and torch.equal(loaded(x), net(x))
    assert set(ms.inspect(tmp_path / "hub").files) >= {"config.json", "model.safetensors"}
    ms.save(net, tmp_path / "ours", labels=["a", "b", "c"])
    assert torch.equal(HubNet.from_pretrained(tmp_path / "ours")(x), net(x))
    assert ms.inspect(tmp_path / "ours").labels == ["a", "b", "c"]


def _bin_folder(tmp_path: Path) -> tuple[HubNet, Path]:
    torch.manual_seed(1)
    net = HubNet(hidden=64).eval()
    folder = tmp_path / "bin"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hub.save_torch_state_dict(
            net.state_dict(), folder, safe_serialization=False, max_shard_size="1KB"
        )
    (folder / "config.json").write_text(json.dumps({"hidden": 64}))
    return net, folder


def test_sharded_bin_folder_loads(tmp_path: Path) -> None:
    """pytorch_model.bin.index.json and its shards: inspect, scan, load with the config."""
    net, folder = _bin_folder(tmp_path)
    assert len(list(folder.glob("pytorch_model-*.bin"))) > 1
    info = ms.inspect(folder)
    assert info.format == "torch" and info.num_params == sum(p.numel() for p in net.parameters())
    assert info.metadata["hf_config"] == {"hidden": 64}
    assert ms.scan(folder).verdict == "safe"
    with pytest.warns(ms.PickleWarning):
        loaded = ms.load(folder, model=HubNet)
    x = torch.randn(3, 5)
    assert torch.equal(loaded(x), net(x))


def test_pickle_in_one_shard_is_refused(tmp_path: Path) -> None:
    """A shard carrying code is refused by load (named in the scan) and never runs."""
    _, folder = _bin_folder(tmp_path)
    marker = tmp_path / "marker"
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    sd = torch.load(shard, weights_only=True)
    sd["payload"] = Reduce(exec, py_touch(marker))
    torch.save(sd, shard)
    with pytest.raises(ms.UnsafeModelError, match="builtins.exec"):
        ms.load(folder)
    report = ms.scan(folder)
    assert report.verdict == "unsafe" and any(shard.name in f.reason for f in report.findings)
    assert not marker.exists()


def test_auto_map_in_a_mixin_config_is_refused(tmp_path: Path) -> None:
    net = HubNet()
    net.save_pretrained(tmp_path / "hub")
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Model"}
    (tmp_path / "hub" / "config.json").write_text(json.dumps(config))
    assert ms.scan(tmp_path / "hub").verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="auto_map"):
        ms.load(tmp_path / "hub", model=HubNet)

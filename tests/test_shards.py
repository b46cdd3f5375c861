"""Sharded safetensors checkpoints: round trips, path rules, hostile indexes, HF interop."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.api import recorded_metadata  # noqa: E402
from modelstore.formats.safetensors import index as _shards  # noqa: E402
from modelstore.pipeline import choose  # noqa: E402
from tests import models  # noqa: E402

LIMIT = "20KB"  # a 64x64 Linear is 16.6 kB: one layer per shard


class Deep(nn.Module):
    """A few 64-wide Linear layers: about 70 kB of float32 weights."""

    def __init__(self, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        out: torch.Tensor = self.head(x)
        return out


class TiedDeep(nn.Module):
    """An embedding tied to the output head, with a layer between (two shards' worth)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(400, 16)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 400, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.relu(self.mid(self.emb(ids))))
        return out


def deep(seed: int = 0, **kw: Any) -> Deep:
    torch.manual_seed(seed)
    return Deep(**kw).eval()


def x_in() -> torch.Tensor:
    return torch.randn(5, 64, generator=torch.Generator().manual_seed(1))


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def index_of(folder: Path, name: str = "model.safetensors.index.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / name).read_text())
    return data


def shard_names(folder: Path, prefix: str = "model") -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix + "-"))


def write_index(
    folder: Path,
    weight_map: dict[str, str],
    metadata: Any = None,
    name: str = "model.safetensors.index.json",
) -> Path:
    path = folder / name
    data: dict[str, Any] = {"weight_map": weight_map}
    if metadata is not None:
        data["metadata"] = metadata
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Deep, Path, ms.ModelInfo]:
    net = deep()
    folder = tmp_path / "ckpt"
    info = ms.save(
        net,
        folder,
        max_shard_size=LIMIT,
        config={"width": 64, "depth": 4},
        metadata={"run": "a1"},
        labels=list("0123456789"),
    )
    return net, folder, info


# -- sizes and path rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500MB", 500 * 10**6),
        ("2GB", 2 * 10**9),
        ("1.5GiB", int(1.5 * 2**30)),
        ("10KB", 10_000),
        (" 3 mb", 3 * 10**6),
        ("64KiB", 65536),
        ("1000", 1000),
        (4096, 4096),
    ],
)
def test_shard_sizes_parse_like_hugging_face(text: Any, expected: int) -> None:
    """GB is 10**9 (as huggingface_hub counts), GiB 2**30; ints are bytes."""
    assert _shards.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["abc", "10XB", "0KB", 0, -5, True, 1.5, "", None])
def test_bad_shard_sizes_are_argument_errors(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ms.ArgumentError):
        _shards.parse_size(bad)
    if bad is not None:
        with pytest.raises(ms.ArgumentError):
            ms.save(deep(), tmp_path / "x", max_shard_size=bad)


def test_round_trip_in_three_or_more_shards(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    """A folder of HF-named shards plus an index; module and state-dict loads match."""
    net, folder, info = saved
    names = shard_names(folder)
    assert len(names) >= 3
    assert names == [
        f"model-{i:05d}-of-{len(names):05d}.safetensors" for i in range(1, len(names) + 1)
    ]
    assert info.path == str(folder / "model.safetensors.index.json")
    loaded = ms.load(folder, model=Deep)
    assert not loaded.training
    torch.testing.assert_close(loaded(x_in()), net(x_in()), rtol=0, atol=0)
    assert same_weights(ms.load(folder), net.state_dict())
    assert same_weights(ms.load(folder / "model.safetensors.index.json"), net.state_dict())
    # no shard holds more than the limit, unless a single tensor does
    for name in names:
        tensors = safetensors_torch.load_file(str(folder / name))
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert nbytes <= 20_000 or len(tensors) == 1


def test_index_layout_is_hugging_face_compatible(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    """metadata.total_size + weight_map as HF writes them; modelstore's metadata and one
    record (checksum, sha256, size) per shard beside them; shards carry format=pt."""
    net, folder, _ = saved
    index = index_of(folder)
    sd = net.state_dict()
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    assert set(index["weight_map"]) == set(sd)
    meta = index["metadata"]["modelstore"]
    assert meta["model_class"] == "tests.test_shards:Deep"
    assert meta["config"] == {"width": 64, "depth": 4}
    assert meta["labels"] == list("0123456789") and meta["metadata"] == {"run": "a1"}
    records = index["metadata"]["shards"]
    assert sorted(records) == shard_names(folder)
    for name, rec in records.items():
        data = (folder / name).read_bytes()
        assert rec["size"] == len(data)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
        assert rec["checksum"].startswith("xxh3_128:")
        with safetensors_torch.safe_open(str(folder / name), framework="pt") as f:  # type: ignore[attr-defined]
            assert f.metadata()["format"] == "pt"
            assert "modelstore.checksum" in f.metadata()


def test_path_rules(tmp_path: Path) -> None:
    """Folder (existing or suffix-less, created) -> model-*; NAME.safetensors and
    NAME.safetensors.index.json -> NAME-* in their folder; each loads by any of its names."""
    net = deep()
    ms.save(net, tmp_path / "new_folder", max_shard_size=LIMIT)
    assert (tmp_path / "new_folder" / "model.safetensors.index.json").is_file()
    existing = tmp_path / "existing.d"
    existing.mkdir()
    ms.save(net, existing, max_shard_size=LIMIT)
    assert (existing / "model.safetensors.index.json").is_file()

    info = ms.save(net, tmp_path / "big.safetensors", max_shard_size=LIMIT)
    assert info.path == str(tmp_path / "big.safetensors.index.json")
    assert shard_names(tmp_path, "big")[0].startswith("big-00001-of-")
    assert not (tmp_path / "big.safetensors").exists()
    for ref in (tmp_path / "big.safetensors", tmp_path / "big.safetensors.index.json"):
        assert same_weights(ms.load(ref), net.state_dict())

    ms.save(net, tmp_path / "other.safetensors.index.json", max_shard_size=LIMIT)
    assert shard_names(tmp_path, "other")
    assert same_weights(ms.load(tmp_path / "other.safetensors.index.json"), net.state_dict())


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ms.StorageError, match="does not exist"):
        ms.save(deep(), tmp_path / "no" / "such" / "folder", max_shard_size=LIMIT)
    with pytest.raises(ms.ArgumentError, match="sharded safetensors"):
        ms.save(deep(), tmp_path / "m.pt", max_shard_size=LIMIT)
    with pytest.raises(ms.ArgumentError, match="sharded"):
        ms.save(deep(), tmp_path / "m", max_shard_size=LIMIT, format="torch")
    # a nested checkpoint is a torch file, which takes no max_shard_size=: refused with the reason
    with pytest.raises(ms.ArgumentError, match="sharded safetensors"):
        ms.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, tmp_path / "ck", max_shard_size=LIMIT)
    assert not (tmp_path / "ck").exists()  # nothing created for a refused save


def test_one_shard_still_gets_an_index(tmp_path: Path) -> None:
    net = deep()
    ms.save(net, tmp_path / "one", max_shard_size="1GB")
    assert shard_names(tmp_path / "one") == ["model-00001-of-00001.safetensors"]
    assert same_weights(ms.load(tmp_path / "one"), net.state_dict())


def test_a_tensor_larger_than_the_limit_gets_its_own_shard(tmp_path: Path) -> None:
    sd = {
        "a": torch.zeros(10),
        "big": torch.zeros(1000),
        "b": torch.zeros(10),
        "c": torch.zeros(10),
    }
    ms.save(sd, tmp_path / "s", max_shard_size=100)
    wm = index_of(tmp_path / "s")["weight_map"]
    assert len({wm["big"]}) == 1 and list(wm.values()).count(wm["big"]) == 1
    assert wm["a"] == wm["b"] != wm["c"]  # 40 + 40 bytes fit, the third does not
    assert same_weights(ms.load(tmp_path / "s"), sd)


def test_state_dicts_and_buffers(tmp_path: Path) -> None:
    """A flat dict of tensors shards too; a module with BatchNorm stats and a non-persistent
    buffer loads complete."""
    torch.manual_seed(0)
    bn = models.BNNet().train()
    bn(torch.randn(16, 8))
    bn.eval()
    ms.save(bn, tmp_path / "bn", max_shard_size=64)
    assert len(shard_names(tmp_path / "bn")) >= 3
    loaded = ms.load(tmp_path / "bn", model=models.BNNet)
    x = torch.randn(4, 8)
    torch.testing.assert_close(loaded(x), bn(x))
    assert loaded.bn.num_batches_tracked.item() == 1


def test_tied_weights_are_stored_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lm = models.TiedLM(vocab=400, dim=16)
    ms.save(lm, tmp_path / "lm", max_shard_size="10KB", config={"vocab": 400, "dim": 16})
    index = index_of(tmp_path / "lm")
    assert index["metadata"]["modelstore"]["tied"] == {"head.weight": "emb.weight"}
    assert "head.weight" not in index["weight_map"]
    loaded = ms.load(tmp_path / "lm", model=models.TiedLM, strict=True)
    assert loaded.head.weight is loaded.emb.weight
    assert torch.equal(loaded.emb.weight, lm.emb.weight)
    sd = ms.load(tmp_path / "lm")
    assert torch.equal(sd["head.weight"], lm.head.weight)


def test_trust_builds_the_recorded_class(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    net, folder, _ = saved
    assert isinstance(ms.load(folder), dict)
    built = ms.load(folder, trust=True)
    assert isinstance(built, Deep)
    torch.testing.assert_close(built(x_in()), net(x_in()))


def test_fill_an_instance_and_device(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    net, folder, _ = saved
    target = deep(seed=5)
    out = ms.load(folder, model=target, device="cpu")
    assert out is target
    assert same_weights(target.state_dict(), net.state_dict())


def test_mismatch_is_reported_over_the_whole_checkpoint(
    saved: tuple[Deep, Path, ms.ModelInfo],
) -> None:
    """Missing, unexpected and mis-shaped keys from every shard are listed together."""
    net, folder, _ = saved
    with pytest.raises(ms.ArchitectureMismatchError) as e:
        ms.load(folder, model=Deep(depth=3))
    assert set(e.value.unexpected) == {"layers.3.weight", "layers.3.bias"}
    with pytest.raises(ms.ArchitectureMismatchError) as e:
        ms.load(folder, model=Deep(depth=5))
    assert set(e.value.missing) == {"layers.4.weight", "layers.4.bias"}
    with pytest.raises(ms.ArchitectureMismatchError) as e:
        ms.load(folder, model=Deep(width=32))
    assert len(e.value.mismatched) == 9 and "layers.0.weight" in str(e.value)

    with pytest.warns(ms.ArchitectureMismatchWarning, match="layers.3.weight"):
        partial = ms.load(folder, model=Deep(depth=3), strict=False)
    assert torch.equal(partial.layers[2].weight, net.layers[2].weight)
    assert torch.equal(partial.head.weight, net.head.weight)


def test_strict_false_with_a_class_builds_missing_keys_for_real(
    saved: tuple[Deep, Path, ms.ModelInfo],
) -> None:
    net, folder, _ = saved
    index = index_of(folder)
    index["metadata"]["modelstore"]["config"] = {"width": 64, "depth": 5}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.warns(ms.ArchitectureMismatchWarning, match="layers.4"):
        loaded = ms.load(folder, model=Deep, strict=False)
    assert not any(p.is_meta for p in loaded.parameters())
    assert torch.equal(loaded.layers[3].weight, net.layers[3].weight)


# -- integrity -------------------------------------------------------------------------------


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_shard_is_caught_and_named(
    saved: tuple[Deep, Path, ms.ModelInfo],
) -> None:
    net, folder, _ = saved
    second = shard_names(folder)[1]
    flip_last_byte(folder / second)
    with pytest.raises(ms.IntegrityError, match=second):
        ms.load(folder, model=Deep)
    with pytest.raises(ms.IntegrityError, match=second):
        ms.load(folder)
    loaded = ms.load(folder, verify=False)  # damage accepted on request
    assert not same_weights(loaded, net.state_dict())


def test_shards_are_verified_and_read_one_at_a_time(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    """A damaged last shard is only found when reached: the shards before it were already
    read into the instance (and the error names the damaged one)."""
    net, folder, _ = saved
    last = shard_names(folder)[-1]
    flip_last_byte(folder / last)
    target = deep(seed=9)
    with pytest.raises(ms.IntegrityError, match=last):
        ms.load(folder, model=target)
    assert torch.equal(target.layers[0].weight, net.layers[0].weight)  # shard 1 was read
    assert not torch.equal(target.head.weight, net.head.weight)  # the damaged shard was not


def test_truncated_shard_and_shard_header_checksum(
    tmp_path: Path, saved: tuple[Deep, Path, ms.ModelInfo]
) -> None:
    """Without records in the index, a shard's own header checksum still catches damage."""
    net, folder, _ = saved
    first = shard_names(folder)[0]
    index = index_of(folder)
    del index["metadata"]["shards"]
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert same_weights(ms.load(folder), net.state_dict())
    flip_last_byte(folder / first)
    with pytest.raises(ms.IntegrityError, match=first):
        ms.load(folder)


def test_sha256_pin_covers_the_shards(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    net, folder, info = saved
    assert (
        info.sha256
        == hashlib.sha256((folder / "model.safetensors.index.json").read_bytes()).hexdigest()
    )
    assert same_weights(ms.load(folder, sha256=info.sha256), net.state_dict())
    with pytest.raises(ms.IntegrityError, match="pinned"):
        ms.load(folder, sha256="0" * 64)
    flip_last_byte(folder / shard_names(folder)[2])
    with pytest.raises(ms.IntegrityError, match="pinned"):
        ms.load(folder, sha256=info.sha256, verify=False)


# -- hostile indexes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "verdict"),
    [
        ("../x.safetensors", ms.UnsafeModelError, "unsafe"),
        ("/etc/passwd.safetensors", ms.UnsafeModelError, "unsafe"),
        ("..\\x.safetensors", ms.UnsafeModelError, "unsafe"),
        ("C:x.safetensors", ms.UnsafeModelError, "unsafe"),
        ("%2e%2e%2fx.safetensors", ms.UnsafeModelError, "unsafe"),
        ("..", ms.UnsafeModelError, "unsafe"),
        ("", ms.UnsafeModelError, "unsafe"),
        ("sub/x.safetensors", ms.FormatError, "unknown"),
        ("model-00001-of-00004.bin", ms.FormatError, "unknown"),
    ],
)
def test_shard_names_must_stay_in_the_folder(
    saved: tuple[Deep, Path, ms.ModelInfo], name: str, error: type[Exception], verdict: str
) -> None:
    """A shard name that could lead outside is refused as unsafe; a malformed one as a format error."""
    _, folder, _ = saved
    index = index_of(folder)
    index["weight_map"]["head.bias"] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(error):
        ms.load(folder)
    with pytest.raises(error):
        ms.inspect(folder)
    with pytest.raises(error):
        _shards.index_files(folder / "model.safetensors.index.json")
    assert ms.scan(folder).verdict == verdict


def test_absolute_path_to_a_real_file_outside_is_refused(
    tmp_path: Path, saved: tuple[Deep, Path, ms.ModelInfo]
) -> None:
    _, folder, _ = saved
    outside = tmp_path / "outside.safetensors"
    safetensors_torch.save_file({"head.bias": torch.zeros(10)}, str(outside))
    write_index(folder, {**dict(index_of(folder)["weight_map"]), "head.bias": str(outside)})
    with pytest.raises(ms.UnsafeModelError, match="absolute path"):
        ms.load(folder)


def test_symlinks_may_not_lead_outside(
    tmp_path: Path, saved: tuple[Deep, Path, ms.ModelInfo]
) -> None:
    net, folder, _ = saved
    first = shard_names(folder)[0]
    outside = tmp_path / "elsewhere.safetensors"
    os.replace(folder / first, outside)
    (folder / first).symlink_to(outside)
    with pytest.raises(ms.UnsafeModelError, match="outside"):
        ms.load(folder)
    # a link inside the folder is fine
    (folder / first).unlink()
    os.replace(outside, folder / "real.bin")
    (folder / first).symlink_to("real.bin")
    assert same_weights(ms.load(folder), net.state_dict())


def test_missing_shard_is_named(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    _, folder, _ = saved
    second = shard_names(folder)[1]
    (folder / second).unlink()
    with pytest.raises(ms.ModelNotFoundError, match=second):
        ms.load(folder)
    report = ms.scan(folder)
    assert report.verdict == "unknown" and any(f.subject == second for f in report.findings)


def test_tensor_missing_from_its_shard(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    _, folder, _ = saved
    index = index_of(folder)
    index["weight_map"]["ghost.weight"] = shard_names(folder)[0]
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ms.IntegrityError, match="ghost.weight"):
        ms.load(folder)
    with pytest.raises(ms.IntegrityError, match="ghost.weight"):
        ms.load(folder, model=Deep)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        "null",
        '{"metadata": {}}',
        '{"weight_map": []}',
        '{"weight_map": {"a": 3}}',
        '{"weight_map": {}, "metadata": []}',
        '{"weight_map": {}, "metadata": {"modelstore": {"config": []}}}',
        '{"weight_map": {}, "metadata": {"modelstore": {}, "shards": {"x.safetensors": {"size": "big"}}}}',
        "\xff\xfe",
        '{"weight_map": {}, "metadata": {"total_size": 1e999}}',
        '{"weight_map": {}, "metadata": Infinity}',
        '{"weight_map": {}, "metadata": {"modelstore": {}, "shards": {"x.safetensors": {"size": 18446744073709551616}}}}',
        '{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"weight_map": {"a": ' + "9" * 5000 + "}}",
    ],
)
def test_malformed_indexes_are_format_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "model.safetensors.index.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ms.FormatError):
        ms.load(tmp_path)
    with pytest.raises(ms.FormatError):
        ms.inspect(tmp_path)
    assert ms.scan(tmp_path).verdict == "unknown"


def test_several_indexes_need_the_one_to_use(tmp_path: Path) -> None:
    ms.save(deep(), tmp_path / "a.safetensors", max_shard_size=LIMIT)
    ms.save(deep(seed=1), tmp_path / "b.safetensors", max_shard_size=LIMIT)
    with pytest.raises(ms.FormatError, match="several"):
        ms.load(tmp_path)
    assert ms.scan(tmp_path).verdict == "unknown"
    assert same_weights(ms.load(tmp_path / "b.safetensors.index.json"), deep(seed=1).state_dict())


def test_find_index_and_index_files(saved: tuple[Deep, Path, ms.ModelInfo], tmp_path: Path) -> None:
    _, folder, _ = saved
    index = folder / "model.safetensors.index.json"
    assert choose.model_file(folder) == index
    assert choose.model_file(index) == index
    with pytest.raises(ms.ModelNotFoundError):
        choose.model_file(tmp_path / "nothing.pt")
    assert _shards.index_files(index) == shard_names(folder)


# -- overwrite -------------------------------------------------------------------------------


def test_overwrite_with_fewer_shards_removes_the_stale_ones(
    saved: tuple[Deep, Path, ms.ModelInfo],
) -> None:
    _, folder, _ = saved
    before = shard_names(folder)
    (folder / "notes.txt").write_text("keep me")
    other = deep(seed=3)
    ms.save(other, folder, max_shard_size="40KB")
    after = shard_names(folder)
    assert len(after) < len(before)
    assert all(name.endswith(f"-of-{len(after):05d}.safetensors") for name in after)
    assert (folder / "notes.txt").exists()
    assert not [p for p in folder.iterdir() if "modelstore-tmp" in p.name]
    assert same_weights(ms.load(folder), other.state_dict())


def test_overwrite_false_refuses_an_existing_index(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    _, folder, _ = saved
    before = index_of(folder)
    with pytest.raises(ms.ModelExistsError):
        ms.save(deep(seed=4), folder, max_shard_size=LIMIT, overwrite=False)
    assert index_of(folder) == before


# -- inspect and scan ------------------------------------------------------------------------


def test_inspect_reads_every_shard_header(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    net, folder, info = saved
    again = ms.inspect(folder)
    assert dataclasses.replace(again, files={}) == info  # a folder also lists its files
    assert set(again.files) == {p.name for p in folder.iterdir()}
    assert info.format == "safetensors" and info.framework == "torch"
    assert {t.name for t in info.tensors} == set(net.state_dict())
    assert info.num_params == sum(p.numel() for p in net.parameters())
    assert info.size_bytes == sum((folder / n).stat().st_size for n in shard_names(folder))
    assert info.metadata["run"] == "a1" and info.metadata["shards"] == len(shard_names(folder))
    assert info.labels == list("0123456789")
    assert json.loads(json.dumps(info.to_dict()))["path"].endswith("model.safetensors.index.json")
    assert recorded_metadata(folder)["config"] == {"width": 64, "depth": 4}


def test_scan_of_a_sharded_checkpoint(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    _, folder, _ = saved
    assert ms.scan(folder).verdict == "safe"
    third = shard_names(folder)[2]
    (folder / third).write_bytes(b"\x0e\x00\x00\x00\x00\x00\x00\x00{not a header}")
    report = ms.scan(folder)
    assert report.verdict == "unknown"
    assert [f.subject for f in report.findings] == [third]
    with pytest.raises(ms.FormatError, match=third):
        ms.load(folder)


def test_convert_a_sharded_checkpoint_to_one_file(
    saved: tuple[Deep, Path, ms.ModelInfo], tmp_path: Path
) -> None:
    net, folder, _ = saved
    ms.convert(folder, tmp_path / "one.safetensors")
    loaded = ms.load(tmp_path / "one.safetensors", model=Deep)  # config carried over
    torch.testing.assert_close(loaded(x_in()), net(x_in()))


# -- Hugging Face interop --------------------------------------------------------------------


def test_huggingface_hub_shards_load(tmp_path: Path) -> None:
    """What huggingface_hub.save_torch_state_dict writes (what transformers uses) loads,
    tied weights included (it records the names it dropped in the index metadata)."""
    hub = pytest.importorskip("huggingface_hub")
    net = deep()
    (tmp_path / "hf").mkdir()
    (tmp_path / "lm").mkdir()
    hub.save_torch_state_dict(net.state_dict(), tmp_path / "hf", max_shard_size=LIMIT)
    assert len(shard_names(tmp_path / "hf")) >= 3
    loaded = ms.load(tmp_path / "hf", model=Deep)
    torch.testing.assert_close(loaded(x_in()), net(x_in()))
    assert same_weights(ms.load(tmp_path / "hf"), net.state_dict())
    info = ms.inspect(tmp_path / "hf")
    assert info.framework == "torch" and info.num_params == sum(p.numel() for p in net.parameters())
    assert ms.scan(tmp_path / "hf").verdict == "safe"

    torch.manual_seed(0)
    lm = TiedDeep()
    hub.save_torch_state_dict(lm.state_dict(), tmp_path / "lm", max_shard_size="10KB")
    assert len(shard_names(tmp_path / "lm")) >= 2
    sd = ms.load(tmp_path / "lm")
    assert set(sd) == set(lm.state_dict())
    assert torch.equal(sd["head.weight"], lm.emb.weight) and torch.equal(
        sd["emb.weight"], lm.emb.weight
    )
    tied = ms.load(tmp_path / "lm", model=TiedDeep)
    assert tied.head.weight is tied.emb.weight
    ids = torch.tensor([[1, 2, 399]])
    torch.testing.assert_close(tied(ids), lm(ids))


def test_modelstore_shards_load_with_huggingface_hub(
    saved: tuple[Deep, Path, ms.ModelInfo],
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    net, folder, _ = saved
    fresh = deep(seed=7)
    result = hub.load_torch_model(fresh, folder, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(fresh(x_in()), net(x_in()), rtol=0, atol=0)
    merged: dict[str, Any] = {}
    for name in shard_names(folder):
        merged.update(hub.load_state_dict_from_file(folder / name))
        plain = safetensors_torch.load_file(str(folder / name))
        assert set(plain) <= set(net.state_dict())
    assert same_weights(merged, net.state_dict())


def test_transformers_style_hand_written_index(tmp_path: Path) -> None:
    """Shards with {"format": "pt"} only and an index with total_size and a sorted
    weight_map, as transformers' save_pretrained writes them."""
    net = deep()
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    names = list(sd)
    parts = [names[:4], names[4:7], names[7:]]
    weight_map = {}
    for i, part in enumerate(parts, 1):
        fname = f"model-{i:05d}-of-{len(parts):05d}.safetensors"
        safetensors_torch.save_file(
            {k: sd[k] for k in part}, str(tmp_path / fname), metadata={"format": "pt"}
        )
        weight_map.update(dict.fromkeys(part, fname))
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
            indent=2,
        )
    )
    loaded = ms.load(tmp_path, model=Deep)
    torch.testing.assert_close(loaded(x_in()), net(x_in()))
    assert same_weights(ms.load(tmp_path), sd)
    info = ms.inspect(tmp_path)
    assert info.metadata["shards"] == 3 and info.metadata["total_size"] == total
    assert ms.scan(tmp_path).verdict == "safe"
    with pytest.raises(ms.IntegrityError, match="records no sha256"):
        ms.load(tmp_path, sha256=info.sha256)


def test_hugging_face_cache_layout_loads(tmp_path: Path) -> None:
    """In a huggingface_hub cache, snapshots/<rev>/ holds links to ../../blobs/<hash>: those
    links leave the folder, but only into the cache's own blobs, which is allowed."""
    net = deep()
    src = tmp_path / "src"
    ms.save(net, src, max_shard_size=LIMIT)
    repo = tmp_path / "models--someone--deep"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for p in src.iterdir():
        blob = repo / "blobs" / hashlib.sha256(p.read_bytes()).hexdigest()
        os.replace(p, blob)
        (snapshot / p.name).symlink_to(Path("..", "..", "blobs", blob.name))
    loaded = ms.load(snapshot, model=Deep)
    torch.testing.assert_close(loaded(x_in()), net(x_in()))
    assert ms.scan(snapshot).verdict == "safe"


def test_one_shard_loads_on_its_own(saved: tuple[Deep, Path, ms.ModelInfo]) -> None:
    """Each shard is a complete safetensors file with its own checksum."""
    net, folder, _ = saved
    first = folder / shard_names(folder)[0]
    part = ms.load(first)
    assert part and all(torch.equal(t, net.state_dict()[k]) for k, t in part.items())
    flip_last_byte(first)
    with pytest.raises(ms.IntegrityError):
        ms.load(first)

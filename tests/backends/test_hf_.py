"""Hugging Face model folders, written by the real libraries (transformers' save_pretrained,
huggingface_hub's save_torch_state_dict): load, inspect, scan, save, and the hostile variants
(THREATS.md class 9). Slow: transformers and a tiny BERT take seconds to import and build;
the quick subset covers the layouts without transformers in test_hf_hub.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("huggingface_hub")

import modelstore as ms  # noqa: E402
from modelstore.security.confine import ConfinementError  # noqa: E402

from ..hostile import Reduce, py_touch  # noqa: E402

pytestmark = pytest.mark.slow

X = torch.tensor([[1, 5, 7, 9, 2]])


def tiny_bert() -> Any:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
        max_position_embeddings=64,
    )
    return transformers.BertForMaskedLM(cfg).eval()


def quiet(fn: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def bert() -> Any:
    return tiny_bert()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, bert: Any) -> dict[str, Path]:
    """The four layouts, each written by the library that writes it."""
    root = tmp_path_factory.mktemp("hf")
    quiet(bert.save_pretrained, root / "st")
    quiet(bert.save_pretrained, root / "st_sharded", max_shard_size="20KB")
    for name, kw in (("bin", {}), ("bin_sharded", {"max_shard_size": "20KB"})):
        (root / name).mkdir()
        quiet(
            hub.save_torch_state_dict,
            bert.state_dict(),
            root / name,
            safe_serialization=False,
            **kw,
        )
        shutil.copy(root / "st" / "config.json", root / name / "config.json")
    return {p.name: p for p in root.iterdir()}


def copy(folders: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folders[name], tmp_path / name))


LAYOUTS = {
    "st": "model.safetensors",
    "st_sharded": "model.safetensors.index.json",
    "bin": "pytorch_model.bin",
    "bin_sharded": "pytorch_model.bin.index.json",
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_folder_loads_into_the_callers_class(
    folders: dict[str, Path], bert: Any, layout: str
) -> None:
    """load(folder, model=BertForMaskedLM) builds the class from config.json, ties kept."""
    model = quiet(ms.load, folders[layout], model=transformers.BertForMaskedLM)
    assert torch.equal(model(X).logits, bert(X).logits)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert not model.training


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_folder_inspect_scan_and_state_dict(
    folders: dict[str, Path], bert: Any, layout: str
) -> None:
    """inspect lists every file and the total, records config.json; scan is safe; a plain
    load gives the state dict."""
    folder = folders[layout]
    info = ms.inspect(folder)
    assert Path(info.path).name == LAYOUTS[layout]
    assert set(info.files) == set(os.listdir(folder))
    assert sum(info.files.values()) == sum((folder / n).stat().st_size for n in os.listdir(folder))
    assert info.metadata["hf_config"]["model_type"] == "bert"
    assert info.num_params == sum(p.numel() for p in bert.parameters())
    assert info.executes_code == layout.startswith("bin")
    assert ms.scan(folder).verdict == "safe"
    sd = quiet(ms.load, folder)
    assert torch.equal(
        sd["bert.embeddings.word_embeddings.weight"], bert.bert.embeddings.word_embeddings.weight
    )


def test_bin_shards_warn_as_pickles(folders: dict[str, Path], tmp_path: Path) -> None:
    """A .bin checkpoint is unpickled (through the gate), so it warns like any pickle (a fresh
    copy: the warning comes once per file per process, and the fixture's folder was loaded)."""
    import shutil

    copy = shutil.copytree(folders["bin_sharded"], tmp_path / "bin_sharded")
    with pytest.warns(ms.PickleWarning):
        ms.load(copy)


def test_cli_inspect_lists_files(folders: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelstore", "inspect", str(folders["st_sharded"])],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "model-00001-of-00005.safetensors" in proc.stdout and "config.json" in proc.stdout


# -- hostile folders ------------------------------------------------------------------------------


def _naive_fires(path: Path, marker: Path) -> None:
    """The payload really runs under torch.load(weights_only=False)."""
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert marker.exists()
    marker.unlink()


def test_pickle_in_a_bin_shard_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    """A .bin shard carrying code: load, scan and inspect of the folder never run it."""
    folder = copy(folders, "bin_sharded", tmp_path)
    marker = tmp_path / "marker"
    shard = folder / "pytorch_model-00003-of-00005.bin"
    sd = torch.load(shard, weights_only=True)
    sd["payload"] = Reduce(exec, py_touch(marker))
    torch.save(sd, shard)
    _naive_fires(shard, marker)
    with pytest.raises(ms.UnsafeModelError, match="builtins.exec"):
        ms.load(folder)
    with pytest.raises(ms.UnsafeModelError):
        ms.load(folder, model=transformers.BertForMaskedLM)
    report = ms.scan(folder)
    assert report.verdict == "unsafe"
    assert any("pytorch_model-00003-of-00005.bin" in f.reason for f in report.findings)
    ms.inspect(folder)
    assert not marker.exists()


def test_index_paths_stay_inside_the_folder(folders: dict[str, Path], tmp_path: Path) -> None:
    """A weight map naming ../ or an absolute path is refused before anything is read."""
    for bad in ("../outside.bin", "/etc/passwd", "sub/dir.bin", "%2e%2e/x.bin"):
        folder = copy(folders, "bin_sharded", tmp_path / bad.replace("/", "_"))
        index = folder / "pytorch_model.bin.index.json"
        data = json.loads(index.read_text())
        data["weight_map"]["bert.embeddings.LayerNorm.bias"] = bad
        index.write_text(json.dumps(data))
        with pytest.raises((ms.UnsafeModelError, ms.FormatError)):
            quiet(ms.load, folder)
        assert ms.scan(folder).verdict != "safe"


def test_symlinked_shard_leading_out_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = copy(folders, "bin_sharded", tmp_path)
    shard = folder / "pytorch_model-00002-of-00005.bin"
    outside = tmp_path / "elsewhere.bin"
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(ms.UnsafeModelError, match="leading outside"):
        quiet(ms.load, folder)
    assert ms.scan(folder).verdict == "unsafe"


def test_shards_must_cover_the_weight_map(folders: dict[str, Path], tmp_path: Path) -> None:
    """An index listing a tensor its shard lacks is damaged, not silently partial."""
    folder = copy(folders, "bin_sharded", tmp_path)
    index = folder / "pytorch_model.bin.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["not.in.any.shard"] = "pytorch_model-00001-of-00005.bin"
    index.write_text(json.dumps(data))
    with pytest.raises(ms.IntegrityError, match="not.in.any.shard"):
        quiet(ms.load, folder)


@pytest.mark.parametrize(
    "edit",
    [
        {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}},
        {"trust_remote_code": True},
        {"attn_implementation": "kernels-community/flash-attn"},
        {"text_config": {"auto_map": {"AutoConfig": "evil--configuration.Evil"}}},
    ],
)
def test_config_that_runs_code_is_reported_and_refused(
    folders: dict[str, Path], tmp_path: Path, edit: dict[str, Any]
) -> None:
    """config.json keys that make transformers fetch or run code: scan says unsafe, building
    the caller's class from that config is refused; the bare weights still load."""
    folder = copy(folders, "st", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(edit)
    (folder / "config.json").write_text(json.dumps(config))
    report = ms.scan(folder)
    assert report.verdict == "unsafe"
    assert any(f.subject == "config.json" for f in report.findings)
    assert ms.inspect(folder).metadata["hf_config_problems"]
    with pytest.raises(ms.UnsafeModelError, match="config"):
        ms.load(folder, model=transformers.BertForMaskedLM)
    assert isinstance(ms.load(folder), dict)


def test_config_is_bounded_json(folders: dict[str, Path], tmp_path: Path) -> None:
    """A config.json that is not JSON, nests too deeply or is huge is a FormatError."""
    folder = copy(folders, "st", tmp_path)
    for text in ("[" * 100_000, '{"hidden_size": Infinity}', "not json"):
        (folder / "config.json").write_text(text)
        with pytest.raises(ms.FormatError):
            ms.load(folder, model=transformers.BertForMaskedLM)


def test_config_symlinked_out_is_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = copy(folders, "st", tmp_path)
    outside = tmp_path / "secret.json"
    shutil.move(folder / "config.json", outside)
    (folder / "config.json").symlink_to(outside)
    with pytest.raises(ConfinementError):
        ms.load(folder, model=transformers.BertForMaskedLM)
    assert ms.scan(folder).verdict == "unsafe"


def test_side_files_go_through_the_same_gate(
    folders: dict[str, Path], bert: Any, tmp_path: Path
) -> None:
    """optimizer.pt and scheduler.pt of a trainer checkpoint scan clean; a training_args.bin
    holding a pickled object is reported (by name); the model's own load is unaffected."""
    folder = copy(folders, "st", tmp_path)
    opt = torch.optim.AdamW(bert.parameters())
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save(
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0).state_dict(), folder / "scheduler.pt"
    )
    torch.save({"cpu": torch.random.get_rng_state()}, folder / "rng_state.pth")
    assert ms.scan(folder).verdict == "safe"
    torch.save(transformers.GenerationConfig(), folder / "training_args.bin")
    report = ms.scan(folder)
    assert report.verdict == "unsafe"
    assert any(f.subject.startswith("training_args.bin: transformers.") for f in report.findings)
    assert set(ms.inspect(folder).files) >= {
        "optimizer.pt",
        "training_args.bin",
        "model.safetensors",
    }
    model = ms.load(folder, model=transformers.BertForMaskedLM)
    assert torch.equal(model(X).logits, bert(X).logits)


def test_hostile_side_file_payload_never_runs(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = copy(folders, "st", tmp_path)
    marker = tmp_path / "marker"
    torch.save({"state": Reduce(exec, py_touch(marker))}, folder / "rng_state.pth")
    _naive_fires(folder / "rng_state.pth", marker)
    report = ms.scan(folder)
    assert report.verdict == "unsafe"
    assert any(f.subject == "rng_state.pth: builtins.exec" for f in report.findings)
    ms.inspect(folder)
    ms.load(folder)
    assert not marker.exists()


# -- saving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_save_writes_a_folder_from_pretrained_reads(
    bert: Any, tmp_path: Path, shard: str | None
) -> None:
    """ms.save(model, folder) -> from_pretrained gives the same outputs with ties kept, and
    ms.load reads it back with the labels recorded."""
    folder = tmp_path / "out"
    kw = {} if shard is None else {"max_shard_size": shard}
    info = ms.save(bert, folder, labels=["a", "b"], **kw)
    assert (folder / "config.json").is_file()
    again = quiet(transformers.BertForMaskedLM.from_pretrained, folder).eval()
    assert torch.equal(again(X).logits, bert(X).logits)
    assert again.cls.predictions.decoder.weight is again.bert.embeddings.word_embeddings.weight
    assert ms.inspect(folder).labels == ["a", "b"] == info.labels
    loaded = ms.load(folder, model=transformers.BertForMaskedLM)
    assert torch.equal(loaded(X).logits, bert(X).logits)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no staging left


def test_save_over_a_folder(bert: Any, tmp_path: Path) -> None:
    """A save over a sharded one leaves no stale shard; overwrite=False refuses."""
    folder = tmp_path / "out"
    ms.save(bert, folder, max_shard_size="20KB")
    (folder / "README.md").write_text("mine")
    ms.save(bert, folder)
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(ms.ModelExistsError):
        ms.save(bert, folder, overwrite=False)
    assert Path(ms.inspect(folder).path).name == "model.safetensors"


@pytest.mark.parametrize("layout", ["st", "bin", "bin_sharded"])
def test_base_model_from_a_head_models_folder(
    folders: dict[str, Path], bert: Any, layout: str
) -> None:
    """model=BertModel on a BertForMaskedLM folder takes the bert.* weights, as transformers
    does; the pooler the file lacks is reported (strict) or left initialised (strict=False)."""
    with pytest.raises(ms.ArchitectureMismatchError, match="pooler.dense.weight"):
        quiet(ms.load, folders[layout], model=transformers.BertModel)
    base = quiet(ms.load, folders[layout], model=transformers.BertModel, strict=False)
    assert torch.equal(
        base.embeddings.word_embeddings.weight, bert.bert.embeddings.word_embeddings.weight
    )
    assert torch.equal(
        base.encoder.layer[1].output.dense.weight, bert.bert.encoder.layer[1].output.dense.weight
    )


@pytest.mark.parametrize("layout", ["st", "bin_sharded"])
def test_remote_folder_brings_its_config(
    folders: dict[str, Path], bert: Any, layout: str, tmp_path: Path
) -> None:
    """A folder in object storage is fetched with its config.json: the caller's class is
    built from it, and a hostile remote config is refused like a local one."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/hf-{layout}-{tmp_path.name}"
    for name in os.listdir(folders[layout]):
        fs.pipe(f"{root}/{name}", (folders[layout] / name).read_bytes())
    uri = f"memory://{root}"
    model = quiet(ms.load, uri, model=transformers.BertForMaskedLM)
    assert torch.equal(model(X).logits, bert(X).logits)
    assert ms.inspect(uri).metadata["hf_config"]["model_type"] == "bert"
    config = json.loads((folders[layout] / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    fs.pipe(f"{root}/config.json", json.dumps(config).encode())
    with pytest.raises(ms.UnsafeModelError, match="config"):
        quiet(ms.load, uri, model=transformers.BertForMaskedLM)
    assert ms.scan(uri).verdict == "unsafe"
    main = f"{uri}/{LAYOUTS[layout]}"  # the weights file itself: fetched with its config too
    assert ms.scan(main).verdict == "unsafe"
    fs.rm(root, recursive=True)

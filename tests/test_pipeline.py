"""The one pipeline: the drift bugs found in review, each pinned by a test, and the plugin API
guarantees (priority, reserved suffixes, cache invalidation, typed options)."""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.backends import Backend, Exported, Inspection, PredictRequest  # noqa: E402
from modelstore.cli import main as cli_main  # noqa: E402
from tests import models  # noqa: E402


@pytest.fixture
def mem() -> str:
    return f"memory://p-{uuid.uuid4().hex[:10]}"


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- shards: one pipeline with single files -----------------------------------------------------


def test_sharded_save_to_a_name_replaces_an_older_single_file(tmp_path: Path) -> None:
    """save(NAME.safetensors, max_shard_size=) after a plain save to NAME.safetensors: the
    name now means the shards (the older single file no longer shadows them)."""
    old, new = models.trained_net(seed=1), models.trained_net(seed=2)
    path = tmp_path / "m.safetensors"
    ms.save(old, path)
    ms.save(new, path, max_shard_size=4096)
    assert not path.exists() and (tmp_path / "m.safetensors.index.json").is_file()
    assert same(ms.load(path), new.state_dict())


def test_remote_sharded_save_loads_inspects_and_scans_by_its_uri(mem: str) -> None:
    net = models.trained_net()
    uri = f"{mem}/deep.safetensors"
    info = ms.save(net, uri, max_shard_size=4096, labels=list("0123456789"))
    assert info.path == f"{mem}/deep.safetensors.index.json"
    assert same(ms.load(uri), net.state_dict())
    assert ms.inspect(uri).metadata["shards"] >= 2
    assert ms.scan(uri).verdict == "safe"
    assert same(ms.load(f"{mem}/deep.safetensors.index.json"), net.state_dict())


def test_remote_sharded_folder_loads_by_its_uri(mem: str) -> None:
    net = models.trained_net()
    ms.save(net, f"{mem}/ckpt", max_shard_size=4096)
    back = ms.load(f"{mem}/ckpt", model=models.Net)
    assert same(back.state_dict(), net.state_dict())


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_unknown_torch_load_options_are_refused_with_the_valid_names(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"m{suffix}"
    ms.save(models.trained_net(), path)
    with pytest.raises(ms.ArgumentError, match=r"map_location=.*dtype=.*use device="):
        ms.load(path, map_location="cpu")
    with pytest.raises(ms.ArgumentError, match="weights_only=.*trust="):
        ms.load(path, weights_only=True)
    with pytest.raises(ms.ArgumentError, match="dtype="):
        ms.load(path, dtyp="float16")


def test_unknown_sklearn_options_are_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, x[:, 0] > 0)
    with pytest.raises(ms.ArgumentError, match="compress=, protocol="):
        ms.save(model, tmp_path / "m.joblib", compression=3)
    ms.save(model, tmp_path / "m.joblib", compress=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        with pytest.raises(ms.ArgumentError, match="takes: none"):
            ms.load(tmp_path / "m.joblib", mmap_mode="r")


# -- warnings point at the caller ----------------------------------------------------------------


def test_warnings_point_at_the_callers_line(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    ms.save(models.trained_net(), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ms.load(path)
    pickle = [w for w in caught if issubclass(w.category, ms.PickleWarning)]
    assert pickle and all(w.filename == __file__ for w in pickle), [
        (w.filename, w.lineno) for w in caught
    ]
    with warnings.catch_warnings(record=True) as caught:  # from deep in the torch backend
        warnings.simplefilter("always")
        ms.load(tmp_path / "m.pt", model=models.Net(hidden=16), strict=False)
    arch = [w for w in caught if issubclass(w.category, ms.ArchitectureMismatchWarning)]
    assert arch and all(w.filename == __file__ for w in arch)


def test_library_code_never_changes_warning_filters() -> None:
    """``catch_warnings`` swaps the process-wide filter list (not thread-safe): only the
    command-line shells and the test helper may touch filters."""
    root = Path(ms.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.parts[-2] != "cli"
        and p.name not in ("testing.py", "serve.py")
        and ("catch_warnings" in p.read_text() or "simplefilter" in p.read_text())
    ]
    assert offenders == []


# -- the CLI: convert, inspect --stats of a URI ----------------------------------------------------


def test_convert_reports_writing_after_loading_and_honours_force(
    tmp_path: Path, capsys: Any
) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "w.safetensors"
    ms.save(models.trained_net(), src)
    dst.write_bytes(b"keep me")
    assert cli_main(["convert", str(src), str(dst), "--progress"]) == 2  # exists, no --force
    assert dst.read_bytes() == b"keep me" and "converting" not in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)  # a .pt source: the note is expected
        assert cli_main(["convert", str(src), str(dst), "--progress", "--force"]) == 0
    err = capsys.readouterr().err
    assert err.index("converting w.pt") < err.index("load") < err.index("write") and "2/2" in err
    assert ms.inspect(dst).format == "safetensors"


def test_convert_refuses_an_existing_remote_target_without_overwrite(
    mem: str, tmp_path: Path
) -> None:
    ms.save(models.trained_net(), tmp_path / "w.safetensors")
    ms.convert(tmp_path / "w.safetensors", f"{mem}/w2.safetensors")
    with pytest.raises(ms.ModelExistsError):
        ms.convert(tmp_path / "w.safetensors", f"{mem}/w2.safetensors", overwrite=False)


def test_inspect_stats_of_a_uri_works_where_inspect_does(
    mem: str, tmp_path: Path, capsys: Any
) -> None:
    uri = f"{mem}/digits.safetensors"
    ms.save(models.trained_net(), uri)
    assert cli_main(["inspect", uri, "--stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == uri and {r["name"] for r in data["stats"]} >= {"fc1.weight"}


# -- concurrency ---------------------------------------------------------------------------------


class _GraphWithData(Backend):
    """A test backend whose exporter writes a real ONNX graph with external data, named after
    the temp file as the real exporters name it."""

    name = "graphdata"
    suffixes = (".graphdata",)

    def can_save(self, obj: Any) -> bool:
        return isinstance(obj, _Scale)

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Exported:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.full((4,), model.k, dtype=np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
            [w],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 8
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            location=path.name + ".data",
            size_threshold=0,
        )
        return Exported("test", "1", 17, lambda x: [np.asarray(x, np.float32) * model.k])


class _Scale:
    def __init__(self, k: float) -> None:
        self.k = k


def test_concurrent_exports_to_one_target_keep_each_others_data(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    ms.register(_GraphWithData, clobber=True)
    target = tmp_path / "m.onnx"
    errors: list[BaseException] = []

    def export(k: float) -> None:
        try:
            for _ in range(3):
                ms.export_onnx(_Scale(k), target, sample_input=np.ones((2, 4), np.float32))
                out = ms.predict(ms.load(target), np.ones((1, 4), np.float32))
                assert float(np.asarray(out).ravel()[0]) in (2.0, 3.0)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=export, args=(k,)) for k in (2.0, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    data = sorted(p.name for p in tmp_path.glob("m.onnx.*.data"))
    assert len(data) == 1  # the stale ones went, the one in use stayed


def test_store_json_entries_written_by_many_threads(tmp_path: Path) -> None:
    store = ms.Store(tmp_path / "store")
    store.save(models.trained_net(), "m")
    errors: list[BaseException] = []

    def alias(i: int) -> None:
        try:
            for j in range(10):
                store.alias("m", 1, f"a{i}-{j}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=alias, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not [p for p in (tmp_path / "store").rglob("*") if p.name.endswith(".tmp")]


# -- caches ----------------------------------------------------------------------------------------


class _Doubler(Backend):
    name = "doubler"
    suffixes = (".doubler",)
    priority = 100

    def can_predict(self, obj: Any) -> bool:
        return type(obj).__name__ == "Net"

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        return "from the plugin"


def test_predict_cache_is_invalidated_by_register() -> None:
    from modelstore.pipeline.registry import REGISTRY

    net = models.trained_net()
    x = np.zeros((1, 64), np.float32)
    assert isinstance(ms.predict(net, x), np.ndarray)  # cached: Net -> a torch backend
    ms.register(_Doubler)
    try:
        assert ms.predict(net, x) == "from the plugin"  # the higher priority wins at once
    finally:
        REGISTRY.unregister("doubler")
    assert isinstance(ms.predict(net, x), np.ndarray)


def test_caches_are_bounded() -> None:
    import importlib

    from modelstore.storage.hashing import _Cache

    predict_mod = importlib.import_module("modelstore.api.predict")

    cache = _Cache(3)
    for i in range(10):
        cache[i] = str(i)
    assert len(cache) == 3 and cache.get(9) == "9" and cache.get(0) is None
    assert predict_mod.CACHE_SIZE > 0 and len(predict_mod._PREDICTORS) <= predict_mod.CACHE_SIZE
    # the plain call's per-type entries too: more module types than the bound, each predicted
    import torch

    x = np.zeros((1, 2), np.float32)
    for i in range(predict_mod.CACHE_SIZE + 3):
        kind = type(f"Tiny{i}", (torch.nn.Linear,), {})
        assert ms.predict(kind(2, 1).eval(), x).shape == (1, 1)
    assert len(predict_mod._RAW_CALLS) == predict_mod.CACHE_SIZE
    assert kind in predict_mod._RAW_CALLS


def test_labels_travel_with_the_object_not_the_process(tmp_path: Path) -> None:
    """predict(output="label") reads labels from the loaded object itself; a copy made in
    another process (pickled) or a model loaded without labels carries none."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path, config={"hidden": 32}, labels=list("abcdefghij"))
    net = ms.load(path, model=models.Net)
    x = np.zeros((2, 64), np.float32)
    assert set(ms.predict(net, x, output="label")) <= set("abcdefghij")
    plain = ms.load(path, model=models.Net, verify=False)
    plain.__dict__.pop("__modelstore_meta__")
    assert all(isinstance(v, int) for v in ms.predict(plain, x, output="label"))


# -- the plugin API ------------------------------------------------------------------------------


def test_reserved_suffixes_cannot_be_claimed() -> None:
    class Sneaky(Backend):
        name = "sneaky"
        suffixes = (".modelstore.json",)

    class Index(Backend):
        name = "indexer"
        suffixes = (".safetensors.index.json",)

    for cls in (Sneaky, Index):
        with pytest.raises(ms.RegistryError, match="reserves"):
            ms.register(cls)


def test_a_plugin_declaring_itself_safe_is_still_scanned(tmp_path: Path) -> None:
    class Liar(Backend):
        name = "liar"
        suffixes = (".liar",)
        risk = "safe"

        def sniff(self, path: Path, head: bytes) -> bool:
            return head.startswith(b"LIAR")

        def scan(self, path: Path) -> ms.ScanReport:
            return ms.ScanReport(
                str(path), self.name, "unsafe", [ms.Finding("builtins.exec", "critical", "code")]
            )

        def load(self, path: Path, request: Any) -> Any:
            raise AssertionError("the gate must refuse before the backend loads")

        def inspect(self, path: Path) -> Inspection:
            return Inspection(framework=None)

    ms.register(Liar, clobber=True)
    try:
        (tmp_path / "m.liar").write_bytes(b"LIAR....")
        with pytest.raises(ms.UnsafeModelError):
            ms.load(tmp_path / "m.liar")
    finally:
        from modelstore.pipeline.registry import REGISTRY

        REGISTRY.unregister("liar")


def test_the_plugin_api_exports_what_a_backend_needs() -> None:
    import importlib

    api = importlib.import_module(
        "modelstore.backends"
    )  # `ms.backends` is the function listing them

    for name in (
        "Backend",
        "Inspection",
        "LoadRequest",
        "PredictRequest",
        "Exported",
        "TensorInfo",
        "ScanReport",
        "is_instance_of",
        "describe_inputs",
        "labels_from_scores",
        "new_checksum",
        "format_checksum",
        "check_checksum",
        "file_checksum",
    ):
        assert hasattr(api, name), name


# -- formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["float8_e4m3fnuz", "float8_e5m2fnuz", "uint16", "uint32", "uint64", "complex64"]
)
def test_safetensors_dtypes_of_the_format(tmp_path: Path, dtype: str) -> None:
    from safetensors.torch import save_file

    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sd = {"t": t.to(getattr(torch, dtype)) if dtype != "complex64" else torch.complex(t, t)}
    save_file(sd, str(tmp_path / "x.safetensors"))
    back = ms.load(tmp_path / "x.safetensors")
    assert back["t"].dtype == sd["t"].dtype
    assert torch.equal(back["t"].view(torch.uint8), sd["t"].view(torch.uint8))
    assert ms.inspect(tmp_path / "x.safetensors").tensors[0].dtype == dtype


def test_one_index_suffix_constant() -> None:
    root = Path(ms.__file__).parent
    defs = [p for p in root.rglob("*.py") if "INDEX_SUFFIX =" in p.read_text()]
    assert [p.name for p in defs] == ["index.py"]


def test_load_takes_config_for_files_that_carry_none(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    net = models.Net(hidden=16)
    save_file(net.state_dict(), str(tmp_path / "foreign.safetensors"))
    back = ms.load(tmp_path / "foreign.safetensors", model=models.Net, config={"hidden": 16})
    assert same(back.state_dict(), net.state_dict())
    with pytest.raises(ms.ArgumentError, match="config= must be a dict"):
        ms.load(tmp_path / "foreign.safetensors", model=models.Net, config=[16])
    assert os.path.exists(tmp_path / "foreign.safetensors")


def test_no_private_third_party_apis() -> None:
    """No module reaches into a framework's private helpers (they change without notice)."""
    import re

    root = Path(ms.__file__).parent
    pattern = re.compile(
        r"\b(onnx|torch|keras|sklearn|joblib|safetensors|h5py)(\.[a-z_]+)*\.(_[a-z]\w*)\("
    )
    hits = [
        f"{p.relative_to(root)}: {m.group(0)}"
        for p in root.rglob("*.py")
        for m in pattern.finditer(p.read_text())
        if "external_data_helper" in m.group(0) or m.group(3) == "_get_all_tensors"
    ]
    assert hits == []


def test_safetensors_header_parsed_once_per_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One load or inspect parses and validates the header once; the next call (a new pass)
    parses again, so a file saved anew in between is read anew."""
    from modelstore.formats.safetensors import file as st_file

    calls = []
    real = st_file.header_from_reader
    monkeypatch.setattr(st_file, "header_from_reader", lambda *a: calls.append(1) or real(*a))
    path = tmp_path / "m.safetensors"
    ms.save({"a": torch.zeros(3)}, path)
    for run in (
        lambda: ms.load(path),
        lambda: ms.inspect(path),
        lambda: ms.load(path, verify=False),
    ):
        calls.clear()
        run()
        assert len(calls) == 1
    ms.save({"a": torch.ones(4)}, path, overwrite=True)
    assert ms.load(path)["a"].shape == (4,)

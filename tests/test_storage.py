"""fsspec URIs on every public call, and ms.Store on a local folder and on a real S3 server.

S3 is moto in server mode on loopback (tests/s3server.py), reached through s3fs over HTTP:
the same client code path as a real bucket.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelstore as ms
from tests import models


@pytest.fixture
def mem() -> str:
    """A fresh ``memory://`` folder."""
    return f"memory://t-{uuid.uuid4().hex[:10]}"


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- URIs on the public calls ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["memory", "s3", "file"])
def test_save_load_predict_inspect_on_uris(
    where: str, request: pytest.FixtureRequest, tmp_path: Path, x64: np.ndarray
) -> None:
    base = {
        "memory": lambda: request.getfixturevalue("mem"),
        "s3": lambda: request.getfixturevalue("s3_bucket") + "/models",
        "file": lambda: f"file://{tmp_path}",
    }[where]()
    net = models.trained_net()
    uri = f"{base}/digits.safetensors"
    info = ms.save(net, uri, config={"hidden": 32}, labels=list("0123456789"), metadata={"run": 7})
    assert info.path == (uri if where != "file" else str(tmp_path / "digits.safetensors"))
    back = ms.load(uri, model=models.Net)
    assert weights_equal(back, net)
    assert np.array_equal(ms.predict(back, x64), ms.predict(net, x64))
    looked = ms.inspect(uri)
    assert looked.num_params == info.num_params and looked.labels == list("0123456789")
    assert looked.metadata["run"] == 7 and looked.framework == "torch"
    assert ms.scan(uri).verdict == "safe"
    # a sidecar format: payload and sidecar travel together
    ms.save(net.state_dict(), f"{base}/digits.pt", metadata={"run": 8})
    with pytest.warns(ms.PickleWarning, match="digits.pt"):
        sd = ms.load(f"{base}/digits.pt")
    assert all(torch.equal(sd[k], net.state_dict()[k]) for k in sd)
    assert ms.inspect(f"{base}/digits.pt").metadata["run"] == 8


def test_remote_errors_name_the_uri(s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ms.ModelNotFoundError, match=f"{s3_bucket}/nope.safetensors"):
        ms.load(f"{s3_bucket}/nope.safetensors")
    with pytest.raises(ms.ModelNotFoundError):
        ms.inspect(f"{s3_bucket}/nope.safetensors")
    with pytest.raises(ms.ArgumentError, match="nosuchscheme"):
        ms.load("nosuchscheme://x/y.pt")
    ms.save(models.trained_net(), f"{s3_bucket}/a.safetensors")
    with pytest.raises(ms.ModelExistsError):
        ms.save(models.trained_net(), f"{s3_bucket}/a.safetensors", overwrite=False)
    # damaged on the server: the checksum catches it, and the message names the URI
    fs = ms.Store  # noqa: F841 - keep the public name in view
    import s3fs

    s3 = s3fs.S3FileSystem()
    key = f"{s3_bucket[5:]}/a.safetensors"
    blob = bytearray(s3.cat_file(key))
    blob[-3] ^= 0xFF
    s3.pipe_file(key, bytes(blob))
    with pytest.raises(ms.IntegrityError, match=f"{s3_bucket}/a.safetensors"):
        ms.load(f"{s3_bucket}/a.safetensors")


def test_hostile_remote_pickle_is_refused_and_never_runs(s3_bucket: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    import s3fs

    s3fs.S3FileSystem().pipe_file(f"{s3_bucket[5:]}/evil.pkl", pickle.dumps({"w": Payload()}))
    with pytest.raises(ms.UnsafeModelError, match=f"{s3_bucket}/evil.pkl") as e:
        ms.load(f"{s3_bucket}/evil.pkl")
    assert "pathlib" in str(e.value)
    report = ms.scan(f"{s3_bucket}/evil.pkl")
    assert report.verdict == "unsafe" and report.path == f"{s3_bucket}/evil.pkl"
    assert not marker.exists()


class CountingFS:
    """Registers ``countmem://``: fsspec's real in-memory filesystem, counting the bytes
    every read returns (to prove what a remote inspect downloads)."""

    read = 0

    @classmethod
    def register(cls) -> None:
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        class Counting(MemoryFileSystem):
            protocol = "countmem"

            def cat_file(
                self, path: str, start: int | None = None, end: int | None = None, **kw: Any
            ) -> bytes:
                data: bytes = super().cat_file(path, start=start, end=end, **kw)
                cls.read += len(data)
                return data

            def get_file(self, rpath: str, lpath: str, *a: Any, **kw: Any) -> None:
                cls.read += self.info(rpath)["size"]
                super().get_file(rpath, lpath, *a, **kw)

        fsspec.register_implementation("countmem", Counting, clobber=True)


def test_remote_inspect_of_safetensors_reads_only_the_header() -> None:
    CountingFS.register()
    big = {"w": torch.randn(512, 1024), "b": torch.randn(1024)}  # ~2 MB of tensors
    uri = f"countmem://c-{uuid.uuid4().hex[:8]}/big.safetensors"
    ms.save(big, uri, metadata={"note": "header only"})
    CountingFS.read = 0
    info = ms.inspect(uri)
    assert info.metadata["note"] == "header only" and info.num_params == 512 * 1024 + 1024
    assert info.size_bytes > 2_000_000
    assert CountingFS.read < 4096, f"inspect read {CountingFS.read} bytes"
    CountingFS.read = 0
    assert ms.scan(uri).verdict == "safe"
    assert CountingFS.read < 4096, f"scan read {CountingFS.read} bytes"
    # a truncated remote file: the header says so, still without downloading it
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(path, fs.cat_file(path)[:-100])
    report = ms.scan(uri)
    assert report.verdict == "unknown" and "truncated" in report.findings[0].reason


@pytest.mark.slow
def test_convert_and_export_between_uris(mem: str, x64: np.ndarray) -> None:
    net = models.trained_net()
    ms.save(net.state_dict(), f"{mem}/w.pth")
    with pytest.warns(ms.PickleWarning):
        info = ms.convert(f"{mem}/w.pth", f"{mem}/w.safetensors")
    assert info.path == f"{mem}/w.safetensors" and info.format == "safetensors"
    assert weights_equal(ms.load(f"{mem}/w.safetensors", model=models.Net), net)
    onnx_info = ms.export_onnx(net, f"{mem}/net.onnx", sample_input=x64[:4])
    assert onnx_info.path == f"{mem}/net.onnx"
    np.testing.assert_allclose(
        ms.predict(f"{mem}/net.onnx", x64), ms.predict(net, x64), rtol=1e-4, atol=1e-5
    )


# -- the store ---------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ms.Store:
    if request.param == "local":
        return ms.Store(tmp_path / "store")
    return ms.Store(request.getfixturevalue("s3_bucket") + "/team")


def test_store_versions_aliases_delete(store: ms.Store, x64: np.ndarray, tmp_path: Path) -> None:
    nets = [models.trained_net(seed=s) for s in (1, 2, 3)]
    v1 = store.save(
        nets[0],
        "digits-mlp",
        config={"hidden": 32},
        labels=list("0123456789"),
        metadata={"acc": 0.91},
        tags={"data": "digits"},
    )
    v2 = store.save(nets[1], "digits-mlp", config={"hidden": 32}, metadata={"acc": 0.95})
    assert (v1, v2) == (1, 2)
    assert store.list() == ["digits-mlp"]
    store.alias("digits-mlp", v1, "prod")
    assert weights_equal(store.load("digits-mlp", model=models.Net), nets[1])  # latest
    assert weights_equal(store.load("digits-mlp@latest", model=models.Net), nets[1])
    assert weights_equal(store.load("digits-mlp@1", model=models.Net), nets[0])
    prod = store.load("digits-mlp@prod", model=models.Net)
    assert weights_equal(prod, nets[0])
    assert ms.predict(prod, x64[:3], output="label") == ms.predict(nets[0], x64[:3], output="label")
    listed = store.versions("digits-mlp")
    assert [(v.version, v.aliases) for v in listed] == [(1, ["prod"]), (2, [])]
    first = listed[0]
    assert first.metadata["acc"] == 0.91 and first.tags == {"data": "digits"}
    assert first.format == "safetensors" and first.framework == "torch" and len(first.sha256) == 64
    assert first.files == {"model.safetensors": first.size_bytes}
    # the recorded sha256 pins the file
    assert weights_equal(store.load("digits-mlp@1", model=models.Net, sha256=first.sha256), nets[0])
    # the alias moves; delete hides a version for good and its number is not reused
    store.alias("digits-mlp", v2, "prod")
    assert store.info("digits-mlp@prod").version == 2
    store.delete("digits-mlp", 2)
    assert [v.version for v in store.versions("digits-mlp")] == [1]
    with pytest.raises(ms.ModelNotFoundError, match="prod"):
        store.load("digits-mlp@prod")
    assert store.save(nets[2], "digits-mlp", config={"hidden": 32}) == 3
    # pull copies a version's files to a local folder, loadable without the store
    pulled = store.pull("digits-mlp@3", tmp_path / "pulled")
    assert pulled == tmp_path / "pulled" / "model.safetensors"
    assert weights_equal(ms.load(pulled, model=models.Net), nets[2])


def test_store_other_formats_and_push(store: ms.Store, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(X, y)
    v = store.save(clf, "iris", labels=["setosa", "versicolor", "virginica"])
    assert store.info(f"iris@{v}").files.keys() == {"model.joblib", "model.joblib.modelstore.json"}
    with pytest.warns(ms.PickleWarning):
        back = store.load("iris")
    assert ms.predict(back, X[:5], output="label") == ms.predict(clf, X[:5], output="label")
    # push an existing file (a torch checkpoint with its sidecar) without loading it
    ms.save(models.trained_net().state_dict(), tmp_path / "w.pt", metadata={"from": "disk"})
    pv = store.push(tmp_path / "w.pt", "pushed", tags=["baseline"], metadata={"note": "pushed"})
    info = store.info(f"pushed@{pv}")
    assert info.format == "torch" and info.tags == {"baseline": ""}
    assert info.metadata == {"from": "disk", "note": "pushed"}
    assert set(info.files) == {"w.pt", "w.pt.modelstore.json"}
    with pytest.warns(ms.PickleWarning):
        sd = store.load("pushed")
    assert set(sd) == set(models.trained_net().state_dict())
    assert store.list() == ["iris", "pushed"]


def test_store_refuses_bad_names_and_refs(tmp_path: Path) -> None:
    store = ms.Store(tmp_path)
    for bad in ["../up", "a/b", "", "x@y", ".hidden"]:
        with pytest.raises(ms.ArgumentError):
            store.save(models.trained_net(), bad)
    store.save(models.trained_net(), "m")
    with pytest.raises(ms.ModelNotFoundError, match="versions: 1"):
        store.load("m@9")
    with pytest.raises(ms.ModelNotFoundError, match="aliases: none"):
        store.load("m@staging")
    with pytest.raises(ms.ModelNotFoundError, match="no versions"):
        store.load("other")
    with pytest.raises(ms.ArgumentError):
        store.alias("m", 1, "latest")
    with pytest.raises(ms.ModelNotFoundError):
        store.alias("m", 5, "prod")
    # a failed save leaves no visible version and no files
    with pytest.raises(ms.UnsupportedModelError):
        store.save(object(), "m")
    assert [v.version for v in store.versions("m")] == [1]


def test_store_manifest_is_hostile_input(tmp_path: Path) -> None:
    store = ms.Store(tmp_path)
    store.save(models.trained_net(), "m")
    manifest = tmp_path / "m" / "versions" / "000001.json"
    data = json.loads(manifest.read_text())
    data["entry"] = "../../../etc/passwd"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ms.UnsafeModelError, match="climbs out of the folder"):
        store.load("m")
    manifest.write_text("{not json")
    with pytest.raises(ms.FormatError, match="000001.json"):
        store.versions("m")


def test_store_default_root_is_modelstore_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSTORE_HOME", str(tmp_path / "home"))
    store = ms.Store()
    store.save(models.trained_net(), "m")
    assert (tmp_path / "home" / "m" / "versions" / "000001.json").is_file()


# -- the command -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_store_command_push_list_show_pull(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from tests.test_cli import run

    root = (
        str(tmp_path / "store")
        if where == "local"
        else request.getfixturevalue("s3_bucket") + "/cli"
    )
    net = models.trained_net()
    ms.save(net, tmp_path / "digits.safetensors", labels=list("0123456789"))
    pushed = run(
        "store",
        "--root",
        root,
        "push",
        str(tmp_path / "digits.safetensors"),
        "digits",
        "--tag",
        "data=digits",
        "--alias",
        "prod",
        "--metadata",
        '{"acc": 0.93}',
    )
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("pushed digits@1")
    assert (
        run(
            "store", "--root", root, "push", str(tmp_path / "digits.safetensors"), "digits"
        ).returncode
        == 0
    )
    listed = run("store", "--root", root, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "name": "digits",
            "versions": 2,
            "latest": 2,
            "format": "safetensors",
            "size_bytes": json.loads(listed.stdout)[0]["size_bytes"],
            "created": json.loads(listed.stdout)[0]["created"],
            "aliases": ["prod->1"],
        }
    ]
    shown = run("store", "--root", root, "show", "digits@prod")
    assert shown.returncode == 0 and "digits@1" in shown.stdout and "data=digits" in shown.stdout
    assert '"acc": 0.93' in shown.stdout and "digits.safetensors" in shown.stdout
    shown_json = json.loads(run("store", "--root", root, "show", "digits", "--json").stdout)
    assert (
        shown_json["version"] == 2
        and shown_json["sha256"] == ms.inspect(tmp_path / "digits.safetensors").sha256
    )
    pulled = run("store", "--root", root, "pull", "digits@prod", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert weights_equal(ms.load(pulled.stdout.strip(), model=models.Net), net)
    missing = run("store", "--root", root, "show", "digits@7")
    assert (
        missing.returncode == 2
        and "versions: 1, 2" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    bad = run("store", "--root", root, "push", str(tmp_path / "digits.safetensors"), "../evil")
    assert bad.returncode == 2 and "not a valid model name" in bad.stderr


# -- shards and dtype over URIs and in the store -----------------------------------------------


class Wide(torch.nn.Module):
    """Four 64x64 layers: ~66 KB of float32, so "20KB" shards make at least 3 files."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*(torch.nn.Linear(64, 64) for _ in range(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_sharded_and_cast_checkpoints_over_s3(s3_bucket: str, x64: np.ndarray) -> None:
    torch.manual_seed(0)
    net = Wide().eval()
    info = ms.save(net, f"{s3_bucket}/wide", max_shard_size="10KB", dtype="bfloat16")
    assert info.path == f"{s3_bucket}/wide/model.safetensors.index.json"
    import s3fs

    names = sorted(p.rsplit("/", 1)[-1] for p in s3fs.S3FileSystem().ls(f"{s3_bucket[5:]}/wide"))
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) >= 3 and "model.safetensors.index.json" in names
    for ref in (f"{s3_bucket}/wide", info.path):  # the folder or the index
        back = ms.load(ref, model=Wide)
        assert next(back.parameters()).dtype == torch.float32  # the module's own dtype
        np.testing.assert_allclose(ms.predict(back, x64), ms.predict(net, x64), atol=5e-2)
    assert ms.inspect(f"{s3_bucket}/wide").num_params == sum(p.numel() for p in net.parameters())
    assert ms.scan(f"{s3_bucket}/wide").verdict == "safe"


def test_store_keeps_sharded_versions(store: ms.Store, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Wide().eval()
    v = store.save(
        net, "wide", max_shard_size="10KB", dtype="float16", metadata={"note": "sharded"}
    )
    info = store.info(f"wide@{v}")
    assert info.path.endswith("/versions/000001/model/model.safetensors.index.json")
    assert len([f for f in info.files if f.startswith("model/model-")]) >= 3
    back = store.load("wide", model=Wide)
    assert all(
        torch.allclose(a, b, atol=1e-3)
        for a, b in zip(back.state_dict().values(), net.state_dict().values())
    )
    pulled = store.pull("wide", tmp_path / "pulled")
    assert pulled.name == "model.safetensors.index.json"
    assert isinstance(ms.load(pulled.parent, model=Wide), Wide)
    # push a sharded folder as it is
    ms.save(net, tmp_path / "local-shards", max_shard_size="20KB")
    pv = store.push(tmp_path / "local-shards", "wide")
    assert store.info(f"wide@{pv}").path.endswith("local-shards/model.safetensors.index.json")
    assert weights_equal(store.load(f"wide@{pv}", model=Wide), net)


# -- hostile numbers, nesting and refs (no foreign exception from a store or a remote header) ------


def _naive(text: str) -> BaseException:
    """What plain ``json`` + ``int`` raise on ``text`` (the code path before the bounded reader)."""
    try:
        int(json.loads(text)["size_bytes"])
    except BaseException as e:  # noqa: BLE001 - we want to see exactly what escapes
        return e
    raise AssertionError("the naive path accepted it")


@pytest.mark.parametrize(
    "text, naive",
    [
        ('{"size_bytes": 1e999}', OverflowError),
        ('{"size_bytes": Infinity}', OverflowError),
        ('{"size_bytes": NaN}', ValueError),
        ('{"size_bytes": ' + "[" * 100_000 + "]" * 100_000 + "}", RecursionError),
        ('{"size_bytes": ' + "9" * 5000 + "}", ValueError),
    ],
)
def test_hostile_manifest_numbers_are_format_errors(
    tmp_path: Path, text: str, naive: type[BaseException]
) -> None:
    """Overflowing, infinite, NaN, huge and 100,000-deep manifest values raise FormatError, not what json/int raise."""
    assert isinstance(_naive(text), naive)
    store = ms.Store(tmp_path)
    store.save(models.trained_net(), "m")
    (tmp_path / "m" / "versions" / "000001.json").write_text(text)
    for call in (lambda: store.versions("m"), lambda: store.info("m@1"), lambda: store.load("m")):
        with pytest.raises(ms.FormatError, match="000001.json"):
            call()


@pytest.mark.parametrize(
    "field, value",
    [
        ("size_bytes", -5),
        ("size_bytes", True),
        ("size_bytes", 2**64),
        ("size_bytes", "7"),
        ("size_bytes", 1.5),
        ("files", {"model.safetensors": -1}),
        ("files", {"model.safetensors": 10**30}),
        ("files", [1]),
        ("tags", {"a": 1}),
        ("metadata", [1]),
        ("format", 3),
        ("framework", ["torch"]),
    ],
)
def test_manifest_fields_are_type_and_range_checked(tmp_path: Path, field: str, value: Any) -> None:
    """A manifest field of the wrong type or a size out of range is a FormatError naming the manifest."""
    store = ms.Store(tmp_path)
    store.save(models.trained_net(), "m")
    path = tmp_path / "m" / "versions" / "000001.json"
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ms.FormatError, match="000001.json.*malformed"):
        store.info("m@1")


@pytest.mark.parametrize(
    "ref", ["m@²", "m@" + "9" * 5000, "m@١٢", "m@" + "1" * 19, "m@-1", "m@a/b", "m@", "m@@1"]
)
def test_malformed_version_refs_are_argument_errors(tmp_path: Path, ref: str) -> None:
    """Refs whose version passes str.isdigit but not int(), non-ASCII digits, absurdly long numbers and
    malformed refs raise ArgumentError naming the ref."""
    number = ref.split("@", 1)[1]
    if number in ("²", "9" * 5000):  # the naive parse: isdigit() says yes, int() raises ValueError
        assert number.isdigit()
        with pytest.raises(ValueError):
            int(number)
    store = ms.Store(tmp_path)
    store.save(models.trained_net(), "m")
    if ref == "m@":
        assert store.info(ref).version == 1  # an empty version means the latest
        return
    for call in (store.load, store.info, store.resolve):
        with pytest.raises(ms.ArgumentError, match="not a valid model reference") as e:
            call(ref)
        assert len(str(e.value)) < 600


def test_odd_names_in_a_store_folder_are_ignored(tmp_path: Path) -> None:
    """Entries whose number is not plain ASCII digits, and aliases out of range, never crash listing or saving."""
    store = ms.Store(tmp_path)
    store.save(models.trained_net(), "m")
    versions = tmp_path / "m" / "versions"
    for name in ("².json", "١.claim", "9" * 40 + ".json", "x.json"):
        (versions / name).write_text("{}")
    (tmp_path / "m" / "aliases").mkdir()
    (tmp_path / "m" / "aliases" / "big.json").write_text('{"version": ' + "9" * 4000 + "}")
    (tmp_path / "m" / "aliases" / "neg.json").write_text('{"version": -1}')
    assert [v.version for v in store.versions("m")] == [1]
    assert store.save(models.trained_net(), "m") == 2
    with pytest.raises(ms.ModelNotFoundError, match="aliases: none"):
        store.load("m@big")


@pytest.mark.parametrize("where", ["memory", "s3"])
def test_remote_header_nested_50000_deep_is_a_format_error(
    where: str, request: pytest.FixtureRequest
) -> None:
    """A remote safetensors header nested 50,000 deep: scan says unknown, inspect and load raise FormatError."""
    import struct

    import fsspec.core

    base = (
        request.getfixturevalue("mem")
        if where == "memory"
        else request.getfixturevalue("s3_bucket")
    )
    uri = f"{base}/deep.safetensors"
    header = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(RecursionError):
        json.loads(header)
    fs, path = fsspec.core.url_to_fs(uri)
    fs.pipe_file(path, struct.pack("<Q", len(header)) + header)
    report = ms.scan(uri)
    assert report.verdict == "unknown" and "nests too deeply" in report.findings[0].reason
    with pytest.raises(ms.FormatError, match="nests too deeply"):
        ms.inspect(uri)
    with pytest.raises(ms.FormatError):
        ms.load(uri)


def test_remote_header_only_inspect_validates_metadata_like_a_local_one(
    mem: str, tmp_path: Path
) -> None:
    """Metadata of the wrong type in a header is refused by a remote header-only inspect as by a local one."""
    import fsspec.core
    from safetensors.torch import save_file

    local = tmp_path / "bad.safetensors"
    save_file(
        {"w": torch.zeros(2)}, str(local), metadata={"modelstore": json.dumps({"config": [1, 2]})}
    )
    with pytest.raises(ms.FormatError, match="malformed 'config'"):
        ms.inspect(local)
    fs, path = fsspec.core.url_to_fs(f"{mem}/bad.safetensors")
    fs.pipe_file(path, local.read_bytes())
    with pytest.raises(ms.FormatError, match="malformed 'config'"):
        ms.inspect(f"{mem}/bad.safetensors")
    deep = tmp_path / "deep.safetensors"
    save_file({"w": torch.zeros(2)}, str(deep), metadata={"modelstore": "[" * 5000 + "]" * 5000})
    fs.pipe_file(f"{path}.deep.safetensors", deep.read_bytes())
    for target in (deep, f"{mem}/bad.safetensors.deep.safetensors"):
        with pytest.raises(ms.FormatError):
            ms.inspect(target)


def test_remote_companion_names_are_never_fetched_from_elsewhere(mem: str, tmp_path: Path) -> None:
    """A remote index or ONNX graph naming companions with '..' or encoded separators fetches nothing else."""
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(mem)
    fs.pipe_file(f"{root}/secret.safetensors", b"secret bytes")
    index = {"weight_map": {"w": "%2e%2e%2fsecret.safetensors"}}
    fs.pipe_file(f"{root}/ckpt/model.safetensors.index.json", json.dumps(index).encode())
    for call in (
        lambda: ms.load(f"{mem}/ckpt"),
        lambda: ms.inspect(f"{mem}/ckpt/model.safetensors.index.json"),
    ):
        with pytest.raises(ms.UnsafeModelError, match="percent-escape"):
            call()
    from modelstore.pipeline import locate

    assert (
        not locate.plain_name("%2e%2e%2fw.bin")
        and not locate.plain_name("..")
        and not locate.plain_name("a/b")
        and locate.plain_name("w.bin")
    )


def test_store_metadata_that_json_cannot_hold_is_an_argument_error(tmp_path: Path) -> None:
    """NaN in metadata is refused when written, so every manifest reads back through the bounded reader."""
    store = ms.Store(tmp_path / "store")
    with pytest.raises(ms.ArgumentError, match="JSON"):
        store.save(models.trained_net(), "m", metadata={"loss": float("nan")})
    ms.save(models.trained_net(), tmp_path / "w.safetensors")
    with pytest.raises(ms.ArgumentError, match="NaN"):
        store.push(tmp_path / "w.safetensors", "m", metadata={"loss": float("inf")})
    with pytest.raises(ms.ArgumentError, match="JSON"):
        ms.save(models.trained_net(), tmp_path / "x.safetensors", metadata={"loss": float("nan")})
    assert store.list() == []


@pytest.mark.parametrize("where", ["folder", "mem"])
def test_store_latest_reads_one_manifest(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest version is the highest published number, from one listing and one manifest
    read; a claim without its manifest is not a version; a deleted latest falls back."""
    root = str(tmp_path / "s") if where == "folder" else f"memory://latest-{uuid.uuid4().hex}"
    store = ms.Store(root)
    for i in range(4):
        store.save({"w": torch.full((2,), float(i))}, "m")
    store._claim("m")  # a save in progress: number 5 claimed, not published
    reads: list[str] = []
    real = type(store)._read_json
    monkeypatch.setattr(type(store), "_read_json", lambda self, p: reads.append(p) or real(self, p))
    assert store.resolve("m").version == 4
    assert [r for r in reads if "/versions/" in r] == [store._vdir("m", 4) + ".json"]
    assert float(store.load("m")["w"][0]) == 3.0
    store.delete("m", 4)
    assert store.resolve("m@latest").version == 3


def test_copy_hashing_overlapped_copies_and_hashes_exactly(tmp_path: Path) -> None:
    """The pinned copy: several chunks (and a ragged end) hashed in a second thread while
    written; the digest is of exactly the bytes written, and a new file is never overwritten."""
    import hashlib

    from modelstore.storage import pipehash
    from modelstore.storage.hashing import copy_hashing

    data = os.urandom(3 * pipehash.CHUNK + 12345)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    for name, size in (("empty", 0), ("small", 10), ("big", len(data))):
        part = tmp_path / f"{name}.in"
        part.write_bytes(data[:size])
        dst = tmp_path / f"{name}.out"
        assert copy_hashing(part, dst) == hashlib.sha256(data[:size]).hexdigest()
        assert dst.read_bytes() == data[:size]
        with pytest.raises(FileExistsError):
            copy_hashing(part, dst)

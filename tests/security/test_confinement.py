"""One confinement check for every companion file: sidecars, shard indexes and shards, ONNX
external data, store manifests, aliases, version folders and entries, pull and fetch.

Each hostile layout is first shown to reach outside under the naive code path (a plain
``open``/``json.loads``/framework reader follows the link and reads the canary), then refused
by every public entry point that reads that kind of file, with a ModelstoreError whose text
never holds the canary, and nothing written outside.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import modelstore as ms  # noqa: E402
from modelstore.security import confine as confine_mod  # noqa: E402
from modelstore.security.confine import (  # noqa: E402
    ConfinementError,
    check_name,
    confine,
    external_data_problem,
    open_confined,
    read_confined,
)
from tests import models  # noqa: E402

CANARY = f"CANARY-{uuid.uuid4().hex}"
CANARY_VALUE = 1234.5  # what an outside tensor holds


# -- helpers -----------------------------------------------------------------------------------


def texts_of(e: BaseException) -> str:
    """Everything an exception shows: its message, its args and every chained cause."""
    out = []
    cur: BaseException | None = e
    while cur is not None:
        out += [str(cur), repr(cur.args)]
        cur = cur.__cause__ or cur.__context__
    return "\n".join(out)


def refused(
    call: Callable[[], Any], error: type[Exception] = ms.UnsafeModelError, match: str | None = None
) -> str:
    """Run ``call``; it must raise ``error`` (a ModelstoreError) without the canary in it."""
    with pytest.raises(error, match=match) as e:
        call()
    assert isinstance(e.value, ms.ModelstoreError)
    assert CANARY not in texts_of(e.value)
    return str(e.value)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (to prove nothing was written there)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every model folder, holding canaries of each kind."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.json").write_text(
        json.dumps(
            {
                "sidecar_version": 2,
                "versions": [{"format": "joblib", "metadata": {"stolen": CANARY}}],
                "weight_map": {},
                "metadata": {"stolen": CANARY},
            }
        )
    )
    safetensors_torch.save_file(
        {"fc2.bias": torch.full((10,), CANARY_VALUE)},
        str(folder / "secret.safetensors"),
        metadata={"stolen": CANARY},
    )
    (folder / "secret.bin").write_bytes(np.full(3, CANARY_VALUE, np.float32).tobytes())
    return folder


@pytest.fixture
def sk_model(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A fitted scikit-learn model saved with its sidecar, and inputs for it."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.joblib"
    ms.save(LogisticRegression(max_iter=300).fit(X, y), path, metadata={"run": 1})
    return path, X[:3]


def relink(link: Path, target: Path) -> None:
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


# -- the check itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../secret.json",
        "a/../../secret.json",
        "%2e%2e/secret.json",
        "%2E%2E%2Fsecret.json",
        "..%2fsecret.json",
        "..%5csecret.json",
        "%252e%252e%252fsecret.json",
        "..\\secret.json",
        "a\\b.json",
        "C:secret.json",
        "C:\\secret.json",
        "x.json:stream",
        "x\x00.json",
        "x\n.json",
        "",
        ".",
        "./",
        3,
        None,
        "a" * 2000,
        "b" * 300 + ".json",
    ],
)
def test_names_that_could_lead_anywhere_are_refused(tmp_path: Path, name: Any) -> None:
    """Absolute, '..', encoded, backslash, drive, NUL, empty and oversized names are refused before any disk access."""
    with pytest.raises(ConfinementError):
        check_name(name, what="the file", source="index.json")
    with pytest.raises(ConfinementError):
        confine(tmp_path, name, what="the file")
    assert isinstance(ConfinementError("x", "y"), ms.UnsafeModelError)


def test_plain_names_and_links_inside_are_accepted(tmp_path: Path) -> None:
    """Plain names, sub-folders and links that stay inside the folder resolve to the real file."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"w")
    (tmp_path / "link.bin").symlink_to("sub/w.bin")
    (tmp_path / "linked").symlink_to("sub")
    real = (tmp_path / "sub" / "w.bin").resolve()
    for name in ("sub/w.bin", "./sub/w.bin", "link.bin", "linked/w.bin"):
        assert confine(tmp_path, name, what="the file") == real
        assert read_confined(tmp_path, name, what="the file", max_bytes=10) == b"w"


def test_links_files_and_folders_leading_outside_are_refused(tmp_path: Path, outside: Path) -> None:
    """A link of the file, or of any folder on the way, that leads outside is refused; a plain open follows it."""
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "file.json").symlink_to(outside / "secret.json")
    (base / "dir").symlink_to(outside)
    (base / "sub" / "up").symlink_to("../..")
    (base / "loop").symlink_to("loop")
    (base / "broken").symlink_to("nowhere")  # inside, but missing
    for name in ("file.json", "dir/secret.json", "sub/up/outside/secret.json"):
        assert CANARY in (base / name).read_text()  # the naive path reads the canary
        message = refused(
            lambda: read_confined(base, name, what="the sidecar", max_bytes=1 << 20),
            match="outside",
        )
        assert "Copy the file itself" in message
    refused(lambda: confine(base, "loop", what="the file"), match="cannot be resolved")
    refused(lambda: confine(base, "broken", what="the file"), match="broken link")
    with pytest.raises(ms.ModelNotFoundError):
        confine(base, "missing.json", what="the file")


def test_hard_links_fifos_devices_and_kernel_files_are_refused(
    tmp_path: Path, outside: Path
) -> None:
    """A hard link (another name of a file elsewhere), a FIFO, a device and /proc files are refused."""
    base = tmp_path / "base"
    base.mkdir()
    os.link(outside / "secret.json", base / "hard.json")
    assert CANARY in (base / "hard.json").read_text()  # the naive path reads the canary
    refused(
        lambda: read_confined(base, "hard.json", what="the file", max_bytes=1 << 20),
        match="hard link",
    )
    os.mkfifo(base / "fifo.json")
    refused(lambda: read_confined(base, "fifo.json", what="the file", max_bytes=10), match="a FIFO")
    (base / "dir.json").mkdir()
    refused(lambda: confine(base, "dir.json", what="the file"), match="a folder")
    (base / "null").symlink_to("/dev/null")
    refused(lambda: confine(base, "null", what="the file"), match="outside")
    try:
        os.mknod(base / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        pass
    else:
        refused(lambda: confine(base, "dev", what="the file"), match="a device")
    refused(lambda: confine("/proc/self", "environ", what="the file"), match="kernel state")
    refused(lambda: confine("/proc/self", "cwd/x", what="the file"))
    model = base / "m.onnx"
    model.write_bytes(b"graph")
    refused(
        lambda: confine(base, "m.onnx", what="the external data file", main=model),
        match="model file itself",
    )
    assert "m.onnx" in (external_data_problem(base, "m.onnx", main=model) or "")
    assert external_data_problem(base, "missing.bin", main=model) is not None


def test_a_swap_between_check_and_open_is_caught(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file or a folder swapped for a link, or for a hard link, after the check is never read."""
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    real_resolve = confine_mod.resolve  # the path check, as open_confined calls it

    def check_then(swap: Callable[[], None]) -> None:
        def swapping(*a: Any, **kw: Any) -> Any:
            out = real_resolve(*a, **kw)
            swap()
            return out

        monkeypatch.setattr(confine_mod, "resolve", swapping)

    (base / "side.json").write_text("{}")
    check_then(lambda: relink(base / "side.json", outside / "secret.json"))
    refused(
        lambda: read_confined(base, "side.json", what="the sidecar", max_bytes=1 << 20),
        match="replaced by a link",
    )

    (base / "sub" / "secret.json").write_text("{}")

    def swap_folder() -> None:
        os.rename(base / "sub", base / "old")
        (base / "sub").symlink_to(outside)

    check_then(swap_folder)
    refused(
        lambda: read_confined(base, "sub/secret.json", what="the shard", max_bytes=1 << 20),
        match="replaced by a link",
    )

    (base / "w.json").write_text("{}")

    def swap_hard() -> None:
        (base / "w.json").unlink()
        os.link(outside / "secret.json", base / "w.json")

    check_then(swap_hard)
    refused(
        lambda: read_confined(base, "w.json", what="the sidecar", max_bytes=1 << 20),
        match="hard link",
    )
    monkeypatch.undo()
    with open_confined(base, "old/secret.json", what="the file") as f:
        assert f.read() == b"{}"


def test_hugging_face_cache_blobs_of_the_same_repository_only(
    tmp_path: Path, outside: Path
) -> None:
    """A cache snapshot may link to content-addressed blobs of its own repository, nothing else."""
    repo = tmp_path / "hub" / "models--someone--net"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    blob = repo / "blobs" / ("a" * 64)
    blob.write_bytes(b"shard")
    (snapshot / "ok.safetensors").symlink_to(Path("..", "..", "blobs", blob.name))
    assert confine(snapshot, "ok.safetensors", what="the shard", hf_cache=True) == blob.resolve()
    refused(
        lambda: confine(snapshot, "ok.safetensors", what="the sidecar"), match="outside"
    )  # shards only
    other = tmp_path / "hub" / "models--other--net" / "blobs"
    other.mkdir(parents=True)
    (other / ("b" * 64)).write_bytes(b"x")
    (repo / "blobs" / "notahash").write_bytes(b"x")
    (snapshot / "other.safetensors").symlink_to(other / ("b" * 64))
    (snapshot / "named.safetensors").symlink_to(Path("..", "..", "blobs", "notahash"))
    (snapshot / "out.safetensors").symlink_to(outside / "secret.safetensors")
    for name in ("other.safetensors", "named.safetensors", "out.safetensors"):
        refused(lambda: confine(snapshot, name, what="the shard", hf_cache=True), match="outside")
    plain = tmp_path / "plain" / "snapshots" / "rev"  # not a cache repository's name
    (plain.parent.parent / "blobs").mkdir(parents=True)
    plain.mkdir(parents=True)
    (plain.parent.parent / "blobs" / ("c" * 64)).write_bytes(b"x")
    (plain / "s.safetensors").symlink_to(Path("..", "..", "blobs", "c" * 64))
    refused(
        lambda: confine(plain, "s.safetensors", what="the shard", hf_cache=True), match="outside"
    )


# -- sidecars ----------------------------------------------------------------------------------


@pytest.mark.parametrize("trick", ["symlink", "hardlink", "proc"])
def test_hostile_sidecar_is_refused_by_every_entry_point(
    sk_model: tuple[Path, np.ndarray], outside: Path, tmp_path: Path, trick: str
) -> None:
    """A sidecar that is another name of a file elsewhere is refused by load, predict, inspect, scan,
    convert and push; no canary in any message."""
    path, X = sk_model
    side = Path(str(path) + ".modelstore.json")
    side.unlink()
    if trick == "symlink":
        side.symlink_to(outside / "secret.json")
    elif trick == "hardlink":
        os.link(outside / "secret.json", side)
    else:
        side.symlink_to("/proc/self/environ")
    if trick != "proc":
        assert CANARY in json.dumps(json.loads(side.read_text()))  # the naive path shows it
    refused(lambda: ms.load(path))
    refused(lambda: ms.predict(path, X))
    refused(lambda: ms.inspect(path))
    refused(lambda: ms.convert(path, tmp_path / "out.joblib"))
    assert not (tmp_path / "out.joblib").exists()
    report = ms.scan(path)
    assert report.verdict == "unsafe" and report.findings[-1].subject == "sidecar"
    assert CANARY not in json.dumps(report.to_dict())
    store = ms.Store(tmp_path / "store")
    refused(lambda: store.push(path, "m"))
    assert store.list() == []


@pytest.mark.parametrize(
    "text",
    [
        '{"versions": [{"payload_size": 1e999}], "sidecar_version": 2}',
        '{"sidecar_version": Infinity}',
        "[" * 100_000 + "]" * 100_000,
        '{"versions": [{"config": ' + "9" * 5000 + "}]}",
    ],
)
def test_hostile_sidecar_json_is_a_format_error(
    sk_model: tuple[Path, np.ndarray], text: str
) -> None:
    """Overflowing, infinite, huge and 100,000-deep sidecar JSON is a FormatError naming the sidecar."""
    path, _ = sk_model
    Path(str(path) + ".modelstore.json").write_text(text)
    for call in (lambda: ms.load(path), lambda: ms.inspect(path)):
        with pytest.raises(ms.FormatError, match="sidecar"):
            call()


def test_fifo_sidecar_never_hangs(sk_model: tuple[Path, np.ndarray]) -> None:
    """A FIFO in place of the sidecar is refused without opening it (an open would block)."""
    from tests.test_cli import run

    path, _ = sk_model
    side = Path(str(path) + ".modelstore.json")
    side.unlink()
    os.mkfifo(side)
    proc = run("inspect", str(path))
    assert proc.returncode == 1 and "FIFO" in proc.stderr and "Traceback" not in proc.stderr
    refused(lambda: ms.load(path), match="FIFO")


def test_saving_over_a_linked_sidecar_replaces_the_link(
    sk_model: tuple[Path, np.ndarray], outside: Path
) -> None:
    """A save never writes through a sidecar link: the link is replaced and the outside file is untouched."""
    path, _ = sk_model
    side = Path(str(path) + ".modelstore.json")
    relink(side, outside / "secret.json")
    before = tree(outside)
    ms.save(_fitted(), path, metadata={"run": 2})
    assert tree(outside) == before
    assert not side.is_symlink() and CANARY not in side.read_text()
    assert ms.inspect(path).metadata["run"] == 2


def _fitted() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(X, y)


def test_cli_inspect_and_scan_refuse_hostile_companions(
    sk_model: tuple[Path, np.ndarray], outside: Path, tmp_path: Path
) -> None:
    """The command refuses a linked sidecar and a linked shard index: exit 2 or 1, no canary, no traceback."""
    from tests.test_cli import run

    path, _ = sk_model
    relink(Path(str(path) + ".modelstore.json"), outside / "secret.json")
    ckpt = tmp_path / "ckpt"
    ms.save(models.trained_net(), ckpt, max_shard_size="4KB")
    relink(ckpt / "model.safetensors.index.json", outside / "secret.json")
    for target in (path, ckpt):
        looked = run("inspect", str(target))
        assert looked.returncode == 1 and "outside" in looked.stderr, looked.stderr
        scanned = run("scan", str(target), "--json")
        assert scanned.returncode == 1 and json.loads(scanned.stdout)[0]["verdict"] == "unsafe"
        for proc in (looked, scanned):
            assert CANARY not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


# -- shard indexes and shards --------------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    """A sharded checkpoint of the digits net (several shards)."""
    folder = tmp_path / "ckpt"
    ms.save(models.trained_net(), folder, max_shard_size="4KB", config={"hidden": 32})
    return folder


@pytest.mark.parametrize("trick", ["symlink", "hardlink"])
def test_linked_shard_index_is_refused(
    ckpt: Path, outside: Path, tmp_path: Path, trick: str
) -> None:
    """A shard index that is a link to a file elsewhere is not read by load, inspect, scan, convert or push."""
    index = ckpt / "model.safetensors.index.json"
    if trick == "symlink":
        relink(index, outside / "secret.json")
    else:
        index.unlink()
        os.link(outside / "secret.json", index)
    assert CANARY in index.read_text()
    for ref in (ckpt, index):
        refused(lambda: ms.load(ref))
        refused(lambda: ms.load(ref, model=models.Net))
        refused(lambda: ms.predict(ref, np.zeros((1, 64), np.float32)))
        refused(lambda: ms.inspect(ref))
        refused(lambda: ms.convert(ref, tmp_path / "one.safetensors"))
        report = ms.scan(ref)
        assert report.verdict == "unsafe" and CANARY not in json.dumps(report.to_dict())
    refused(lambda: ms.Store(tmp_path / "store").push(ckpt, "m"))


@pytest.mark.parametrize("trick", ["symlink", "hardlink"])
def test_shard_leading_elsewhere_is_refused(
    ckpt: Path, outside: Path, tmp_path: Path, trick: str
) -> None:
    """A shard that is a link, or a hard link, to a file elsewhere loads its bytes naively; modelstore refuses it."""
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    last = index["weight_map"]["fc2.bias"]
    naive_before = safetensors_torch.load_file(str(ckpt / last))
    (ckpt / last).unlink()
    if trick == "symlink":
        (ckpt / last).symlink_to(outside / "secret.safetensors")
    else:
        os.link(outside / "secret.safetensors", ckpt / last)
    naive = safetensors_torch.load_file(str(ckpt / last))  # the naive path loads the outside tensor
    assert float(naive["fc2.bias"][0]) == CANARY_VALUE and set(naive) != set(naive_before)
    match = "outside" if trick == "symlink" else "hard link"
    refused(lambda: ms.load(ckpt), match=match)
    refused(lambda: ms.load(ckpt, model=models.Net, strict=False), match=match)
    refused(lambda: ms.inspect(ckpt), match=match)
    refused(lambda: ms.convert(ckpt, tmp_path / "one.safetensors"), match=match)
    report = ms.scan(ckpt)
    assert report.verdict == "unsafe" and report.findings[0].subject == last
    refused(lambda: ms.Store(tmp_path / "store").push(ckpt, "m"), match=match)


# -- ONNX external data (the graph walk calls the same check) -------------------------------------


def _external_model(folder: Path, location: str) -> Path:
    """A graph whose one initializer (3 floats) is read from external data at ``location``."""
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w]
    )
    path = folder / "m.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


@pytest.mark.parametrize("trick", ["linked-folder", "hardlink", "encoded", "self"])
def test_onnx_external_data_goes_through_the_same_check(
    tmp_path: Path, outside: Path, trick: str
) -> None:
    """External data through a linked folder, a hard link, an encoded name or the graph itself is refused."""
    ort = pytest.importorskip("onnxruntime")
    folder = tmp_path / "model"
    folder.mkdir()
    location = {
        "linked-folder": "sub/secret.bin",
        "hardlink": "w.bin",
        "encoded": "%2e%2e/outside/secret.bin",
        "self": "m.onnx",
    }[trick]
    if trick == "linked-folder":
        (folder / "sub").symlink_to(outside)
    elif trick == "hardlink":
        os.link(outside / "secret.bin", folder / "w.bin")
    path = _external_model(folder, location)
    if (
        trick == "linked-folder"
    ):  # a plain open follows the folder link (onnxruntime 1.32 refuses it too)
        assert np.frombuffer((folder / location).read_bytes(), np.float32)[0] == CANARY_VALUE
    if trick == "hardlink":  # onnxruntime itself reads the outside bytes through a hard link
        out = ort.InferenceSession(str(path)).run(None, {"x": np.zeros(3, np.float32)})[0]
        assert float(out[0]) == CANARY_VALUE
    report = ms.scan(path)
    assert report.verdict == "unsafe" and report.untrusted == [f"external:{location}"]
    refused(lambda: ms.load(path))
    refused(lambda: ms.predict(path, np.zeros(3, np.float32)))
    assert ms.inspect(path).globals == [f"external:{location}"]


# -- the store -----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ms.Store:
    """A local store holding version 1 of "m" (the digits net as safetensors)."""
    s = ms.Store(tmp_path / "store")
    s.save(models.trained_net(), "m")
    return s


def _vdir(store: ms.Store, n: int = 1) -> Path:
    return Path(store.root) / "m" / "versions" / f"{n:06d}"


def _store_refuses_everywhere(
    store: ms.Store, ref: str, dest: Path, match: str | None = None
) -> None:
    refused(lambda: store.load(ref, model=models.Net), match=match)
    refused(lambda: store.load(ref), match=match)
    refused(lambda: store.info(ref), match=match)
    refused(lambda: store.path(ref), match=match)
    refused(lambda: store.pull(ref, dest), match=match)
    assert not dest.exists() or CANARY.encode() not in b"".join(tree(dest).values())


def test_store_entry_linked_outside(store: ms.Store, outside: Path, tmp_path: Path) -> None:
    """A version whose model file is a link (or hard link) to a file elsewhere is never loaded or pulled."""
    entry = _vdir(store) / "model.safetensors"
    relink(entry, outside / "secret.safetensors")
    assert float(safetensors_torch.load_file(str(entry))["fc2.bias"][0]) == CANARY_VALUE  # naive
    _store_refuses_everywhere(store, "m@1", tmp_path / "pulled", match="outside")
    entry.unlink()
    os.link(outside / "secret.safetensors", entry)
    _store_refuses_everywhere(store, "m", tmp_path / "pulled2", match="hard link")


def test_store_version_folder_linked_outside(
    store: ms.Store, outside: Path, tmp_path: Path
) -> None:
    """A version folder that is a link to a folder elsewhere is refused; delete removes nothing outside."""
    vdir = _vdir(store)
    os.replace(vdir / "model.safetensors", outside / "model.safetensors")
    os.replace(outside / "secret.safetensors", outside / "model.safetensors")
    vdir.rmdir()
    vdir.symlink_to(outside)
    _store_refuses_everywhere(store, "m@1", tmp_path / "pulled", match="outside")
    before = tree(outside)
    store.delete("m", 1)
    assert tree(outside) == before


def test_store_manifests_aliases_and_folders_linked_outside(
    store: ms.Store, outside: Path, tmp_path: Path
) -> None:
    """Linked manifests, alias files and versions folders are refused, and a save never writes through them."""
    root = Path(store.root)
    manifest = json.loads((root / "m" / "versions" / "000001.json").read_text())
    (outside / "manifest.json").write_text(json.dumps({**manifest, "metadata": {"stolen": CANARY}}))
    (root / "m" / "versions" / "000002.json").symlink_to(outside / "manifest.json")
    assert CANARY in (root / "m" / "versions" / "000002.json").read_text()  # naive
    refused(lambda: store.versions("m"), match="outside")
    refused(lambda: store.info("m@2"), match="outside")
    (root / "m" / "versions" / "000002.json").unlink()
    (root / "m" / "aliases").mkdir()
    (outside / "alias.json").write_text(json.dumps({"version": 1, "stolen": CANARY}))
    (root / "m" / "aliases" / "prod.json").symlink_to(outside / "alias.json")
    refused(lambda: store.load("m@prod"), match="outside")
    (root / "m" / "aliases" / "prod.json").unlink()
    # the versions folder itself a link to a folder elsewhere: never listed, read or written
    (outside / "versions").mkdir()
    (root / "n" / "versions").parent.mkdir()
    (root / "n" / "versions").symlink_to(outside / "versions")
    ms.save(models.trained_net(), tmp_path / "x.safetensors")
    before = tree(outside)
    refused(lambda: store.save(models.trained_net(), "n"), match="outside")
    refused(lambda: store.push(tmp_path / "x.safetensors", "n"), match="outside")
    refused(lambda: store.list(), match="outside")
    assert tree(outside) == before


def test_store_save_never_writes_into_a_planted_version_folder(
    store: ms.Store, outside: Path
) -> None:
    """A link planted under the next version number is skipped: the save writes nothing outside."""
    (_vdir(store, 2)).symlink_to(outside)
    before = tree(outside)
    assert store.save(models.trained_net(seed=1), "m") == 3
    assert tree(outside) == before
    assert [v.version for v in store.versions("m")] == [1, 3]


def test_pull_never_copies_through_links(store: ms.Store, outside: Path, tmp_path: Path) -> None:
    """pull refuses a listed file that is a link out, and never writes through a linked folder in dest."""
    root = Path(store.root)
    mpath = root / "m" / "versions" / "000001.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"]["extra/notes.json"] = 10
    mpath.write_text(json.dumps(manifest))
    (_vdir(store) / "extra").mkdir()
    (_vdir(store) / "extra" / "notes.json").symlink_to(outside / "secret.json")
    refused(lambda: store.pull("m", tmp_path / "pulled"), match="outside")
    assert CANARY.encode() not in b"".join(tree(tmp_path / "pulled").values())
    (_vdir(store) / "extra" / "notes.json").unlink()
    (_vdir(store) / "extra" / "notes.json").write_text("{}")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "extra").symlink_to(outside)
    before = tree(outside)
    refused(lambda: store.pull("m", dest), match="outside")
    assert (
        tree(outside) == before and tree(dest) == {}
    )  # every file is checked before any is copied
    (dest / "extra").unlink()
    (dest / "model.safetensors").symlink_to(outside / "secret.safetensors")
    pulled = store.pull(
        "m", dest
    )  # a link at a pulled file's name is replaced, not written through
    assert tree(outside) == before and not pulled.is_symlink()
    assert isinstance(ms.load(pulled, model=models.Net), models.Net)


@pytest.mark.parametrize(
    "field, value",
    [
        ("entry", "%2e%2e/%2e%2e/secret.safetensors"),
        ("entry", "..\\..\\x"),
        ("entry", "/etc/passwd"),
        ("files", {"../../escaped.bin": 3}),
        ("files", {"a%2f..%2f..%2fescaped.bin": 3}),
    ],
)
def test_remote_store_manifest_names_stay_in_the_version(
    field: str, value: Any, tmp_path: Path
) -> None:
    """On a memory:// store a manifest naming files outside its version is refused; pull writes nothing outside."""
    import fsspec

    root = f"memory://confine-{uuid.uuid4().hex[:8]}"
    store = ms.Store(root)
    store.save(models.trained_net(), "m")
    fs = fsspec.filesystem("memory")
    mpath = f"{root[len('memory://') :]}/m/versions/000001.json"
    manifest = json.loads(fs.cat_file(mpath))
    manifest[field] = value if field == "entry" else {**manifest["files"], **value}
    fs.pipe_file(mpath, json.dumps(manifest).encode())
    dest = tmp_path / "a" / "b" / "dest"
    refused(lambda: store.pull("m", dest))
    refused(lambda: store.load("m", model=models.Net))
    refused(lambda: store.info("m@1"))
    assert not (tmp_path / "escaped.bin").exists() and not (tmp_path / "a" / "escaped.bin").exists()


def test_plain_files_in_a_store_root_do_not_break_listing(store: ms.Store) -> None:
    """A stray file beside the models (a README) is not a model and does not break list or save."""
    (Path(store.root) / "README.md").write_text("notes")
    assert store.list() == ["m"]
    assert store.versions("README.md") == []


def test_store_command_refuses_a_linked_entry(
    store: ms.Store, outside: Path, tmp_path: Path
) -> None:
    """modelstore store show|pull of a version whose model file links outside: exit 1, no canary, no traceback."""
    from tests.test_cli import run

    relink(_vdir(store) / "model.safetensors", outside / "secret.safetensors")
    for args in (("show", "m@1"), ("pull", "m@1", str(tmp_path / "pulled"))):
        proc = run("store", "--root", store.root, *args)
        assert proc.returncode == 1 and "outside" in proc.stderr, proc.stderr
        assert CANARY not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pulled" / "model.safetensors").exists()

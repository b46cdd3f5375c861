"""Item 9 of issue 14: a .pt written by ms.save carries its metadata inside the torch zip, so
the file alone keeps config and labels; a stale sidecar is reported as such, not as damage."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.security.zipcheck import check_archive  # noqa: E402

from ..hostile import Reduce, py_touch  # noqa: E402


def _net() -> object:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "m.pt"
    ms.save(
        _net(),
        path,
        labels=["cat", "dog"],
        config={"in_features": 3, "out_features": 2},
        metadata={"run": "a1"},
    )
    return path


def test_the_record_is_ignored_by_torch_and_accepted_by_the_strict_reader(tmp_path: Path) -> None:
    """torch.load (weights_only) reads the file as before; zipcheck accepts the archive."""
    path = _saved(tmp_path)
    names = zipfile.ZipFile(path).namelist()
    assert sum(n.endswith("/modelstore.json") for n in names) == 1
    sd = torch.load(path, weights_only=True)
    assert set(sd) == {"weight", "bias"}
    check_archive(path, crc=True)
    assert ms.scan(path).verdict == "safe"


def test_the_file_alone_keeps_config_and_labels(tmp_path: Path) -> None:
    """Sent without its sidecar, the .pt still builds the model and maps labels."""
    path = _saved(tmp_path)
    os.unlink(str(path) + ".modelstore.json")
    info = ms.inspect(path)
    assert info.labels == ["cat", "dog"] and info.metadata == {"run": "a1"}
    with pytest.warns(ms.PickleWarning):
        model = ms.load(path, model=torch.nn.Linear)
    assert ms.predict(model, [[1.0, 2.0, 3.0]], output="label")[0] in ("cat", "dog")


def test_a_stale_sidecar_is_reported_not_called_damage(tmp_path: Path) -> None:
    """torch.save over an ms.save file leaves a sidecar that no longer matches: a
    MetadataWarning that says so, and the new weights load."""
    path = _saved(tmp_path)
    fresh = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    torch.save(fresh, path)
    with (
        pytest.warns(
            ms.MetadataWarning, match="does not match this file: it was rewritten by another tool"
        ),
        pytest.warns(ms.PickleWarning),
    ):
        sd = ms.load(path)
    assert torch.equal(sd["weight"], fresh["weight"])
    info = ms.inspect(path)  # inspect says so too, and shows no stale labels
    assert "rewritten by another tool" in info.metadata["sidecar"] and info.labels is None


def test_a_stale_sidecar_beside_another_ms_save_uses_the_files_own_record(tmp_path: Path) -> None:
    """A file from another ms.save copied over this one: its own record wins over the sidecar."""
    path = _saved(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    ms.save(torch.nn.Linear(3, 2), other / "m.pt", labels=["x", "y"])
    path.write_bytes((other / "m.pt").read_bytes())
    with (
        pytest.warns(ms.MetadataWarning, match="metadata recorded inside the file"),
        pytest.warns(ms.PickleWarning),
    ):
        model = ms.load(path, model=torch.nn.Linear, config={"in_features": 3, "out_features": 2})
    assert ms.predict(model, [[1.0, 2.0, 3.0]], output="label")[0] in ("x", "y")


def test_damage_is_still_damage(tmp_path: Path) -> None:
    """A flipped byte in a storage: IntegrityError, not a stale-sidecar warning."""
    path = _saved(tmp_path)
    info = next(i for i in zipfile.ZipFile(path).infolist() if "/data/" in i.filename)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ms.IntegrityError):
        ms.load(path)
    assert "damaged" in ms.inspect(path).metadata["sidecar"]


@pytest.mark.parametrize("record", [b"[" * 100_000, b'{"labels": "not a list"}', b"{not json"])
def test_a_hostile_record_is_a_format_error(tmp_path: Path, record: bytes) -> None:
    """The record is read as hostile input: malformed JSON or fields refuse, nothing runs."""
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("m/modelstore.json", record)
    with pytest.raises(ms.FormatError):
        ms.load(path)


def test_a_pickle_named_like_the_record_is_not_loaded(tmp_path: Path) -> None:
    """A pickle payload stored as modelstore.json is never unpickled (it is JSON to us)."""
    marker = tmp_path / "marker"
    path = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("m/modelstore.json", pickle.dumps(Reduce(exec, py_touch(marker))))
    with pytest.raises(ms.FormatError):
        ms.load(path)
    ms.scan(path)
    assert not marker.exists()


def test_a_save_replacing_the_file_mid_read_is_not_a_stale_sidecar(tmp_path: Path) -> None:
    """A reader holding the old file while a save renames its sidecar, then the new file, over
    it sees a sidecar entry that does not match what it reads: that is a save in progress, not
    another tool's rewrite. The check raises IntegrityError (the consistent read starts again)
    instead of warning of a stale sidecar (a flake of the concurrency test under load)."""
    import json
    import warnings

    from modelstore.formats.torch.backend import TorchBackend
    from modelstore.pipeline.verify import checksum

    path = _saved(tmp_path)
    with open(path, "rb") as held:
        f = Path(f"/proc/self/fd/{held.fileno()}")
        net = torch.nn.Linear(3, 2)
        torch.nn.init.ones_(net.weight)
        ms.save(net, path)  # the new file and its sidecar replace the held one's
        newest = json.loads(Path(f"{path}.modelstore.json").read_text())["versions"][0]
        with pytest.raises(ms.IntegrityError, match="does not match the checksum"):
            checksum(f, TorchBackend(), newest, None, "the sidecar", str(path), named=path)
        with warnings.catch_warnings(record=True) as seen:  # a path no save replaced: stale
            warnings.simplefilter("always")
            checksum(f, TorchBackend(), newest, None, "the sidecar", str(path), named=f)
        assert any(issubclass(w.category, ms.MetadataWarning) for w in seen)

"""The front door: format choice, atomic writes, metadata, integrity, bad input."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


@pytest.fixture
def net() -> models.Net:
    return models.trained_net()


def test_module_without_known_suffix_is_safetensors(tmp_path: Path, net: models.Net) -> None:
    """Saving a torch module to a path with no known suffix writes safetensors."""
    path = tmp_path / "model"
    info = ms.save(net, path)
    assert info.format == "safetensors"
    assert ms.inspect(path).format == "safetensors"  # unknown suffix: sniffed on load
    assert isinstance(ms.load(path, model=models.Net), models.Net)


def test_format_argument_wins(tmp_path: Path, net: models.Net) -> None:
    """format= overrides the suffix on save and on load."""
    path = tmp_path / "weights.bin"
    assert ms.save(net, path, format="torch").format == "torch"
    with pytest.warns(ms.PickleWarning):
        assert isinstance(ms.load(path, format="torch", model=models.Net), models.Net)
    # sniffed as a torch zip; the same file warned once already
    assert isinstance(ms.load(path, model=models.Net), models.Net)


def test_wrong_suffix_is_named(tmp_path: Path, net: models.Net) -> None:
    """A safetensors file named .pt is refused with what it really is and format=."""
    path = tmp_path / "m.safetensors"
    ms.save(net, path)
    liar = tmp_path / "m.pt"
    os.rename(path, liar)
    with pytest.raises(ms.FormatError, match=r"content is safetensors.*format='safetensors'"):
        ms.load(liar)
    assert isinstance(ms.load(liar, format="safetensors", model=models.Net), models.Net)


def test_overwrite_false_keeps_file(tmp_path: Path, net: models.Net) -> None:
    """overwrite=False refuses an existing target and leaves it alone."""
    path = tmp_path / "m.safetensors"
    ms.save(net, path)
    before = path.read_bytes()
    with pytest.raises(ms.ModelExistsError, match="overwrite"):
        ms.save(models.trained_net(seed=5), path, overwrite=False)
    assert path.read_bytes() == before


def test_failed_save_leaves_previous_file_and_no_temp(tmp_path: Path, net: models.Net) -> None:
    """A save that fails half-way leaves the old file intact and no temp files."""
    path = tmp_path / "m.pt"
    ms.save(net, path)
    before = path.read_bytes(), (tmp_path / "m.pt.modelstore.json").read_bytes()
    with pytest.raises(ms.UnsupportedModelError):
        ms.save({"w": torch.zeros(1), "bad": np.float64(1.0)}, path)
    assert (path.read_bytes(), (tmp_path / "m.pt.modelstore.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.modelstore.json"]


def test_stale_temp_of_dead_process_is_cleaned(tmp_path: Path, net: models.Net) -> None:
    """Temp files left by a killed save (dead pid) are removed by the next save."""
    from modelstore.storage.files import _host

    path = tmp_path / "m.safetensors"
    stale = tmp_path / f".m.safetensors.{_host()}.999999999.abcd1234.modelstore-tmp"
    stale.write_bytes(b"partial")
    ms.save(net, path)
    assert not stale.exists()


def test_temp_of_another_host_is_left_until_it_is_old(tmp_path: Path, net: models.Net) -> None:
    """On a shared filesystem another machine's process id means nothing here: its temp file
    (a save that may still be running there) is only removed once it is a day old."""
    path = tmp_path / "m.safetensors"
    fresh = tmp_path / ".m.safetensors.otherhost.999999999.abcd1234.modelstore-tmp"
    old = tmp_path / ".m.safetensors.otherhost.999999998.abcd1234.modelstore-tmp"
    fresh.write_bytes(b"partial")
    old.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    ms.save(net, path)
    assert fresh.exists() and not old.exists()


def test_target_problems_are_storage_errors(tmp_path: Path, net: models.Net) -> None:
    """A directory as target, or a missing parent folder, give StorageError with the fix."""
    with pytest.raises(ms.StorageError, match="is a directory"):
        ms.save(net, tmp_path)
    with pytest.raises(ms.StorageError, match="does not exist"):
        ms.save(net, tmp_path / "nope" / "m.safetensors")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path, net: models.Net) -> None:
    """Saving into a read-only folder is a StorageError and nothing is lost."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ms.save(net, ro / "m.safetensors")
    ro.chmod(0o500)
    try:
        with pytest.raises(ms.StorageError):
            ms.save(models.trained_net(seed=2), ro / "m.safetensors")
    finally:
        ro.chmod(0o700)


def test_pin_checks_whole_file_sha256(tmp_path: Path, net: models.Net) -> None:
    """sha256= refuses any file whose digest differs from the pin."""
    path = tmp_path / "m.safetensors"
    info = ms.save(net, path)
    import hashlib

    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(ms.load(path, model=models.Net, sha256=info.sha256), models.Net)
    with pytest.raises(ms.IntegrityError, match="pinned"):
        ms.load(path, model=models.Net, sha256="0" * 64)


def _safetensors_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)
    return path


BAD_INPUTS = {
    "empty": lambda p: p.write_bytes(b""),
    "random": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "tiny": lambda p: p.write_bytes(b"\x01\x02"),
    "header_flip": lambda p: p.write_bytes(
        p.read_bytes()[:20] + bytes([p.read_bytes()[20] ^ 0xFF]) + p.read_bytes()[21:]
    ),
    "payload_flip": lambda p: p.write_bytes(
        p.read_bytes()[:-10] + bytes([p.read_bytes()[-10] ^ 0x40]) + p.read_bytes()[-9:]
    ),
    "huge_header_len": lambda p: p.write_bytes(struct.pack("<Q", 2**62) + p.read_bytes()[8:]),
}


@pytest.mark.parametrize("damage", sorted(BAD_INPUTS))
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_bad_files_raise_modelstore_errors(tmp_path: Path, damage: str, suffix: str) -> None:
    """Damaged files give a ModelstoreError naming the file from load, inspect and scan."""
    path = tmp_path / f"m{suffix}"
    ms.save(models.trained_net(), path)
    BAD_INPUTS[damage](path)
    with pytest.raises(ms.ModelstoreError) as e:
        ms.load(path, model=models.Net)
    assert str(path) in str(e.value)
    if path.stat().st_size:
        try:
            ms.inspect(path)
        except ms.ModelstoreError as err:
            assert str(path) in str(err)
    try:
        report = ms.scan(path)
        assert report.verdict in ("unknown", "unsafe", "safe")
    except ms.ModelstoreError as err:
        assert str(path) in str(err)


def test_truncated_safetensors_is_integrity_error(tmp_path: Path) -> None:
    """A safetensors file cut short says 'truncated' (IntegrityError)."""
    path = _safetensors_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ms.IntegrityError, match="truncated"):
        ms.load(path, model=models.Net)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing path is ModelNotFoundError; a directory is a FormatError."""
    with pytest.raises(ms.ModelNotFoundError, match="no such file") as e:
        ms.load(tmp_path / "absent.pt")
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(ms.FormatError, match="is a directory"):
        ms.load(tmp_path)
    with pytest.raises(ms.FormatError, match="directory"):
        ms.inspect(tmp_path)


def test_unrecognised_file(tmp_path: Path) -> None:
    """Unknown content with an unknown suffix says what was found and how to pick a format."""
    path = tmp_path / "notes.txt"
    path.write_text("hello world, not a model")
    with pytest.raises(ms.FormatError, match="unrecognised.*format="):
        ms.load(path)
    assert ms.scan(path).verdict == "unknown"


def test_unsupported_objects_and_arguments(tmp_path: Path) -> None:
    """Objects no backend handles, and bad argument values, are ModelstoreErrors."""
    with pytest.raises(ms.UnsupportedModelError, match="no backend can save"):
        ms.save("a string", tmp_path / "x.bin")
    with pytest.raises(ms.UnsupportedModelError):
        ms.save(object(), tmp_path / "x.safetensors")
    with pytest.raises(ms.ArgumentError, match="JSON"):
        ms.save(models.trained_net(), tmp_path / "m.safetensors", metadata={"f": object()})
    with pytest.raises(ms.ArgumentError, match="trust"):
        ms.load(_safetensors_file(tmp_path), trust="yes")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_missing_torch_names_the_extra(tmp_path: Path) -> None:
    """Without torch installed, load raises MissingDependencyError naming the extra."""
    from modelstore.testing import run_python

    path = _safetensors_file(tmp_path)
    proc = run_python(f"""
        import sys
        sys.modules['torch'] = None  # as if torch were not installed
        import modelstore as ms
        for call in (lambda: ms.load({str(path)!r}), lambda: ms.predict({str(path)!r}, [[0.0] * 64])):
            try:
                call()
            except ms.MissingDependencyError as e:
                print(type(e).__name__, isinstance(e, ImportError), '|', e)
        print(ms.inspect({str(path)!r}).num_params)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line in lines[:2]:
        assert line.startswith("MissingDependencyError True")
        assert 'pip install "modelstore-safe[torch]"' in line and str(path) in line
    assert lines[2] == str(64 * 32 + 32 + 32 * 10 + 10)  # inspect needs no torch


@pytest.mark.parametrize("damage", sorted(BAD_INPUTS))
def test_damaged_foreign_pt_never_escapes(tmp_path: Path, damage: str) -> None:
    """A damaged torch.save file with no sidecar either loads or raises a ModelstoreError."""
    import warnings

    path = tmp_path / "foreign.pth"
    torch.save(models.trained_net().state_dict(), path)
    BAD_INPUTS[damage](path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        try:
            ms.load(path, model=models.Net)
        except ms.ModelstoreError as e:
            assert str(path) in str(e)
    try:
        ms.inspect(path)
    except ms.ModelstoreError as e:
        assert str(path) in str(e)
    assert ms.scan(path).verdict in ("safe", "unknown", "unsafe")

"""The file system says no: disk full, read-only folder, a directory or a missing folder as
target. Each gives a clear StorageError and leaves the previous file as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402

SAVE_BIG = """
import resource, signal, sys
import torch, modelstore as ms
{limits}
try:
    ms.save(torch.nn.Linear(512, 512), sys.argv[1])
except ms.StorageError as e:
    print("StorageError", e.errno, e)
    sys.exit(3)
"""


pytestmark = pytest.mark.slow  # subprocesses killed and fuzzed: the full run, not the quick one


def run(code: str, path: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kw,
    )  # type: ignore[call-overload]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_disk_full(tmp_path: Path, suffix: str) -> None:
    """A write past the file-size limit (RLIMIT_FSIZE, as a full disk) is a StorageError."""
    path = tmp_path / f"m{suffix}"
    ms.save(torch.nn.Linear(4, 4), path)
    before = path.read_bytes()
    limits = (
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))"
    )
    proc = run(SAVE_BIG.format(limits=limits), path)
    assert proc.returncode == 3, proc.stderr
    assert "StorageError" in proc.stdout and str(path) in proc.stdout and "untouched" in proc.stdout
    assert path.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if "modelstore-tmp" in p.name]
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", ms.PickleWarning)
        ms.load(path)  # still whole and verifying


def test_read_only_folder(tmp_path: Path) -> None:
    """Saving into a folder that cannot be written is a StorageError; the old file stays.
    (Root ignores a folder's mode, so as root the folder is made immutable with chattr.)"""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "m.safetensors"
    ms.save(torch.nn.Linear(4, 4), path)
    before = path.read_bytes()
    root = os.geteuid() == 0
    if root:
        if (
            shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(folder)]).returncode
        ):
            pytest.skip("running as root without chattr: cannot make a folder read-only")
    else:
        folder.chmod(0o555)
    try:
        proc = run(SAVE_BIG.format(limits=""), path)
        assert proc.returncode == 3, proc.stderr
        assert "StorageError" in proc.stdout and "untouched" in proc.stdout
        assert path.read_bytes() == before
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)])
        else:
            folder.chmod(0o755)


def test_directory_and_missing_parent(tmp_path: Path) -> None:
    """A directory as target, or a missing parent folder, are StorageErrors naming the fix."""
    (tmp_path / "m.safetensors").mkdir()
    with pytest.raises(ms.StorageError, match="is a directory"):
        ms.save(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")
    with pytest.raises(ms.StorageError, match="does not exist"):
        ms.save(torch.nn.Linear(2, 2), tmp_path / "missing" / "m.safetensors")


@pytest.mark.parametrize("suffix", [".pt", ".keras"])
def test_symlink_entries_in_archives(tmp_path: Path, suffix: str) -> None:
    """A zip entry that is a symbolic link is refused before any framework reads the archive."""
    import stat
    import zipfile

    if suffix == ".keras":
        keras = pytest.importorskip("keras")
        path = tmp_path / "m.keras"
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
    else:
        path = tmp_path / "m.pt"
        torch.save({"w": torch.zeros(2)}, path)
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ms.UnsafeModelError, match="link"):
        ms.load(path)

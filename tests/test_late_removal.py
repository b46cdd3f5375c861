"""A large file replaced by a save is removed after the save returns (issue 19).

Freeing a replaced file's blocks is the filesystem's work inside the rename (~24 ms for
128 MiB on ext4); the old file gets a second name first, so the rename only drops a name,
and that second name is removed in a thread. What the save promises does not change: the
target is always a whole file, and no temp name outlives the save's process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.storage import files  # noqa: E402


def _settle() -> None:
    for t in threading.enumerate():
        if t.name.startswith("modelstore-"):
            t.join()


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "modelstore-tmp" in p.name)


def _big(value: float) -> dict[str, Any]:
    n = files.LATE_REMOVAL_BYTES // 4 + 1024
    return {"w": torch.full((n,), value)}


def test_the_replaced_file_is_freed_after_the_save(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    ms.save(_big(1.0), path)
    old = os.open(path, os.O_RDONLY)
    try:
        ms.save(_big(2.0), path, overwrite=True)
        assert ms.load(path)["w"][0].item() == 2.0  # the new file, whole, at once
        _settle()
        assert os.fstat(old).st_nlink == 0  # no name left for the old file
        assert _temps(tmp_path) == []
    finally:
        os.close(old)


def test_a_symlink_target_is_replaced_and_what_it_points_to_is_untouched(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere.safetensors"
    ms.save(_big(1.0), elsewhere)
    before = elsewhere.stat()
    link = tmp_path / "m.safetensors"
    link.symlink_to(elsewhere)
    ms.save(_big(2.0), link, overwrite=True)
    _settle()
    assert not link.is_symlink() and ms.load(link)["w"][0].item() == 2.0
    after = elsewhere.stat()
    assert (after.st_ino, after.st_nlink, after.st_mtime_ns) == (
        before.st_ino,
        1,
        before.st_mtime_ns,
    )
    assert _temps(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temp_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.safetensors"
    ms.save(_big(1.0), path)

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(ms.StorageError, match="previous file, if any, is untouched"):
        ms.save(_big(2.0), path, overwrite=True)
    monkeypatch.undo()
    _settle()
    assert ms.load(path)["w"][0].item() == 1.0 and path.stat().st_nlink == 1
    assert _temps(tmp_path) == []


def test_a_second_name_left_by_a_killed_save_is_removed_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    ms.save(_big(1.0), path)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    left = tmp_path / f".{path.name}.{files._host()}.{dead}.0badc0de{files._TMP_MARK}"
    os.link(path, left)
    ms.save(_big(2.0), path, overwrite=True)
    _settle()
    assert _temps(tmp_path) == []

"""The bytes a pin or checksum checks are the bytes that get deserialised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Same size, same inode, mtime put back: only the change time betrays it."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_rewrite_in_place_with_mtime_restored_fails_the_pin(tmp_path: Path) -> None:
    """A file rewritten in place with its mtime restored is not answered from a cache: the
    pin and the recorded checksum both see the new bytes."""
    path = tmp_path / "w.safetensors"
    info = ms.save({"w": torch.ones(16)}, path)
    ms.inspect(path)  # fills the sha256 cache
    data = bytearray(path.read_bytes())
    data[-4:] = b"\x00\x00\x80\x3f"[::-1]
    _rewrite_in_place(path, bytes(data))
    assert ms.inspect(path).sha256 != info.sha256
    with pytest.raises(ms.IntegrityError):
        ms.load(path, sha256=info.sha256)
    with pytest.raises(ms.IntegrityError):
        ms.load(path)


def test_a_pinned_load_reads_a_private_copy(tmp_path: Path) -> None:
    """A pinned load maps the copy it hashed, so changing the file afterwards (even in place,
    under a memory map) cannot change the tensors that were checked."""
    path = tmp_path / "w.safetensors"
    info = ms.save({"w": torch.ones(1024)}, path)
    sd = ms.load(path, sha256=info.sha256)
    data = bytearray(path.read_bytes())
    data[-4096:] = b"\x00" * 4096
    _rewrite_in_place(path, bytes(data))
    assert torch.equal(sd["w"], torch.ones(1024))


def test_a_pinned_pickle_names_the_callers_path(tmp_path: Path) -> None:
    """Errors and warnings of a pinned load name the file the caller gave, not the copy."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    import numpy as np

    path = tmp_path / "m.joblib"
    info = ms.save(sklearn.LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]), path)
    with pytest.warns(ms.PickleWarning, match=str(path)):
        ms.load(path, sha256=info.sha256)
    with pytest.raises(ms.IntegrityError, match=str(path)):
        ms.load(path, sha256="0" * 64)

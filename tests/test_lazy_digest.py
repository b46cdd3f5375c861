"""ms.save returns once the file is durable; the whole file's sha256 is finished off the
save's path (issue 19: "the whole-file sha256 computed off the critical path or lazily") and
is still exactly the digest of the bytes that save wrote."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import warnings
from pathlib import Path

import pytest

import modelstore as ms
from modelstore._info import ModelInfo

torch = pytest.importorskip("torch")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["w.safetensors", "w.pt"])
def test_the_digest_is_of_the_bytes_written(tmp_path: Path, name: str) -> None:
    """Changing the tensors in place right after the save, and then replacing the file at
    the path, change nothing in the digest the save reported: it is read from the file as
    written (a descriptor opened before the save returned), never from the live tensors."""
    sd = {f"l{i}.weight": torch.randn(256, 256) for i in range(8)}
    path = tmp_path / name
    info = ms.save(sd, path)
    written = path.read_bytes()
    for t in sd.values():
        t.add_(1.0)
    other = tmp_path / ("other" + path.suffix)
    ms.save({"x": torch.zeros(3)}, other)
    os.replace(other, path)
    assert info.sha256 == hashlib.sha256(written).hexdigest()
    assert info.to_dict()["sha256"] == info.sha256


def test_a_joblib_save_reports_the_file_digest(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    model = LogisticRegression().fit(x, [0, 1, 1, 0])
    path = tmp_path / "m.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = ms.save(model, path)
        assert info.sha256 == _sha(path) == ms.inspect(path).sha256


def test_model_info_holds_a_str_for_its_users() -> None:
    """A pending digest is computed once, on first read; pickles, copies and dicts carry the
    string; the field stays read-only."""
    calls: list[int] = []

    def later() -> str:
        calls.append(1)
        return "ab" * 32

    info = ModelInfo("p", "safetensors", None, 1, later)  # type: ignore[arg-type]
    assert calls == []
    assert pickle.loads(pickle.dumps(info)).sha256 == "ab" * 32
    assert dataclasses.replace(info, size_bytes=2).sha256 == "ab" * 32
    assert info == ModelInfo("p", "safetensors", None, 1, "ab" * 32)
    assert calls == [1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.sha256 = "x"  # type: ignore[misc]


def test_a_digest_read_in_the_tick_of_the_last_change_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File times move in coarse ticks: a same-size rewrite in the tick of the last change,
    mtime put back, leaves the cache key as it was. A digest of bytes read that soon after a
    change is not remembered (and a save's own digest is handed over once), so ``inspect``
    reads such a file again; one read later is remembered."""
    from modelstore.storage import hashing

    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 1000)
    key = hashing._stat_key(path)
    assert hashing.sha256_of(path) and hashing._recall(key) is None  # just written: racy
    monkeypatch.setattr(hashing, "RACY_NS", -(10**18))  # as if the change were long ago
    digest = hashing.sha256_of(path)
    assert hashing._recall(key) == digest
    hashing.remember_sha256(path, "0" * 64)
    assert hashing._recall(key) == digest  # a save's digest never feeds the trusted cache

"""Red team, round 6: the late removal of a replaced file, the safetensors checksum written
after the tensors, and the served request's plain-number fast path.

Attacks that held are kept here too, so a later change cannot quietly undo them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.storage import files  # noqa: E402
from tests.test_late_removal import _big, _settle, _temps  # noqa: E402


def _slow_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background removal takes a while (a large file on a slow disk)."""
    real = files._remove

    def slow(paths: list[Path]) -> None:
        if threading.current_thread().name == "modelstore-remove":
            time.sleep(0.3)
        real(paths)

    monkeypatch.setattr(files, "_remove", slow)


def test_signing_a_folder_just_saved_over_does_not_sign_the_old_files_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: save a sharded model over a folder whose shards are >= 16 MiB, then sign the
    folder at once (what a release script does). The replaced shards still had their temp
    names (removed by a background thread after the save returned), so the folder walk signed
    ``.model-00001-of-00002.safetensors.<host>.<pid>.<hex>.modelstore-tmp``; a moment later the
    name was gone and every verify of that folder failed ("the signature lists ..., which is
    missing"): a signed release that can never be verified. 10 of 10 tries without any delay.
    Fixed: listing a folder (signing, verifying, a folder's file list) first waits for this
    process's pending removals."""
    pytest.importorskip("model_signing")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    folder = tmp_path / "m"
    shard = files.LATE_REMOVAL_BYTES + (1 << 20)
    ms.save({"a": _big(1.0)["w"], "b": _big(1.0)["w"]}, folder, max_shard_size=shard)
    _slow_removal(monkeypatch)
    ms.save({"a": _big(2.0)["w"], "b": _big(1.0)["w"]}, folder, max_shard_size=shard)
    ms.sign(folder, key=key)
    _settle()
    verified = ms.verify(folder, signed_by=pub)
    assert not any("modelstore-tmp" in f for f in verified.files)
    assert _temps(tmp_path) == []


def test_a_folder_listing_right_after_a_save_holds_no_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for what ``inspect`` of a folder reports as its files."""
    from modelstore.pipeline.folder import listing

    path = tmp_path / "model.safetensors"
    ms.save(_big(1.0), path)
    _slow_removal(monkeypatch)
    ms.save(_big(2.0), path)
    assert [n for n in listing(tmp_path) if "modelstore-tmp" in n] == []


def test_an_interrupt_just_after_the_old_file_is_linked_leaves_no_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: Ctrl-C delivered right after ``os.link`` gave the replaced file its temp name,
    before that name was recorded for removal. The save was refused and the target kept (as
    it must), but a full copy of the old model stayed under a temp name that this process's
    later saves never clean (its own process id is alive) and that outlived the process.
    Fixed: the name is recorded before the link is made."""
    path = tmp_path / "m.safetensors"
    ms.save(_big(1.0), path)
    real_link = os.link

    def link_then_interrupt(*args: Any, **kwargs: Any) -> None:
        real_link(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "link", link_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ms.save(_big(2.0), path)
    monkeypatch.undo()
    _settle()
    assert ms.load(path)["w"][0].item() == 1.0
    assert os.stat(path).st_nlink == 1
    assert _temps(tmp_path) == []


_ATEXIT_SAVE = """
import atexit, sys, threading, time
from pathlib import Path
import torch
import modelstore as ms
from modelstore.storage import files

real = files._remove

def slow(paths):  # a large file on a slow disk: its removal takes a while
    if threading.current_thread().name == "modelstore-remove":
        time.sleep(0.5)
    real(paths)

files._remove = slow
path = Path(sys.argv[1]) / "m.safetensors"
n = files.LATE_REMOVAL_BYTES // 4 + 1024
ms.save({"w": torch.ones(n)}, path)
atexit.register(lambda: ms.save({"w": torch.full((n,), 2.0)}, path))
"""


@pytest.mark.slow  # seconds; the full suite runs it
def test_a_save_in_an_atexit_handler_leaves_no_temp_name(tmp_path: Path) -> None:
    """Attack: a program saves its model in an ``atexit`` handler ("save on exit"), over a
    file of >= 16 MiB. The old file's temp name was removed by a thread started after the
    interpreter had stopped waiting for threads: when the removal took a moment, the process
    ended first and a full copy of the old model outlived it under a temp name (on Python
    3.12+ the thread cannot start at all, and the save that had already replaced the file
    raised RuntimeError). Fixed: while the interpreter exits, the name is removed at once."""
    import subprocess
    import sys

    src = str(Path(ms.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", _ATEXIT_SAVE, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _temps(tmp_path) == []
    assert ms.load(tmp_path / "m.safetensors")["w"][0].item() == 2.0


def test_a_save_that_cannot_start_the_removal_thread_still_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: no thread can be started (the process is at its thread limit, or the
    interpreter is shutting down on 3.12+). The new file was already in place, yet the save
    raised a bare RuntimeError (not a ModelstoreError) after removing the old file's name.
    Fixed: the name is removed in the saving thread and the save returns normally."""
    path = tmp_path / "m.safetensors"
    ms.save(_big(1.0), path)

    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name == "modelstore-remove":
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(files.threading.Thread, "start", refuse)
    ms.save(_big(2.0), path)
    monkeypatch.undo()
    assert ms.load(path)["w"][0].item() == 2.0
    assert _temps(tmp_path) == []
    files.removals_done()  # nothing left waiting on a thread that never started


# -- attacks that held -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"inputs":[[999999999999999999,1]]}', 200),  # 18 digits: plain, int64
        (b'{"inputs":[[9999999999999999999,1]]}', 422),  # 19 digits: walked, refused
        (b'{"inputs":[[999999999999999999.999999999999999999,1]]}', 200),
        (b'{"inputs":[[1e999,1]]}', 422),
        (b'{"inputs":[[-Infinity,1]]}', 422),  # no "e" in it: the parser refuses it
        (b'{"inputs":[[NaN,1]]}', 422),
        ('{"inputs":[[\u0661,1]]}'.encode(), 400),  # an Arabic-Indic digit
        ('{"inputs":[[\uff11,1]]}'.encode(), 400),  # a fullwidth digit
        (b'{"inputs":[[01,1]]}', 400),
        (b'{"inputs":[[-0,-0.0]]}', 200),
    ],
)
def test_plain_numbers_are_in_range_whatever_their_spelling(body: bytes, status: int) -> None:
    """The fast path skips numpy's range check when the body has no "e" and no 19 digits in
    a row; JSON (Python's C scanner) has no other way to write a big, infinite or NaN number,
    and no non-ASCII digits. Held: 200,000 generated bodies read the same on both paths."""
    np = pytest.importorskip("numpy")
    from modelstore.serve import Limits, answer, parse_body, plain_numbers, read_inputs

    class Echo:
        pass

    limits = Limits()
    if status == 200:
        assert plain_numbers(body)
        data = parse_body(body, limits)
        fast, _ = read_inputs(data, limits, texts=False, plain=True)
        slow, _ = read_inputs(data, limits, texts=False, plain=False)
        assert fast.dtype == slow.dtype and fast.dtype.kind in "bif"
        assert np.array_equal(fast, slow) and np.isfinite(fast).all()
    else:
        assert answer(Echo(), body, limits)[0] == status


def test_the_checksum_placeholder_is_found_whatever_the_names_and_metadata(tmp_path: Path) -> None:
    """Tensor names and metadata chosen to look like the header's end (``"}}``, the checksum
    key itself, escapes, non-ASCII): the checksum still lands in its place, verifies, and the
    file reads with the safetensors package. Held."""
    st = pytest.importorskip("safetensors.torch")
    names = ["modelstore.checksum", 'é\u2028"}}x', "__metadata", "a\\b", "", "0" * 300]
    sd = {n: torch.arange(i + 1, dtype=torch.float32) for i, n in enumerate(names)}
    sd["empty"] = torch.zeros(0)
    sd["bool"] = torch.tensor([True, False])
    path = tmp_path / "x.safetensors"
    meta = {"modelstore.checksum": "xxh3_128:" + "0" * 32, 'k"}}': 'v\x00"}}'}
    ms.save(sd, path, metadata=meta, labels=['"}}', "ü"], config={"a": '"}}'})
    back = ms.load(path)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert set(st.load_file(str(path))) == set(sd)

"""Red team, pass 20 (pickles, torch views, pins): each hostile file fires in the naive
loader first; modelstore refuses it."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from modelstore.security.confine import ConfinementError
from tests.security.test_redteam import run_py

torch = pytest.importorskip("torch")

# -- 1. Counter(list of pairs) counts the pairs: their hashes, not their first halves --------

_M = (1 << 64) - 1
_P1, _P2, _P5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _colliding_pairs(n: int) -> list[tuple[int, int]]:
    """Pairs of small ints whose tuples share one hash (CPython's xxHash-based tuple hash,
    solved for the second item)."""
    inv = pow(_P2, -1, 1 << 64)
    out, a = [], 1
    while len(out) < n:
        acc = ((((_P5 + a * _P2) & _M) << 31 | ((_P5 + a * _P2) & _M) >> 33) & _M) * _P1 & _M
        lane = ((0x1234567 - acc) * inv) & _M
        b = lane - (1 << 64) if lane >= 1 << 63 else lane
        if abs(b) <= (1 << 61) - 2 and b != -1:
            out.append((a, b))
        a += 1
    return out


def _counter_pickle(pairs: list[tuple[int, int]]) -> bytes:
    body = bytearray(b"\x80\x02ccollections\nCounter\n](")
    for a, b in pairs:
        enc = pickle.encode_long(b)
        body += b"J" + struct.pack("<i", a) + b"\x8a" + bytes([len(enc)]) + enc + b"\x86"
    return bytes(body + b"e\x85R.")


def test_a_counter_of_colliding_pairs_is_refused(tmp_path: Path) -> None:
    pairs = _colliding_pairs(2000)
    assert len({hash(p) for p in pairs}) == 1  # the payload: every key in one hash bucket
    path = tmp_path / "counter.pkl"
    path.write_bytes(_counter_pickle(pairs))
    naive = pickle.loads(path.read_bytes())  # the keys are the pairs: a quadratic build
    assert set(naive) == set(pairs)  # (40,000 of them, 639 KB, took 40 s here)
    with pytest.raises(ms.UnsafeModelError, match="Counter"):
        ms.load(path)


def test_a_pickled_counter_still_loads(tmp_path: Path) -> None:
    import collections

    path = tmp_path / "counter.pkl"
    path.write_bytes(pickle.dumps(collections.Counter("abracadabra"), protocol=2))
    with pytest.warns(ms.PickleWarning):
        assert ms.load(path) == collections.Counter("abracadabra")


# -- 2. a tensor view that repeats its data ------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_view_repeating_four_bytes_is_refused(tmp_path: Path, zip_format: bool) -> None:
    """``torch.save`` of an expanded view stores its 4 bytes and a stride of 0: 2**31
    elements that a cast, a conversion or a save would allocate (8 GiB)."""
    path = tmp_path / "view.pt"
    view = torch.tensor([1.5]).expand(1 << 31)
    torch.save({"w": view}, path, _use_new_zipfile_serialization=zip_format)
    assert path.stat().st_size < 2048
    out = run_py(  # the naive load hands the view on
        f"import torch; w = torch.load({str(path)!r}, weights_only=True)['w']; "
        "print(w.numel(), w.untyped_storage().nbytes())"
    )
    assert out.stdout.split() == [str(1 << 31), "4"], out
    for call in (lambda: ms.load(path), lambda: ms.load(path, dtype="float16")):
        with pytest.raises(ms.UnsafeModelError, match="repeats its data"):
            call()
    with pytest.raises(ms.ModelstoreError):
        ms.convert(path, tmp_path / "view.safetensors")
    assert not (tmp_path / "view.safetensors").exists()


def test_views_inside_their_storage_still_load(tmp_path: Path) -> None:
    """Slices, transposes and small expanded buffers load (up to 2**24 repeated elements)."""
    base = torch.arange(12.0)
    path = tmp_path / "views.pt"
    ones = torch.ones(1).expand(1 << 20)
    torch.save({"a": base[2:8], "b": base.view(3, 4).t(), "c": base, "d": ones}, path)
    with pytest.warns(ms.PickleWarning):  # (views sharing a storage take torch's own loader)
        got = ms.load(path)
    assert torch.equal(got["b"], base.view(3, 4).t()) and torch.equal(got["a"], base[2:8])


# -- 3. pins that cannot cover the files a model reads ------------------------------------


def test_a_pinned_bin_index_is_refused(tmp_path: Path) -> None:
    names = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    torch.save({"a": torch.zeros(3)}, tmp_path / names[0])
    torch.save({"b": torch.ones(3)}, tmp_path / names[1])
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"a": names[0], "b": names[1]}}))
    pin = hashlib.sha256(index.read_bytes()).hexdigest()
    with pytest.warns(ms.PickleWarning):
        assert torch.equal(ms.load(index)["a"], torch.zeros(3))  # unpinned: loads
    torch.save({"a": torch.full((3,), 666.0)}, tmp_path / names[0])  # the pin still holds
    with pytest.raises(ms.IntegrityError, match="cannot cover"):
        ms.load(index, sha256=pin)


def test_a_pinned_onnx_graph_with_external_data_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    from tests.backends.test_onnx_ import _external_model

    (tmp_path / "w.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    path = _external_model(tmp_path, "w.bin")
    pin = hashlib.sha256(path.read_bytes()).hexdigest()
    ms.load(path)  # unpinned: loads
    (tmp_path / "w.bin").write_bytes(b"TAMPEREDDATA")  # the graph, and so the pin, unchanged
    with pytest.raises(ms.IntegrityError, match="cannot cover"):
        ms.load(path, sha256=pin)


# -- 4. companions checked by name, then read by name ---------------------------------------


def _swap_after(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, swap: Any, at: int = 1
) -> None:
    """Run ``swap`` right after the ``at``-th call of ``module.name`` returns: the attacker's
    moment between the check and the read (the red team hit it with an inotify watcher, 8
    times in 10)."""
    real = getattr(module, name)
    calls = []

    def checked_then_swapped(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == at:
            swap()
        return out

    monkeypatch.setattr(module, name, checked_then_swapped)


def _onnx_with_canary(tmp_path: Path) -> tuple[Path, Path, Any]:
    np = pytest.importorskip("numpy")
    from tests.backends.test_onnx_ import _external_model

    model = tmp_path / "model"
    model.mkdir()
    canary = tmp_path / "secret.txt"
    canary.write_bytes(b"SECRETCANARY")
    (model / "w.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    return _external_model(model, "w.bin"), canary, np


def test_onnx_external_data_swapped_for_a_hard_link_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    import os

    from modelstore.formats.onnx import backend as onnx_backend

    path, canary, np = _onnx_with_canary(tmp_path)
    data = path.parent / "w.bin"

    def swap() -> None:
        os.link(canary, tmp_path / "link")
        os.replace(tmp_path / "link", data)

    swap()
    out = run_py(  # plain onnxruntime reads the link: the canary's 12 bytes as 3 floats
        "import onnxruntime as ort, numpy as np; "
        f"s = ort.InferenceSession({str(path)!r}); "
        "print(s.run(None, {'x': np.zeros(3, np.float32)})[0].tobytes())"
    )
    assert "SECRETCANARY" in out.stdout, out
    data.unlink()  # (the canary keeps its own name)
    data.write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    # the scan's check, then the load's: the swap comes after the last check
    _swap_after(monkeypatch, onnx_backend, "external_data_problems", swap, at=2)
    with pytest.raises(ConfinementError, match="hard link"):
        ms.load(path)


def test_a_companion_swapped_for_a_link_after_the_check_is_not_pushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    import os

    from modelstore.store import store as store_module

    path, canary, _ = _onnx_with_canary(tmp_path)
    data = path.parent / "w.bin"

    def swap() -> None:
        os.symlink(canary, tmp_path / "link")
        os.replace(tmp_path / "link", data)

    _swap_after(monkeypatch, store_module.locate, "model_paths", swap)
    store = ms.Store(str(tmp_path / "store"))
    with pytest.raises(ConfinementError):
        store.push(path, "m")
    leaked = [
        f
        for f in (tmp_path / "store").rglob("*")
        if f.is_file() and f.read_bytes() == b"SECRETCANARY"
    ]
    assert not leaked


# -- 5. a tiny compressed stream of one-byte opcodes ----------------------------------------


def test_a_tiny_bz2_stream_of_one_byte_opcodes_is_refused(tmp_path: Path) -> None:
    """``MARK``, 64 MiB of ``NONE``, ``LIST``: 150 bytes of bz2. Each opcode costs the walk
    (and joblib's own loader) a reference: with the old 256 MiB floor, 262,144,000 of them
    took scan 104 s and 2 GiB, and load 126 s."""
    import bz2

    n = 64 << 20
    comp = bz2.BZ2Compressor(9)
    parts = [comp.compress(b"\x80\x02(")]
    parts += [comp.compress(b"N" * (16 << 20)) for _ in range(n // (16 << 20))]
    parts += [comp.compress(b"l."), comp.flush()]
    path = tmp_path / "nones.joblib"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 1024
    inflated = 0  # the payload: what joblib.load walks, opcode by opcode
    with bz2.open(path) as f:
        while chunk := f.read(1 << 24):
            inflated += len(chunk)
    assert inflated == n + 5
    assert ms.scan(path).verdict != "safe"
    with pytest.raises(ms.UnsafeModelError, match="MODELSTORE_MIN_INFLATE_BYTES"):
        ms.load(path)

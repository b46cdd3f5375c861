"""Red team, pass 20 (pickles, torch views, pins): each hostile file fires in the naive
loader first; modelstore refuses it."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from modelstore.security.confine import ConfinementError
from tests.security.test_redteam import cli, run_py

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
    with pytest.raises(ms.UnsafeModelError, match="MODELSTORE_MAX_PICKLE_RATIO"):
        ms.load(path)


def test_a_tiny_gzip_stream_of_sets_is_refused(tmp_path: Path) -> None:
    """``EMPTY_LIST``, then ``EMPTY_SET APPEND`` 4 million times: 8 MB of opcodes, 216 bytes
    of objects each, from a few KB of gzip, which inflates at under 2000x (red team C: a
    633-byte bz2 one held 1.9 GiB and took load 30 s; a 62 KB gzip one scanned 22 s)."""
    import gzip

    path = tmp_path / "sets.joblib"
    path.write_bytes(gzip.compress(b"\x80\x04]" + b"\x8fa" * (4 << 20) + b".", 9))
    assert path.stat().st_size < 64 << 10
    assert ms.scan(path).verdict != "safe"
    with pytest.raises(ms.UnsafeModelError, match="MODELSTORE_MAX_PICKLE_RATIO"):
        ms.load(path)


# -- 6. what escaped as an internal error (red team C) ---------------------------------------


def test_a_tensor_of_65_dimensions_is_refused_not_a_numpy_error(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    big = torch.zeros([1] * 65)
    st = tmp_path / "dims.safetensors"
    safetensors.save_file({"w": big}, str(st))
    assert safetensors.load_file(str(st))["w"].dim() == 65  # the naive reader takes it
    for call in (ms.inspect, ms.load, ms.stats):
        with pytest.raises(ms.FormatError, match="65 dimensions"):
            call(st)
    pt = tmp_path / "dims.pt"
    torch.save({"w": big}, pt)
    with warnings.catch_warnings(), pytest.raises(ms.FormatError, match="65 dimensions"):
        warnings.simplefilter("ignore", ms.PickleWarning)
        ms.stats(pt)
    assert "internal error" not in cli("inspect", str(pt), "--stats").stderr


def test_sarif_quotes_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    import os

    safetensors = pytest.importorskip("safetensors.torch")
    folder = tmp_path / "models"
    folder.mkdir()
    safetensors.save_file({"w": torch.zeros(2)}, str(folder / "good.safetensors"))
    bad = os.fsencode(folder) + b"/bad\xff.safetensors"
    safetensors.save_file({"w": torch.zeros(2)}, os.fsdecode(bad))
    out = cli("scan", str(folder), "--format", "sarif")
    assert out.returncode == 0, out.stderr
    assert "bad%FF.safetensors" in out.stdout and "good.safetensors" in out.stdout, out.stdout


def test_predict_input_declaring_more_than_memory_is_an_argument_error(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    model = tmp_path / "w.safetensors"
    ms.save({"w": torch.zeros(4)}, model)
    x = tmp_path / "x.npy"
    with open(x, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40, 4)}
        )
    out = cli("predict", str(model), "--input", str(x))
    assert out.returncode != 0 and "internal error" not in out.stderr, out.stderr
    assert "--input" in out.stderr


# -- 7. ONNX graphs onnxruntime makes large while it loads them (red team C) ----------------


def _grows_mib(setup: str, action: str) -> int:
    """How far a fresh child's peak memory rises (MiB) above what it holds after ``setup``
    when it runs ``action``: the peak is reset first (Linux: ``/proc/self/clear_refs``),
    so what the imports held for a moment does not count."""
    code = (
        f"import re\n{setup}\n"
        "def kib(field):\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(field + r':\\s+(\\d+)', text).group(1))\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kib('VmRSS')\n"
        f"{action}\n"
        "print((kib('VmHWM') - before) // 1024)"
    )
    out = run_py(code)
    assert out.returncode == 0, out.stderr[-500:]
    return int(out.stdout.split()[-1])


def _sparse_graph(path: Path, rows: int) -> None:
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    sp = onnx.SparseTensorProto()
    sp.dims.extend([rows, 16384])
    sp.values.CopyFrom(h.make_tensor("s", T.FLOAT, [1], [1.0]))
    sp.indices.CopyFrom(h.make_tensor("s_i", T.INT64, [1], [0]))
    node = h.make_node("Gather", ["s", "idx"], ["y"], axis=0)
    graph = h.make_graph(
        [node],
        "g",
        [h.make_tensor_value_info("idx", T.INT64, [1])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 16384])],
        sparse_initializer=[sp],
    )
    path.write_bytes(
        h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    )


def _expand_graph(path: Path, rows: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(1, np.float32), "one")]
    inits.append(nh.from_array(np.array([rows, 16384], np.int64), "shape"))
    nodes = [
        h.make_node("Expand", ["one", "shape"], ["big"]),
        h.make_node("Gather", ["big", "idx"], ["y"], axis=0),
    ]
    graph = h.make_graph(
        nodes,
        "fold",
        [h.make_tensor_value_info("idx", T.INT64, [1])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 16384])],
        initializer=inits,
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))


def test_a_sparse_initializer_declaring_gigabytes_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "sparse.onnx"
    _sparse_graph(path, 6000)  # 375 MiB dense, from 200 bytes
    assert path.stat().st_size < 512
    naive = _grows_mib("import onnxruntime as ort", f"ort.InferenceSession({str(path)!r})")
    assert naive > 300, naive
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="sparse tensors declare"):
        ms.load(path)


def test_a_graph_onnxruntime_would_fold_into_gigabytes_loads_small(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "fold.onnx"
    _expand_graph(path, 6000)  # folding makes 375 MiB, from 300 bytes
    setup = "import onnxruntime as ort, onnx, modelstore as ms"
    naive = _grows_mib(setup, f"ort.InferenceSession({str(path)!r})")
    ours = _grows_mib(setup, f"ms.load({str(path)!r})")
    assert naive > 300 and ours < 100, (naive, ours)


# -- 8. red team D, on this pass's own fixes -------------------------------------------------


def _chain(folder: Path, refs: list[tuple[str, int]]) -> Path:
    """x + w0 + w1 ...: each w (4 floats) read from external data at (location, offset)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    inits, nodes, prev = [], [], "x"
    for i, (location, offset) in enumerate(refs):
        w = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[4])
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        inits.append(w)
        out = "y" if i == len(refs) - 1 else f"h{i}"
        nodes.append(helper.make_node("Add", [prev, f"w{i}"], [out]))
        prev = out
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    path = folder / "model.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_copies_only_the_ranges_its_tensors_read(tmp_path: Path) -> None:
    """A 64 GiB data file (sparse: no disk) whose graph reads 16 bytes at its start and 16
    near its end loads at once (the whole-file copy took minutes and filled the disk), and
    locations spelled ``./w.bin`` and ``sub/v.bin`` load as onnxruntime reads them."""
    pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    data = tmp_path / "w.bin"
    with open(data, "wb") as f:
        f.write(np.arange(4, dtype=np.float32).tobytes())
        f.truncate(1 << 36)
        f.seek((1 << 36) - 16)
        f.write(np.ones(4, np.float32).tobytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "v.bin").write_bytes(np.full(4, 10, np.float32).tobytes())
    path = _chain(tmp_path, [("w.bin", 0), ("./w.bin", (1 << 36) - 16), ("sub/v.bin", 0)])
    got = ms.predict(ms.load(path), np.zeros(4, np.float32))
    np.testing.assert_array_equal(got, np.arange(4) + 11)


def test_a_layer_named_empty_takes_the_maps_default(tmp_path: Path) -> None:
    """A layer named "" has the empty path, so Keras takes the map's default without a
    lookup, even under a ``.*`` key (red team D: 3 KB, 1.28 GB in plain Keras, scan safe)."""
    pytest.importorskip("keras")
    import zipfile

    from tests.security import test_keras_quantised as kq

    costly = kq._policy("GPTQDTypePolicy", "gptq/4/-1")
    case = kq.HOSTILE["map-catch-all"]
    kq.HOSTILE["map-empty-name"] = (
        case[0],
        case[1],
        kq._map(costly, {".*": kq._policy("Int4DTypePolicy", "int4/-1")}),
        *case[3:],
    )
    try:
        path, config = kq._hostile(tmp_path, "map-empty-name")
    finally:
        del kq.HOSTILE["map-empty-name"]
    config = json.loads(json.dumps(config).replace('"q"', '""'))  # the layer and its references
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    assert kq._keras_makes(config) > 1 << 30  # the payload
    assert ms.scan(path).verdict == "unsafe"


@pytest.mark.parametrize("kind", ["sparse", pytest.param("many", marks=pytest.mark.slow), "shards"])
def test_repeating_views_are_found_wherever_they_sit(tmp_path: Path, kind: str) -> None:
    """Red team D: the walk skipped sparse tensors, stopped silently after a million
    objects, and never ran for ``.bin`` shards."""
    view = torch.ones(1).expand(1 << 31)
    if kind == "sparse":
        warnings.simplefilter("ignore", UserWarning)  # (torch: sparse invariants unchecked)
        indices = torch.zeros(1, 1, dtype=torch.long).expand(1, 1 << 31)  # views: 16 bytes
        obj: Any = {"s": torch.sparse_coo_tensor(indices, view, (4,))}
        path = tmp_path / "m.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif kind == "many":
        one = torch.ones(1)
        obj = {"w": view, **{f"k{i}": one for i in range(1_000_001)}}
        path = tmp_path / "m.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        name = "pytorch_model-00001-of-00001.bin"
        torch.save({"w": view}, tmp_path / name)
        path = tmp_path / "pytorch_model.bin.index.json"
        path.write_text(json.dumps({"metadata": {}, "weight_map": {"w": name}}))
    with warnings.catch_warnings(), pytest.raises(ms.UnsafeModelError):
        warnings.simplefilter("ignore")  # (PickleWarning; torch's on sparse invariants)
        ms.load(path, dtype="float16")


class _Built:
    """Pickles as ``kind(arg)``: what a hand-made stream writes."""

    def __init__(self, kind: Any, arg: Any) -> None:
        self.kind, self.arg = kind, arg

    def __reduce__(self) -> Any:
        return self.kind, (self.arg,)


@pytest.mark.parametrize("kind", ["Counter", "set", "OrderedDict"])
def test_torch_containers_built_from_colliding_items_are_refused(tmp_path: Path, kind: str) -> None:
    """Red team D: in a ``.pt``, ``Counter``, ``set`` and ``OrderedDict`` called on a list
    of pairs that share one hash (40,000 of them: 808 KB, 40 s in ``torch.load`` and in
    ``ms.load``) were never checked, as a dict's keys are."""
    import collections

    pairs = _colliding_pairs(2000)
    func = {"Counter": collections.Counter, "set": set, "OrderedDict": collections.OrderedDict}
    arg = [(p, 1) for p in pairs] if kind == "OrderedDict" else pairs
    path = tmp_path / "c.pt"
    torch.save({"c": _Built(func[kind], arg)}, path)
    naive = torch.load(path, weights_only=True)["c"]
    assert set(naive) == set(pairs)  # the keys are the colliding pairs
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="hash the file controls"):
        ms.load(path)


def test_stats_of_a_large_array_takes_chunks(tmp_path: Path) -> None:
    """Red team C: a 1.7 MB ``.npz`` of 200M bools (a legitimate 118x deflate) made stats
    hold 3.4 GiB of float64 temporaries; chunks give the same numbers in ~10 MB."""
    np = pytest.importorskip("numpy")
    from modelstore.api.stats import CHUNK, summarize

    rng = np.random.default_rng(0)
    a = rng.normal(3, 2, 3 * CHUNK + 7).astype(np.float32)
    a[::1000], a[5] = np.nan, np.inf
    row = summarize({"a": a})[0]
    f = a[np.isfinite(a)].astype(np.float64)
    assert row.mean == pytest.approx(f.mean(), rel=1e-12)
    assert row.std == pytest.approx(f.std(), rel=1e-12)
    assert (row.min, row.max, row.nans, row.infs) == (f.min(), f.max(), a.size // 1000 + 1, 1)
    path = tmp_path / "mask.npz"
    np.savez_compressed(path, mask=rng.random(1 << 26) < 0.05)  # (deflates under 200x)
    grows = _grows_mib("import modelstore as ms", f"ms.stats({str(path)!r})")
    assert grows < 400, grows  # whole-array float64: 512 MiB and its temporaries


# -- 9. red team E, on the fixes above ------------------------------------------------------


@pytest.mark.parametrize("kind", ["set", "Counter", "bytearray", "Size"])
def test_containers_built_by_iterating_a_tensor_are_refused(tmp_path: Path, kind: str) -> None:
    """``set(view)`` iterates a tensor: one tensor object per element of an expanded view
    (2**22 of them from 1.9 KB: 3 GiB and 14 s in ``torch.load`` and ``ms.load``)."""
    import collections

    func = {"set": set, "Counter": collections.Counter, "bytearray": bytearray, "Size": torch.Size}
    dtype = torch.uint8 if kind == "bytearray" else torch.float32
    if kind == "Size":
        dtype = torch.int64
    path = tmp_path / "it.pt"
    torch.save({"s": _Built(func[kind], torch.zeros(1, dtype=dtype).expand(1000))}, path)
    got = torch.load(path, weights_only=True)["s"]  # the naive loader iterates the view
    assert len(got) in (1000, 1), got  # (a set of 1,000 distinct tensor objects; 1 for a Counter)
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="would iterate"):
        ms.load(path)


def test_many_views_of_one_storage_count_together(tmp_path: Path) -> None:
    """Red team E: 512 slices of one storage of 2**20 float16 (2.1 MB) made a float32 cast
    allocate 2.2 GiB; each view alone stayed within its storage."""
    base = torch.zeros(1 << 20, dtype=torch.float16)
    path = tmp_path / "views.pt"
    torch.save({f"v{i}": base[i:] for i in range(40)}, path)  # 40M elements over 1M
    with pytest.raises(ms.UnsafeModelError, match="repeats its data"):
        ms.load(path, dtype="float32")
    torch.save({"q": base[: 1 << 19], "k": base[1 << 19 :]}, path)  # a split: loads
    with pytest.warns(ms.PickleWarning):  # (views sharing a storage take torch's loader)
        assert ms.load(path)["k"].numel() == 1 << 19


def test_an_external_tensor_of_no_fixed_size_without_length_is_refused(tmp_path: Path) -> None:
    """A STRING tensor's external data with no length meant "to the end of the file": a
    1 GiB sparse file was copied whole (onnxruntime cannot read such a tensor)."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(1 << 30)
    w = TensorProto(name="w", data_type=TensorProto.STRING, dims=[1])
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    x = helper.make_tensor_value_info("x", TensorProto.STRING, [1])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    with pytest.raises(ms.FormatError, match="no fixed size and no length"):
        ms.load(path)


def test_the_checksum_covers_external_data_as_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded checksum of a graph with external data is taken once, at load, through
    the descriptors the data is copied from: a byte changed in the data file is caught."""
    pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    from modelstore.formats.onnx import export as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)  # as if over 2 GB
    x = np.random.default_rng(0).random((4, 16), dtype=np.float32)
    path = tmp_path / "m.onnx"
    ms.export_onnx(torch.nn.Linear(16, 8), path, sample_input=x)
    (data,) = tmp_path.glob("m.onnx.*.data")
    ms.load(path)
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ms.IntegrityError):
        ms.load(path)
    ms.load(path, verify=False)  # the caller's choice: the graph still loads

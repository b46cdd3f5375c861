"""Hostile tensor records in ``.pt`` zips: what ``torch.load(mmap=True)`` would read past a
member, what the one-scan builder (``formats/torch/fastload.py``) must never build, and the
walks ``inspect`` makes over a scanned pickle (red team, seventh round)."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.formats.torch import fastload  # noqa: E402
from modelstore.security.torchfile import read_pickles  # noqa: E402

TWO_FLOATS = struct.pack("<2f", 1.0, 2.0)


class _Storage:
    """Pickled as torch's persistent id for a storage record."""

    def __init__(self, key: str = "0", numel: int = 2, stype: Any = None) -> None:
        self.pid = ("storage", stype or torch.FloatStorage, key, "cpu", numel)


class _Call:
    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> Any:
        return (self.fn, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _Storage) else None


def tensor(storage: Any = None, offset: Any = 0, size: Any = (2,), stride: Any = (1,)) -> Any:
    storage = _Storage() if storage is None else storage
    return _Call(
        torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, OrderedDict())
    )


def write_pt(
    path: Path,
    obj: Any = None,
    data: dict[str, bytes] | None = None,
    raw: bytes = b"",
    version: bytes | None = b"3\n",
    byteorder: bytes | None = b"little",
) -> Path:
    """A zip in torch's layout whose data.pkl pickles ``obj`` (or is ``raw``)."""
    if not raw:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
        raw = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", raw)
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
        for key, value in (data if data is not None else {"0": TWO_FLOATS}).items():
            zf.writestr(f"archive/data/{key}", value)
        if version is not None:
            zf.writestr("archive/version", version)
    return path


def _load(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        return ms.load(path)


def test_the_crafted_layout_loads(tmp_path: Path) -> None:
    """The helper's files are real: torch.load and ms.load read the plain one alike, through
    the one-scan builder."""
    path = write_pt(tmp_path / "ok.pt", {"w": tensor()})
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 2.0]
    assert fastload.build(path, read_pickles(path), None) is not fastload.NOT_PLAIN
    assert _load(path)["w"].tolist() == [1.0, 2.0]


def test_a_storage_record_larger_than_its_member_is_refused(tmp_path: Path) -> None:
    """A record claiming 64 floats over an 8-byte member: ``torch.load(mmap=True)`` (what
    ms.load called before) hands back a tensor of whatever bytes follow the member in the
    file (other members, the central directory). scan, load and inspect refuse it."""
    path = write_pt(tmp_path / "numel.pt", {"w": tensor(_Storage(numel=64), size=(64,))})
    leaked = torch.load(path, weights_only=True, mmap=True)["w"]  # the naive loader
    assert leaked.numel() == 64 and leaked[:2].tolist() == [1.0, 2.0]
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(
        ms.UnsafeModelError, match="holds 64 elements of 4 bytes, but its member holds 8"
    ):
        _load(path)
    with pytest.raises(ms.ModelstoreError, match="64 elements"):
        ms.inspect(path)


def test_a_storage_record_naming_no_member_is_refused(tmp_path: Path) -> None:
    path = write_pt(tmp_path / "missing.pt", {"w": tensor(_Storage(key="7"))})
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="names storage '7', which is not a member"):
        _load(path)


@pytest.mark.parametrize(
    "offset,size,stride",
    [
        (0, (100,), (1,)),  # past the storage's end
        (2, (1,), (1,)),  # starts at its end
        (-1, (2,), (1,)),  # before its start
        (0, (2,), (-1,)),  # backwards
        (0, (2, 2), (1,)),  # sizes and strides disagree
        (0, (1 << 60,), (0,)),  # an expanded view of 2**60 elements
        (0.0, (2,), (1,)),  # not an int
        (True, (2,), (1,)),  # a bool is not an offset
    ],
)
def test_a_view_outside_its_storage_is_never_built(
    tmp_path: Path, offset: Any, size: Any, stride: Any
) -> None:
    """The builder checks each view against its storage before ``Tensor.set_`` sees it; what
    it does not build goes to torch.load, which refuses or builds what torch allows."""
    path = write_pt(tmp_path / "view.pt", {"w": tensor(offset=offset, size=size, stride=stride)})
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN
    if size == (1 << 60,):  # torch builds it; its 2**60 elements over 2 are refused (pass 20)
        with pytest.raises(ms.UnsafeModelError, match="repeats its data"):
            _load(path)
        return
    _as_torch_loads_it(path, lambda t: (t.shape, t.stride()))


def _as_torch_loads_it(path: Path, key: Any) -> None:
    """ms.load refuses what ``torch.load(weights_only=True, mmap=True)`` refuses, and
    otherwise returns a ``w`` equal to torch's under ``key``."""
    try:
        expected = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - torch refuses it: so must we
        with pytest.raises(ms.ModelstoreError):
            _load(path)
    else:
        assert key(_load(path)["w"]) == key(expected["w"])


def test_one_storage_read_as_two_types_is_never_built(tmp_path: Path) -> None:
    """Two records over one member with different element types (torch.save refuses to write
    that): not built here."""
    obj = {"a": tensor(), "b": tensor(_Storage(numel=8, stype=torch.ByteStorage), size=(8,))}
    path = write_pt(tmp_path / "two.pt", obj)
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN


def test_a_state_dict_state_other_than_its_metadata_is_never_built(tmp_path: Path) -> None:
    """torch's unpickler applies an OrderedDict's BUILD state to its ``__dict__``; the builder
    takes ``_metadata`` only and leaves any other state (``__class__``, ...) to torch."""

    class Od(OrderedDict):  # type: ignore[type-arg]
        def __reduce__(self) -> Any:
            return (OrderedDict, (), {"__class__": 1, "_metadata": {}}, None, iter(self.items()))

    path = write_pt(tmp_path / "state.pt", Od(w=tensor()))
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN
    got = _load(path)
    assert type(got) is OrderedDict and got["w"].tolist() == [1.0, 2.0]


def _inspect_in_a_child(path: Path) -> None:
    code = (
        "import warnings, modelstore as ms; warnings.simplefilter('ignore');"
        f"ms.inspect({str(path)!r}); print('done')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-500:]


def test_a_dict_holding_itself_under_many_keys_does_not_hang_inspect(tmp_path: Path) -> None:
    """16 KB of pickle: a dict that holds itself under 4,000 keys. The walks returned before
    charging calls past their depth limit, and every loop kept iterating its keys once the
    budget was spent: ~13 minutes with the collector paused (red team: 76 s for 400 keys)."""
    raw = b"\x80\x02X\x01\x00\x00\x00aq\x000}q\x01(" + b"h\x00h\x01" * 4000 + b"u."
    _inspect_in_a_child(write_pt(tmp_path / "self.pt", raw=raw, data={}))


def test_a_key_the_file_built_is_not_formatted(tmp_path: Path) -> None:
    """249 bytes: a dict key that is a list made of itself twice, 30 times over, through the
    memo. Formatting it into a dotted name walked 2**30 leaves (13 GB, minutes); keys that are
    not strings or small ints are named by their type."""
    raw = bytearray(b"\x80\x04}]\x940")
    for i in range(30):
        raw += b"(h" + bytes([i]) + b"h" + bytes([i]) + b"l\x94" + (b"0" if i < 29 else b"")
    raw += b"K\x01s."
    _inspect_in_a_child(write_pt(tmp_path / "key.pt", raw=bytes(raw), data={}))


def test_a_shape_of_two_hundred_thousand_entries_is_not_a_tensor_record(tmp_path: Path) -> None:
    """A 400 KB record whose "shape" is 200,000 memo copies of 2**62: multiplying them out was
    quadratic (239 s). Shapes of more than 64 entries, or entries outside int64, are not read
    as tensor records."""
    raw = bytearray(b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(")
    raw += b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ"
    raw += (
        b"K\x00(\x8a\x08" + (1 << 62).to_bytes(8, "little") + b"q\x00" + b"h\x00" * 199_999 + b"t"
    )
    raw += b"(tK\x00}tRs."
    path = write_pt(tmp_path / "shape.pt", raw=bytes(raw), data={"0": b"\0" * 4})
    _inspect_in_a_child(path)
    assert ms.inspect(path).tensors == []


# -- red team, seventh round, second pass --------------------------------------------------


def test_a_storage_key_the_file_built_is_refused_without_printing_it(tmp_path: Path) -> None:
    """974 bytes: a storage record whose key is a tuple holding the previous level twice, 40
    levels deep. The size check's message printed it (2**40 steps: scan, inspect and load
    hung; torch.load alone hangs building the member name). Keys must be strings."""
    key: Any = "k"
    for _ in range(40):
        key = (key, key)
    path = write_pt(tmp_path / "key.pt", {"w": tensor(_Storage(key=key))})
    assert path.stat().st_size < 2000
    code = (
        "import warnings, modelstore as ms; warnings.simplefilter('ignore');"
        f"r = ms.scan({str(path)!r}); print(r.verdict, r.findings[0].reason)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("unsafe"), proc.stderr[-500:]
    assert "names its storage by a tuple, not a string" in proc.stdout


@pytest.mark.parametrize(
    "stype,numel,members,why",
    [
        # packed quantized storages were skipped by the check: 200 "elements" of a 0-byte
        # member mapped the next member's header and data (and aliased its tensor)
        ("QUInt4x2Storage", 200, {"0": b"", "1": TWO_FLOATS}, "holds 200 elements of 1 bytes"),
        # numel=True (NEWTRUE) was skipped too: torch maps True x 8 bytes
        ("DoubleStorage", True, {"0": b""}, "element count that is not a count"),
        ("FloatStorage", -1, {"0": b""}, "element count that is not a count"),
        # a storage class the check has no element size for is refused, not waved through
        ("storage.TypedStorage", 2, {"0": TWO_FLOATS}, "whose element size is unknown"),
    ],
)
def test_every_storage_record_is_checked_against_its_member(
    tmp_path: Path, stype: str, numel: Any, members: dict[str, bytes], why: str
) -> None:
    owner: Any = torch
    for part in stype.split("."):
        owner = getattr(owner, part)
    path = write_pt(
        tmp_path / "rec.pt", {"w": tensor(_Storage(numel=numel, stype=owner))}, data=members
    )
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match=why):
        _load(path)


@pytest.mark.parametrize(
    "version,byteorder",
    [(None, b"little"), (b"999\n", b"little"), (b"3\n", b"little" + b" " * 20), (b"3\n", b"big")],
)
def test_records_torch_would_refuse_or_read_otherwise_are_left_to_it(
    tmp_path: Path, version: bytes | None, byteorder: bytes
) -> None:
    """No format version, a version newer than torch reads, a byte-order record that is not
    exactly "little": the builder leaves each to torch.load (which refuses the first three
    and byte-swaps the last) instead of reading the storages as little-endian version-3 data."""
    path = write_pt(tmp_path / "v.pt", {"w": tensor()}, version=version, byteorder=byteorder)
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN
    _as_torch_loads_it(path, lambda t: t.tolist())


def test_a_state_is_what_it_was_when_build_applied_it(tmp_path: Path) -> None:
    """An OrderedDict's BUILD state, empty when BUILD runs, is filled afterwards through the
    memo: unpicklers apply the state as it was (no ``_metadata``); the scan records how many
    entries it had then, so the builder does not set a ``_metadata`` torch would not."""
    raw = (
        b"\x80\x02ccollections\nOrderedDict\n)Rq\x00}q\x01b"  # od, BUILD with an empty state
        b"h\x01X\t\x00\x00\x00_metadata}X\x01\x00\x00\x00xK\x07ss0"  # state["_metadata"] = {...}
        b"X\x04\x00\x00\x00junkh\x01s."  # od["junk"] = state
    )
    path = write_pt(tmp_path / "state.pt", raw=raw, data={})
    loaded = pickle.loads(raw)
    assert loaded["junk"] == {"_metadata": {"x": 7}} and not hasattr(loaded, "_metadata")
    main = read_pickles(path).main
    assert main is not None and main.result.state_size == 0 and len(main.result.state.items) == 1
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN


# -- red team, seventh round, third pass (the collector's pauses) -------------------------------


def _in_a_child(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import warnings; warnings.simplefilter('ignore')\n" + code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-800:]
    return proc.stdout


def test_one_state_built_into_many_objects_scans_in_linear_time(tmp_path: Path) -> None:
    """A 500 KB pickle: one dict of 50,000 entries, then ``BUILD`` with it 100,000 times.
    Copying the state at each BUILD (to keep what BUILD applied) took 22 s, paused; the scan
    records how many entries the state had instead."""
    raw = bytearray(b"\x80\x02ccollections\nOrderedDict\n)Rq\x00")
    raw += b"}q\x01(" + b"K\x00K\x00" * 50_000 + b"u0" + b"h\x01b" * 100_000 + b"."
    path = write_pt(tmp_path / "builds.pt", raw=bytes(raw), data={})
    out = _in_a_child(f"import modelstore as ms; print(ms.scan({str(path)!r}).verdict)")
    assert out.strip() == "unsafe"  # "sets the state of collections.OrderedDict twice"


def test_a_safetensors_shape_of_huge_factors_is_refused_at_once(tmp_path: Path) -> None:
    """A 4 MB header whose one shape is 200,000 factors just under 2**61: the element count was
    multiplied out in full before its bound was checked (114 s). It stops at the bound."""
    header = (
        '{"a":{"dtype":"F32","shape":['
        + ",".join(["2305843009213693951"] * 200_000)
        + '],"data_offsets":[0,0]}}'
    ).encode()
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    out = _in_a_child(
        "import modelstore as ms\n"
        f"r = ms.scan({str(path)!r}); print(r.verdict, len(r.findings[0].reason))"
    )
    verdict, length = out.split()
    assert verdict != "safe" and int(length) < 400  # the message shows 80 characters of it


@pytest.mark.slow  # seconds; the full suite runs it
def test_torch_is_imported_before_the_load_pauses_the_collector(tmp_path: Path) -> None:
    """The first ``.pt`` load in a process imported torch inside the pause (~1.5 s of it)."""
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, path)
    out = _in_a_child(
        "import sys, modelstore as ms\n"
        "from modelstore.formats.torch import backend\n"
        "real = backend.paused\n"
        "def spy(pause, fn, *args):\n"
        "    print('torch' in sys.modules)\n"
        "    return real(pause, fn, *args)\n"
        "backend.paused = spy\n"
        "assert 'torch' not in sys.modules\n"
        f"ms.load({str(path)!r})\n"
    )
    assert out.split() == ["True"]

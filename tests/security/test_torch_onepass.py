"""The one-pass read of an untrusted ``.pt`` (modelstore's restricted unpickler inside
``torch.load``): each check the separate scan made before still holds, benign archives load
as torch loads them, and what the one pass leaves to torch goes through scan + weights_only."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.errors import ModelstoreError, UnsafeModelError  # noqa: E402
from modelstore.formats.torch.backend import TorchBackend  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::modelstore.PickleWarning")


class Ref:
    """A storage record ``('storage', <type>, key, 'cpu', numel)`` in the pickle."""

    def __init__(self, key: Any = "0", numel: int = 4, stype: Any = None, kind: Any = "storage"):
        self.pid = (kind, stype or torch.FloatStorage, key, "cpu", numel)


class Reduce:
    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> Any:
        return (self.fn, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, Ref) else None


def dumps(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def tensor(
    ref: Any = None, offset: int = 0, size: Any = (4,), stride: Any = (1,), **kw: Any
) -> Any:
    hooks = kw.get("hooks", OrderedDict())
    return Reduce(torch._utils._rebuild_tensor_v2, ref or Ref(), offset, size, stride, False, hooks)


def pt_with(tmp_path: Path, data: bytes, name: str = "m.pt") -> Path:
    """torch.save's archive of one 4-float storage, its data.pkl replaced by ``data``."""
    base = tmp_path / "base.pt"
    torch.save({"w": torch.arange(4.0)}, base)
    out = tmp_path / name
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = data if info.filename.endswith("/data.pkl") else zin.read(info)
            zout.writestr(info.filename, body)
    return out


def refused(path: Path, *words: str) -> str:
    with pytest.raises(ModelstoreError) as e:
        ms.load(path)
    assert isinstance(e.value, UnsafeModelError), e.value
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


# ---- benign archives: the one pass reads them, and nothing else does


def test_crafted_benign_archive_loads_in_one_pass(tmp_path: Path, monkeypatch: Any) -> None:
    path = pt_with(tmp_path, dumps({"w": tensor(), "tail": tensor(offset=2, size=(2,))}))
    monkeypatch.setattr(TorchBackend, "scan", lambda self, p: pytest.fail("scanned first"))
    sd = ms.load(path)
    assert torch.equal(sd["w"], torch.arange(4.0))
    assert torch.equal(sd["tail"], torch.tensor([2.0, 3.0]))


def test_state_dict_with_metadata_shared_storage_and_parameters(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    base = torch.arange(12.0)
    obj = {
        "sd": net.state_dict(),
        "view": base[3:9].view(2, 3),
        "whole": base,
        "p": torch.nn.Parameter(torch.ones(2)),
        "t": base.view(3, 4).t(),
    }
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    got = ms.load(path)
    for k, v in net.state_dict().items():
        assert torch.equal(got["sd"][k], v)
    assert got["sd"]._metadata == net.state_dict()._metadata
    assert torch.equal(got["view"], obj["view"]) and torch.equal(got["t"], obj["t"])
    assert got["view"].untyped_storage().data_ptr() == got["whole"].untyped_storage().data_ptr()
    assert isinstance(got["p"], torch.nn.Parameter) and got["p"].requires_grad


def test_what_the_one_pass_leaves_to_torch_still_loads(tmp_path: Path) -> None:
    """torch.Size and sparse tensors are read by scan + weights_only (Unsupported here)."""
    obj = {"shape": torch.Size([2, 3]), "s": torch.eye(3).to_sparse(), "w": torch.ones(2)}
    path = tmp_path / "ck.pt"
    torch.save(obj, path)
    got = ms.load(path)
    assert got["shape"] == torch.Size([2, 3]) and torch.equal(got["s"].to_dense(), torch.eye(3))


# ---- each check of the scan, now made while reading


def test_global_outside_the_allow_list_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = pt_with(tmp_path, dumps({"w": Reduce(os.system, f"touch {marker}")}))
    refused(path, "system")
    assert not marker.exists()


def test_storage_spelling_is_checked_before_torch_maps_it(tmp_path: Path) -> None:
    """torch's find_class turns any name holding 'Storage' into a storage type; the
    spelling must be on the allow-list first (scan and load agree)."""
    data = dumps({"w": tensor()}).replace(b"ctorch\nFloatStorage\n", b"cos\nFloatStorage\n")
    assert b"cos\nFloatStorage" in data
    refused(pt_with(tmp_path, data), "os.FloatStorage")
    assert ms.scan(pt_with(tmp_path, data, "b.pt")).verdict != "safe"


@pytest.mark.parametrize(
    "ref",
    [
        Ref(key="../0"),
        Ref(key=0),
        Ref(kind="module"),
        Ref(numel=-1),
        Ref(stype=torch.float32),
    ],
    ids=["path-key", "int-key", "other-kind", "negative-numel", "dtype-as-type"],
)
def test_persistent_ids_only_in_torch_saves_form(tmp_path: Path, ref: Any) -> None:
    refused(pt_with(tmp_path, dumps({"w": tensor(ref)})))


def test_persistent_id_that_is_no_tuple(tmp_path: Path) -> None:
    # BINPERSID on a plain string
    data = b"\x80\x02}q\x00X\x01\x00\x00\x00wX\x01\x00\x00\x000Qs."
    refused(pt_with(tmp_path, data))


@pytest.mark.parametrize(
    "offset,size,stride",
    [(0, (5,), (1,)), (3, (2,), (1,)), (0, (2, 2), (3, 1)), (0, (4,), (-1,)), (-1, (1,), (1,))],
)
def test_tensor_views_stay_inside_their_storage(
    tmp_path: Path, offset: int, size: Any, stride: Any
) -> None:
    refused(pt_with(tmp_path, dumps({"w": tensor(offset=offset, size=size, stride=stride)})))


def test_backward_hooks_are_refused(tmp_path: Path) -> None:
    hooks = OrderedDict([(0, Reduce(OrderedDict))])
    refused(pt_with(tmp_path, dumps({"w": tensor(hooks=hooks)})), "hooks")


def test_tensor_of_a_storage_the_file_did_not_name(tmp_path: Path) -> None:
    path = pt_with(
        tmp_path,
        dumps({"w": Reduce(torch._utils._rebuild_tensor_v2, [], 0, (0,), (1,), False, {})}),
    )
    refused(path)


def test_build_on_an_allow_listed_object(tmp_path: Path) -> None:
    data = b"\x80\x02ctorch\nfloat32\nq\x00}q\x01X\x01\x00\x00\x00aK\x01sb."
    refused(pt_with(tmp_path, data))
    assert not hasattr(torch.float32, "a")


def test_ordered_dict_state_may_not_shadow_its_methods(tmp_path: Path) -> None:
    od: Any = OrderedDict(w=tensor())
    od.__dict__["keys"] = 1
    refused(pt_with(tmp_path, dumps(od)), "OrderedDict")


def test_data_after_stop(tmp_path: Path) -> None:
    refused(pt_with(tmp_path, dumps({"w": tensor()}) + b"\x80\x02K\x01."), "STOP")


def test_colliding_dict_keys(tmp_path: Path) -> None:
    refused(pt_with(tmp_path, dumps({"w": tensor(), 2**70: 1})), "hash")


def test_calling_a_value_entry(tmp_path: Path) -> None:
    refused(pt_with(tmp_path, dumps({"w": Reduce(torch.FloatStorage, 10**12)})))


def test_truncated_pickle_is_damage(tmp_path: Path) -> None:
    path = pt_with(tmp_path, dumps({"w": tensor()})[:-5])
    with pytest.raises(ms.IntegrityError):
        ms.load(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script itself
def test_torchscript_layout_is_never_handed_to_torch(tmp_path: Path) -> None:
    """torch.load(weights_only=False) would hand a TorchScript archive to torch.jit.load:
    the container check refuses it before torch sees it."""
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "script.pt"
    torch.jit.save(scripted, path)
    with pytest.raises(ModelstoreError, match="TorchScript"):
        ms.load(path)


def test_torch_forcing_weights_only_keeps_the_two_pass_path(
    tmp_path: Path, monkeypatch: Any
) -> None:
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(3)}, path)
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    assert torch.equal(ms.load(path)["w"], torch.ones(3))


# ---- the reader reads the file directly until a FRAME: frames opening mid-stream


def test_frame_opening_mid_stream_is_read_with_the_frame_rules(tmp_path: Path) -> None:
    import struct

    from tests import hostile_pickles as hp

    marker = tmp_path / "marker"
    overrun = hp.frame_overrun(marker)
    assert overrun.startswith(hp.P4)
    # unframed opcodes first (NONE, POP), then the overrunning frame
    path = tmp_path / "late.pkl"
    path.write_bytes(hp.P4 + b"N0" + overrun[len(hp.P4) :])
    with pytest.raises(UnsafeModelError, match="frame"):
        ms.load(path)
    assert not marker.exists()
    # benign: an unframed prefix, a frame, an unframed gap, a second frame
    body = pickle.dumps({"a": [1, 2]}, protocol=2)[2:-1]  # no PROTO, no STOP
    frame = b"\x95" + struct.pack("<Q", len(body)) + body
    good = tmp_path / "good.pkl"
    good.write_bytes(hp.P4 + b"N0" + frame + b"\x95" + struct.pack("<Q", 2) + b"N0" + b".")
    assert ms.load(good) == {"a": [1, 2]}

"""Crafted and damaged inputs: every public call answers with a ModelstoreError."""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402
from tests.backends.test_safetensors_ import rewrite_header  # noqa: E402


def test_pin_is_never_answered_from_a_cache(tmp_path: Path) -> None:
    """Same-size tampering with the mtime restored is still caught by sha256=."""
    p, q = tmp_path / "p.safetensors", tmp_path / "q.safetensors"
    pin = ms.save(models.trained_net(seed=1), p).sha256
    ms.save(models.trained_net(seed=2), q)
    st = os.stat(p)
    p.write_bytes(q.read_bytes())
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ms.IntegrityError, match="pinned"):
        ms.load(p, model=models.Net, sha256=pin)
    with pytest.raises(ms.ArgumentError):
        ms.load(p, model=models.Net, sha256=123)  # type: ignore[arg-type]


def _zip_variant(tmp_path: Path, name: str, edit: Any) -> Path:
    src = tmp_path / "src.pt"
    torch.save(models.trained_net().state_dict(), src)
    out = tmp_path / name
    data = bytearray(src.read_bytes())
    edit(data)
    out.write_bytes(bytes(data))
    return out


def _set_method(data: bytearray, method: int) -> None:
    data[8:10] = struct.pack("<H", method)  # first local header's compression method
    cd = data.rfind(b"PK\x01\x02", 0, len(data))
    first_cd = data.find(b"PK\x01\x02")
    data[first_cd + 10 : first_cd + 12] = struct.pack("<H", method)
    assert cd >= first_cd


@pytest.mark.parametrize("edit", ["method99", "encrypted", "deflate_garbage"])
def test_crafted_torch_zip_records(tmp_path: Path, edit: str) -> None:
    """Unknown compression, the encrypted flag, garbage deflate: ModelstoreError everywhere."""

    def method99(d: bytearray) -> None:
        _set_method(d, 99)

    def encrypted(d: bytearray) -> None:
        first_cd = d.find(b"PK\x01\x02")
        d[6] |= 1
        d[first_cd + 8] |= 1

    def deflate_garbage(d: bytearray) -> None:
        _set_method(d, 8)

    path = _zip_variant(
        tmp_path,
        f"{edit}.pt",
        {"method99": method99, "encrypted": encrypted, "deflate_garbage": deflate_garbage}[edit],
    )
    for call in (
        lambda: ms.load(path),
        lambda: ms.inspect(path),
        lambda: ms.load(path, trust=True),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            with pytest.raises(ms.ModelstoreError) as e:
                call()
        assert str(path) in str(e.value)
    # torch.save stores every member: a deflated one (garbage or not) is refused before it is
    # inflated, like an unknown method or the encrypted flag
    assert ms.scan(path).verdict == "unsafe"


def test_bit_flipped_foreign_pt_is_integrity_not_unsafe(tmp_path: Path) -> None:
    """Damage (a bad CRC) is an IntegrityError that says fetch again, not 'trust it'."""
    path = tmp_path / "w.pth"
    torch.save(models.trained_net().state_dict(), path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ms.IntegrityError, match="damaged") as e:
        ms.load(path)
    assert "trust=True" not in str(e.value)


def test_wrong_format_argument_is_format_error(tmp_path: Path) -> None:
    """format='torch' on a safetensors file is a FormatError."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)
    with pytest.raises(ms.FormatError):
        ms.load(path, format="torch")


def test_checkpoint_with_trust_stays_a_checkpoint(tmp_path: Path) -> None:
    """trust=True returns the same checkpoint dict as the default; model= needs weights inside."""
    path = tmp_path / "ck.pt"
    net = models.trained_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ms.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        assert set(ms.load(path, trust=True)) == {"model", "optimizer", "epoch"}
        ms.save({"net": net.state_dict()}, tmp_path / "odd.pt")
        with pytest.raises(ms.ArchitectureMismatchError, match="no state dict"):
            ms.load(tmp_path / "odd.pt", model=models.Net)


@pytest.mark.parametrize(
    "field,value",
    [
        ("metadata", "abc"),
        ("metadata", 5),
        ("tied", ["w"]),
        ("config", "abc"),
        ("signature", "x"),
        ("labels", {"a": 1}),
        ("tied", {"a": 1}),
    ],
)
def test_malformed_recorded_metadata(tmp_path: Path, field: str, value: Any) -> None:
    """Metadata fields of the wrong type in a file are a FormatError on load and inspect."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)

    def edit(h: dict[str, Any]) -> None:
        meta = json.loads(h["__metadata__"]["modelstore"])
        meta[field] = value
        h["__metadata__"]["modelstore"] = json.dumps(meta)

    rewrite_header(path, edit)
    for call in (lambda: ms.load(path, model=models.Net, verify=False), lambda: ms.inspect(path)):
        with pytest.raises(ms.FormatError, match=field):
            call()


@pytest.mark.parametrize("shape", [[0, 2**70], [0, 2**62, 2**62], [True, 2]])
def test_hostile_safetensors_shapes(tmp_path: Path, shape: list[Any]) -> None:
    """Overflowing or boolean dimensions are refused by header validation."""
    path = tmp_path / "w.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ms.FormatError, match="shape"):
        ms.load(path)


def test_predict_input_problems_are_argument_errors() -> None:
    """Int lists are cast for float models; bad shapes, ragged lists, strings, None are ArgumentErrors."""
    net = models.trained_net()
    assert ms.predict(net, [[1] * 64]).shape == (1, 10)
    for bad in (np.zeros((2, 5), np.float32), [[1.0, 2.0], [1.0]], "abc", None):
        with pytest.raises(ms.ArgumentError):
            ms.predict(net, bad)


def test_embedding_models_keep_integer_ids() -> None:
    """Integer inputs of a model that starts with an embedding stay integers."""
    lm = models.TiedLM()
    assert ms.predict(lm, [[1, 2, 3]]).shape == (1, 3, 50)


def test_unusable_devices(tmp_path: Path) -> None:
    """device='mps'/'xpu'/nonsense is an ArgumentError, not a torch crash."""
    path = tmp_path / "m.safetensors"
    ms.save(models.trained_net(), path)
    for dev in ("mps", "xpu", "nonsense"):
        if (
            dev != "nonsense"
            and getattr(torch.backends, dev, None)
            and torch.backends.mps.is_available()
        ):
            continue
        with pytest.raises(ms.ArgumentError):
            ms.load(path, model=models.Net, device=dev)
        with pytest.raises(ms.ArgumentError):
            ms.predict(models.trained_net(), np.zeros((1, 64), np.float32), device=dev)


def test_save_problems(tmp_path: Path) -> None:
    """Unsupported dtypes, labels=5; format= wins over the suffix on save."""
    with pytest.raises(ms.UnsupportedModelError, match="complex128"):
        ms.save({"a": torch.zeros(2, dtype=torch.complex128)}, tmp_path / "c.safetensors")
    with pytest.raises(ms.ArgumentError, match="labels"):
        ms.save(models.trained_net(), tmp_path / "m.safetensors", labels=5)  # type: ignore[arg-type]
    info = ms.save(models.trained_net(), tmp_path / "x.pt", format="safetensors")
    assert info.format == "safetensors"
    assert isinstance(
        ms.load(tmp_path / "x.pt", format="safetensors", model=models.Net), models.Net
    )
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_integer_tensor_for_float_parameter(tmp_path: Path) -> None:
    """A dtype kind mismatch (int file, float model) is an ArchitectureMismatchError."""
    sd = {
        k: v.to(torch.int32) if k == "fc1.bias" else v
        for k, v in models.trained_net().state_dict().items()
    }
    path = tmp_path / "m.safetensors"
    ms.save(sd, path)
    with pytest.raises(ms.ArchitectureMismatchError, match="fc1.bias: file int32 vs model float32"):
        ms.load(path, model=models.Net)


def test_parameterless_module_saves(tmp_path: Path) -> None:
    """A module without parameters (nn.ReLU) saves and loads."""
    path = tmp_path / "relu.safetensors"
    ms.save(torch.nn.ReLU(), path)
    assert isinstance(ms.load(path, model=torch.nn.ReLU), torch.nn.ReLU)


def test_null_byte_path() -> None:
    """A path with a NUL byte is an ArgumentError."""
    with pytest.raises(ms.ArgumentError):
        ms.load("a\0b")

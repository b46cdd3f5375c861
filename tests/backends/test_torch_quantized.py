"""Dynamically quantized torch modules: a .pt of one saves and loads through the usual gate
(no new allowed globals), model=Net is quantized again from the file; safetensors and
quantized LSTMs (TorchScript objects) are refused with what to do instead."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.api.inspect import recorded_metadata  # noqa: E402
from modelstore.security.allowlist import TORCH_WEIGHTS  # noqa: E402
from tests import models  # noqa: E402

# torch's own deprecations of eager-mode quantization and of quantized tensors: the test
# suite, like an application, decides which third-party warnings it sees
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning"),
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
    # every .pt load says it unpickles (once per file): asserted in the first test
    pytest.mark.filterwarnings("ignore::modelstore.PickleWarning"),
]

X = torch.rand(6, 64, generator=torch.Generator().manual_seed(0))


def quantized(dtype: Any = None, names: Any = None) -> Any:
    net = models.trained_net()
    spec = names or {torch.nn.Linear}
    return torch.ao.quantization.quantize_dynamic(net, spec, dtype=dtype or torch.qint8)


def test_state_dict_holds_only_allowlisted_globals(tmp_path: Path) -> None:
    """A plain torch.save of a quantized state dict scans safe with names already allowed."""
    path = tmp_path / "q.pt"
    torch.save(quantized().state_dict(), path)
    report = ms.scan(path)
    assert report.verdict == "safe"
    assert "torch._utils._rebuild_qtensor" in report.globals
    assert "torch.qint8" in report.globals and "torch.per_tensor_affine" in report.globals
    assert set(report.globals) <= TORCH_WEIGHTS
    tensors = {t.name: t for t in ms.inspect(path).tensors}  # read statically, qint8 included
    weight = tensors["fc1._packed_params._packed_params.0"]
    assert (weight.dtype, weight.shape, weight.nbytes) == ("qint8", (32, 64), 32 * 64)
    with pytest.warns(ms.PickleWarning):
        ms.load(path)


@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_save_and_load_with_model_class(tmp_path: Path, dtype: str) -> None:
    """ms.save(q, .pt) then load(model=Net): Net is built, quantized as the file says, identical outputs."""
    q = quantized(getattr(torch, dtype))
    path = tmp_path / "q.pt"
    ms.save(q, path, config={"hidden": 32}, labels=list("0123456789"))
    record = recorded_metadata(path)["quantized"]
    assert record["method"] == "torch.ao.quantization.quantize_dynamic"
    assert set(record["modules"]) == {"fc1", "fc2"}
    assert {m["dtype"] for m in record["modules"].values()} == {dtype}
    loaded = ms.load(path, model=models.Net)
    assert type(loaded.fc1) is type(q.fc1) and not loaded.training
    with torch.inference_mode():
        assert torch.equal(loaded(X), q(X))
    out = ms.predict(loaded, X.numpy(), output="label")
    assert len(out) == 6 and set(out) <= set("0123456789")
    sd = ms.load(tmp_path / "q.pt")  # no model=: the state dict as torch keeps it
    assert sd["fc1._packed_params.dtype"] == getattr(torch, dtype)


def test_foreign_files_instances_partial_and_checkpoints(tmp_path: Path) -> None:
    """torch.save files (no metadata) load into a class, an instance, partly quantized models and checkpoints."""
    q = quantized()
    torch.save(q.state_dict(), tmp_path / "plain.pt")
    with torch.inference_mode():
        want = q(X)
        assert torch.equal(ms.load(tmp_path / "plain.pt", model=models.Net)(X), want)
        assert torch.equal(ms.load(tmp_path / "plain.pt", model=models.Net())(X), want)
        already = quantized()  # an instance already quantized: filled as is
        assert torch.equal(ms.load(tmp_path / "plain.pt", model=already)(X), want)
        torch.save({"model": q.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
        assert torch.equal(ms.load(tmp_path / "ckpt.pt", model=models.Net)(X), want)
        part = quantized(names={"fc1"})
        torch.save(part.state_dict(), tmp_path / "part.pt")
        loaded = ms.load(tmp_path / "part.pt", model=models.Net)
        assert type(loaded.fc2) is torch.nn.Linear and type(loaded.fc1) is type(part.fc1)
        assert torch.equal(loaded(X), part(X))
    # a root that is itself a quantized Linear
    lin = torch.ao.quantization.quantize_dynamic(torch.nn.Linear(64, 3), {torch.nn.Linear})
    torch.save(lin.state_dict(), tmp_path / "lin.pt")
    back = ms.load(tmp_path / "lin.pt", model=torch.nn.Linear(64, 3))
    with torch.inference_mode():
        assert torch.equal(back(X), lin(X))


def test_wrong_model_is_an_architecture_mismatch(tmp_path: Path) -> None:
    """A model without the file's layers, or with a non-Linear there: ArchitectureMismatchError."""
    torch.save(quantized().state_dict(), tmp_path / "q.pt")
    with pytest.raises(ms.ArchitectureMismatchError, match="do not fit"):
        ms.load(tmp_path / "q.pt", model=models.BNNet)

    class Conv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Conv1d(1, 1, 1)
            self.fc2 = torch.nn.Linear(32, 10)

    with pytest.raises(
        ms.ArchitectureMismatchError, match="fc1 is a Conv1d, not a torch.nn.Linear"
    ):
        ms.load(tmp_path / "q.pt", model=Conv)
    # packed weights of another shape, or of a dtype dynamic quantization never writes
    sd = quantized().state_dict()
    small = torch.quantize_per_tensor(torch.rand(3, 5), 0.1, 0, torch.qint8)
    for value, match in (
        ((small, torch.rand(3)), r"mis-shaped 1: fc1: file \(3, 5\) vs model \(32, 64\)"),
        ((torch.rand(32, 64), torch.rand(32)), "do not fit Net"),
        ((small,), "do not fit Net"),
    ):
        torch.save({**sd, "fc1._packed_params._packed_params": value}, tmp_path / "bad.pt")
        with pytest.raises(ms.ArchitectureMismatchError, match=match):
            ms.load(tmp_path / "bad.pt", model=models.Net)
        (tmp_path / "bad.pt").unlink()


def test_safetensors_and_dtype_refused_with_advice(tmp_path: Path) -> None:
    """safetensors (also the no-suffix default) and dtype= refuse a quantized model, saying what to do."""
    q = quantized()
    for name in ("q.safetensors", "q"):
        with pytest.raises(ms.UnsupportedModelError, match=r"save it as \.pt.*ms\.quantize"):
            ms.save(q, tmp_path / name)
    with pytest.raises(ms.ArgumentError, match="already quantized"):
        ms.save(q, tmp_path / "q.pt", dtype="float16")
    assert list(tmp_path.iterdir()) == []


def test_quantized_lstm_is_refused(tmp_path: Path) -> None:
    """Quantized LSTMs keep TorchScript objects: refused before anything is written."""

    class Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 16)

    q = torch.ao.quantization.quantize_dynamic(Seq(), {torch.nn.LSTM}, dtype=torch.qint8)
    with pytest.raises(ms.UnsupportedModelError, match="quantized LSTM layers keep TorchScript"):
        ms.save(q, tmp_path / "q.pt")
    assert list(tmp_path.iterdir()) == []


class _HostileQ:
    """A quantized-tensor record with hostile parameters (torch.save writes it as is)."""

    def __init__(self, case: str) -> None:
        self.case = case

    def __reduce__(self) -> Any:
        from torch._utils import _rebuild_qtensor

        raw = torch.zeros(16, dtype=torch.int8).untyped_storage()
        storage = torch.storage.TypedStorage(wrap_storage=raw, dtype=torch.qint8, _internal=True)
        size, stride = (4, 4), (4, 1)
        if self.case == "axis":
            params: tuple[Any, ...] = (
                torch.per_channel_affine,
                torch.ones(4, dtype=torch.double),
                torch.zeros(4, dtype=torch.long),
                7,
            )
        elif self.case == "scales":
            params = (
                torch.per_channel_affine,
                torch.ones(1, dtype=torch.double),
                torch.zeros(1, dtype=torch.long),
                0,
            )
        else:
            params, size, stride = (torch.per_tensor_affine, 1.0, 0), (1000, 1000), (1000, 1)
        return (_rebuild_qtensor, (storage, 0, size, stride, params, False, {}))


@pytest.mark.parametrize("case", ["axis", "scales", "size"])
def test_hostile_qtensor_records_are_refused(tmp_path: Path, case: str) -> None:
    """Out-of-range axis, short scales, a size past the storage: a ModelstoreError, no crash."""
    path = tmp_path / "h.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"w": _HostileQ(case)}, path)
    assert ms.scan(path).verdict == "safe"  # only allowed names: the values are the attack
    with pytest.raises(ms.ModelstoreError):
        ms.load(path)

"""``ms.load`` of a ``.pt`` builds plain state dicts and checkpoints from its own scan
(``formats/torch/fastload.py``) and hands everything else to ``torch.load(weights_only=True)``:
either way the result is what ``torch.load`` returns, checked here object by object against
real ``torch.save`` files."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.formats.torch import fastload  # noqa: E402
from modelstore.security.torchfile import read_pickles  # noqa: E402


def _trained() -> tuple[Any, Any]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt


def _state_dict() -> Any:
    return _trained()[0].state_dict()


def _checkpoint() -> Any:
    net, opt = _trained()
    return {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "loss": 0.25,
        "param": torch.nn.Parameter(torch.ones(2)),
        "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
    }


def _views() -> Any:
    base = torch.arange(12.0).reshape(3, 4)
    return {
        "base": base,
        "rows": base[1:],
        "transposed": base.t(),
        "column": base[:, 1],
        "expanded": torch.ones(1).expand(5),
    }


def _tied() -> Any:
    t = torch.randn(3)
    return {"encoder.weight": t, "decoder.weight": t}


def _dtypes() -> Any:
    kinds = [torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8]
    kinds += [torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64]
    return {str(k): torch.ones(3, dtype=k) for k in kinds}


def _odd_shapes() -> Any:
    return {
        "scalar": torch.tensor(3.0),
        "empty": torch.empty(0, 3),
        "grad": torch.ones(2).requires_grad_(),
    }


def _plain_values() -> Any:
    cycle: list[Any] = []
    cycle.append(cycle)
    return {
        "list": [1, 2.5, "x", None, True, (1, 2)],
        "nest": (torch.ones(1), [torch.zeros(2)]),
        "cycle": cycle,
    }


#: name -> (object to save, whether the one-scan builder takes it)
CASES: dict[str, tuple[Callable[[], Any], bool]] = {
    "state_dict": (_state_dict, True),
    "checkpoint": (_checkpoint, True),
    "views": (_views, True),
    "tied": (_tied, True),
    "dtypes": (_dtypes, True),
    "odd_shapes": (_odd_shapes, True),
    "plain_values": (_plain_values, True),
    # left to torch.load: storages without a legacy class, other calls, globals as values
    "uint16": (lambda: {"u": torch.ones(2, dtype=torch.uint16)}, False),
    "float8": (lambda: {"f": torch.ones(2, dtype=torch.float8_e4m3fn)}, False),
    "quantized": (
        lambda: {"q": torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8)},
        False,
    ),
    "dtype_value": (lambda: {"dtype": torch.float32, "device": torch.device("cpu")}, False),
    "size_value": (lambda: {"size": torch.Size([2, 3])}, False),
}


def same(a: Any, b: Any, seen: set[int] | None = None) -> bool:
    """Equal values, types, dtypes, shapes, strides, grad flags and ``_metadata``."""
    seen = set() if seen is None else seen
    if id(a) in seen:
        return True
    seen.add(id(a))
    if isinstance(a, torch.Tensor):
        return (
            type(a) is type(b)
            and (a.dtype, a.shape, a.stride(), a.requires_grad, a._backward_hooks)
            == (b.dtype, b.shape, b.stride(), b.requires_grad, b._backward_hooks)
            and (a.is_quantized or torch.equal(a, b))
        )
    if isinstance(a, dict):
        return (
            type(a) is type(b)
            and list(a) == list(b)
            and getattr(a, "_metadata", None) == getattr(b, "_metadata", None)
            and all(same(a[k], b[k], seen) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b) and len(a) == len(b) and all(same(x, y, seen) for x, y in zip(a, b))
        )
    return type(a) is type(b) and a == b


def _load(path: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        return ms.load(path, **kwargs)


# torch's own deprecation notices on the quantized case (its creation and its torch.load)
@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning")
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_loads_what_torch_load_returns(tmp_path: Path, name: str) -> None:
    make, plain = CASES[name]
    path = tmp_path / f"{name}.pt"
    torch.save(make(), path)
    expected = torch.load(path, weights_only=True, mmap=True)
    built = fastload.build(path, read_pickles(path), None)
    assert (built is not fastload.NOT_PLAIN) is plain
    if plain:
        assert same(expected, built)
    assert same(expected, _load(path))


def test_shared_tensors_and_storages_stay_shared(tmp_path: Path) -> None:
    """Tied weights come back as one tensor, views as views of one storage (as torch.load
    gives them): ``load_state_dict`` and the optimizer rely on both."""
    torch.save({**_tied(), **_views()}, tmp_path / "m.pt")
    sd = _load(tmp_path / "m.pt")
    assert sd["encoder.weight"] is sd["decoder.weight"]
    ptr = sd["base"].untyped_storage().data_ptr()
    assert all(sd[k].untyped_storage().data_ptr() == ptr for k in ("rows", "transposed", "column"))
    sd["base"][0, 0] = 100.0
    assert sd["transposed"][0, 0] == 100.0


def test_loaded_tensors_are_private_copies_on_write(tmp_path: Path) -> None:
    """The file is mapped copy-on-write (as ``torch.load(mmap=True)`` maps it): writing to a
    loaded tensor changes neither the file nor the next load."""
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(4)}, path)
    before = path.read_bytes()
    sd = _load(path)
    sd["w"] += 1
    assert path.read_bytes() == before
    assert _load(path)["w"].tolist() == [0.0] * 4 and sd["w"].tolist() == [1.0] * 4


def test_a_module_loads_from_the_built_state_dict(tmp_path: Path) -> None:
    """``ms.save(module)`` then ``ms.load(model=...)``, with BatchNorm's versioned
    ``_metadata`` carried, predicts as the original did."""
    net, _ = _trained()
    net.eval()
    path = tmp_path / "net.pt"
    ms.save(net, path)
    sd = _load(path)
    assert isinstance(sd, OrderedDict) and sd._metadata["1"]["version"] == 2
    x = torch.randn(5, 3)
    back = _load(path, model=torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)))
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_a_deep_graph_is_left_to_torch_load(tmp_path: Path) -> None:
    """Containers nested deeper than ``MAX_DEPTH`` are not built here (Python recursion);
    torch.load's iterative unpickler reads them."""
    deep: Any = torch.ones(1)
    for _ in range(fastload.MAX_DEPTH + 10):
        deep = [deep]
    path = tmp_path / "deep.pt"
    torch.save({"deep": deep}, path)
    assert fastload.build(path, read_pickles(path), None) is fastload.NOT_PLAIN
    assert same(torch.load(path, weights_only=True), _load(path))


def test_other_devices_and_trust_go_through_torch_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``device=`` other than the CPU, and ``trust=True``, load through ``torch.load`` (its
    ``map_location`` and its full unpickler), with the same result."""
    from modelstore.formats.torch import backend

    path = tmp_path / "m.pt"
    torch.save(_state_dict(), path)
    calls: list[Any] = []
    real = backend.torch_load
    monkeypatch.setattr(backend, "torch_load", lambda p, r: calls.append(r.device) or real(p, r))
    _load(path)
    _load(path, device="cpu")
    assert calls == []
    _load(path, device="meta")
    _load(path, trust=True)
    assert calls == ["meta", None]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4:UserWarning")  # torch's own
def test_a_protocol_4_state_dict_loads_as_its_scan_says(tmp_path: Path) -> None:
    """``torch.save(..., pickle_protocol=4)`` frames its pickle; torch's weights-only unpickler
    refuses the ``FRAME`` opcode, so the old path refused a file ``scan`` called safe. The
    scan reads frames, and the state dict is built from it."""
    path = tmp_path / "p4.pt"
    torch.save(_state_dict(), path, pickle_protocol=4)
    import pickle

    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert ms.scan(path).verdict == "safe"
    assert same(torch.load(path, weights_only=False), _load(path))

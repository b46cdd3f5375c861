"""``.pt2`` (torch.export) archives: written by torch.export.save directly and by ms.export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = torch.nn.Linear(4, 3)
        self.register_buffer("scale", torch.full((3,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.l(x)) * self.scale


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.const = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a lifted tensor constant

    def forward(self, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (self.emb(ids) * self.const).sum(-1) * w


class Drifting(torch.nn.Module):
    """Changes on every call: the exported graph fixes one value, so the check must fail."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


def _x(n: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(n, 4)


def test_foreign_archive_loads_inspects_scans_and_predicts(tmp_path: Path) -> None:
    net = Net().eval()
    path = tmp_path / "net.pt2"
    ep = torch.export.export(net, (_x(),), dynamic_shapes={"x": {0: torch.export.Dim("b")}})
    torch.export.save(ep, str(path))
    loaded = ms.load(path)
    assert isinstance(loaded, torch.export.ExportedProgram)
    x = _x(6)
    want = net(x).detach().numpy()
    np.testing.assert_allclose(loaded.module()(x).detach().numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(ms.predict(path, x.numpy()), want, rtol=1e-6)
    assert ms.scan(path).verdict == "safe"
    info = ms.inspect(path)
    assert info.format == "pt2" and not info.executes_code
    assert {t.name for t in info.tensors} == {"l.weight", "l.bias", "scale"}
    assert info.num_params == 15 + 3
    assert info.metadata["operators"]["torch.ops.aten.linear.default"] == 1
    assert info.metadata["inputs"][0]["shape"][1] == 4


def test_foreign_archive_with_two_inputs_and_constants(tmp_path: Path) -> None:
    m = TwoInputs().eval()
    ids, w = torch.tensor([[1, 2], [3, 4]]), torch.tensor([0.5, 2.0])
    path = tmp_path / "two.pt2"
    torch.export.save(torch.export.export(m, (ids, w)), str(path))
    assert ms.scan(path).verdict == "safe"
    out = ms.predict(path, (ids.numpy(), w.numpy()))
    np.testing.assert_allclose(out, m(ids, w).detach().numpy(), rtol=1e-6)


def test_export_round_trip_records_metadata(tmp_path: Path) -> None:
    net = Net()
    net.train()
    path = tmp_path / "net.pt2"
    info = ms.export(net, path, sample_input=_x(), labels=["a", "b", "c"])
    assert net.training  # put back after the export
    assert info.format == "pt2" and info.labels == ["a", "b", "c"]
    side = json.loads((tmp_path / "net.pt2.modelstore.json").read_text())["versions"][0]
    assert side["export_check"]["batches"] == [5, 1, 7]
    assert side["model_class"].endswith(":Net")
    x = _x(9).numpy()
    net.eval()
    np.testing.assert_allclose(
        ms.predict(path, x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-6
    )
    labels = ms.predict(path, x, output="label")
    assert len(labels) == 9 and set(labels) <= {"a", "b", "c"}


def test_export_static_batch_and_numpy_sample(tmp_path: Path) -> None:
    path = tmp_path / "s.pt2"
    ms.export(Net(), path, sample_input=_x().numpy(), dynamic_batch=False)
    side = json.loads((tmp_path / "s.pt2.modelstore.json").read_text())["versions"][0]
    assert side["export_check"]["batches"] == [5]
    assert ms.inspect(path).metadata["inputs"][0]["shape"] == [5, 4]


def test_export_mismatch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.pt2"
    with pytest.raises(ms.ExportMismatchError):
        ms.export(Drifting(), path, sample_input=_x())
    assert not path.exists() and not (tmp_path / "d.pt2.modelstore.json").exists()
    ms.export(Drifting(), path, sample_input=_x(), check=False)
    assert path.exists()


def test_export_refuses_what_it_cannot_export(tmp_path: Path) -> None:
    with pytest.raises(ms.UnsupportedModelError):
        ms.export(object(), tmp_path / "o.pt2", sample_input=_x())
    with pytest.raises(ms.ArgumentError):
        ms.export(Net(), tmp_path / "n.pt2", sample_input=None)
    with pytest.raises(ms.UnsupportedModelError) as e:
        ms.save(Net(), tmp_path / "n.pt2")
    assert "ms.export" in str(e.value)


def test_save_of_an_exported_program(tmp_path: Path) -> None:
    ep = torch.export.export(Net().eval(), (_x(),))
    path = tmp_path / "ep.pt2"
    ms.save(ep, path, labels=["a", "b", "c"])
    assert torch.export.load(str(path)).module()(_x()).shape == (5, 3)
    assert ms.inspect(path).labels == ["a", "b", "c"]


def test_damaged_archive_is_an_integrity_error(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(Net().eval(), (_x(),)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ms.ModelstoreError):
        ms.load(path)
    assert ms.scan(path).verdict != "safe"


@pytest.mark.slow
def test_cli_inspect_scan_predict(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    ms.export(Net(), path, sample_input=_x(), labels=["a", "b", "c"])
    x = tmp_path / "x.npy"
    np.save(x, _x(4).numpy())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for args in (
        ("inspect", str(path)),
        ("scan", str(path)),
        ("predict", str(path), "--input", str(x), "--output", "label"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "modelstore", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, (args, out.stderr)
    assert (
        "pt2"
        in subprocess.run(
            [sys.executable, "-m", "modelstore", "inspect", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        ).stdout
    )


def test_metadata_travels_inside_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    ms.export(Net(), path, sample_input=_x(), labels=["a", "b", "c"], metadata={"run": 7})
    (tmp_path / "net.pt2.modelstore.json").unlink()  # sent without its sidecar
    info = ms.inspect(path)
    assert info.labels == ["a", "b", "c"] and info.metadata["run"] == 7
    assert ms.predict(path, _x(2).numpy(), output="label")[0] in {"a", "b", "c"}
    # torch reads the record as an extra file and ignores it otherwise
    extra: dict[str, str] = {"modelstore.json": ""}
    torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra["modelstore.json"])["labels"] == ["a", "b", "c"]


def test_sidecar_stale_after_another_tool_rewrote_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    ms.export(Net(), path, sample_input=_x(), labels=["a", "b", "c"])
    torch.export.save(torch.export.export(Net().eval(), (_x(),)), str(path))
    info = ms.inspect(path)
    assert "stale" in str(info.metadata.get("sidecar", ""))


class _Cond(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda x: x.sin(), lambda x: x.cos(), (x,))


class _ConvBN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(self.bn(self.c(x)), 0.2, self.training).flatten(1)


class _Reshape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return x.reshape(n * 2, -1)[: n + 1] * 2


class _Split(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.chunk(2, dim=1)
        return a + b, a * b


@pytest.mark.parametrize(
    ("module", "x", "dynamic"),
    [
        # a higher-order operator with subgraphs (tracing torch.cond takes seconds)
        pytest.param(_Cond(), torch.randn(4, 3), False, marks=pytest.mark.slow),
        (_ConvBN(), torch.randn(2, 3, 8, 8), True),
        (_Reshape(), torch.randn(6, 4), True),  # symbolic arithmetic: _operator.*, sym_size
        (_Split(), torch.randn(3, 4), False),  # two outputs
    ],
)
def test_programs_torch_writes_pass_the_check(
    module: torch.nn.Module, x: torch.Tensor, dynamic: bool, tmp_path: Path
) -> None:
    shapes = {"x": {0: torch.export.Dim("b", min=2, max=64)}} if dynamic else None
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(module.eval(), (x,), dynamic_shapes=shapes), str(path))
    assert ms.scan(path).verdict == "safe", ms.scan(path)
    got, want = ms.load(path).module()(x), module(x)
    for g, w in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)
    ):
        torch.testing.assert_close(g, w)

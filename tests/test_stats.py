"""Weight arrays and statistics read straight from safe files (inspect --stats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.api.stats import summarize  # noqa: E402
from modelstore.api.weights import weights  # noqa: E402


def test_safetensors_arrays_keep_names_and_values(tmp_path: Path) -> None:
    """Every dtype comes back under its tensor's name; bfloat16 is widened to float32."""
    sd = {
        "a": torch.randn(3).bfloat16(),
        "b": torch.arange(4),
        "c": torch.tensor([True]),
        "d": torch.randn(2).half(),
    }
    path = tmp_path / "w.safetensors"
    ms.save(sd, path)
    arrays = weights(path)
    assert set(arrays) == set(sd)
    np.testing.assert_array_equal(arrays["a"], sd["a"].float().numpy())
    np.testing.assert_array_equal(arrays["b"], np.arange(4))
    rows = {r.name: r.to_dict() for r in summarize(arrays)}
    assert rows["b"]["max"] == 3 and rows["b"]["min"] == 0


def test_plain_state_dict_needs_no_trust(tmp_path: Path) -> None:
    """ms.stats reads a torch.save state dict through the weights-only gate, without trust."""
    sd = {
        "w": torch.tensor([[0.0, 1.0], [2.0, 3.0]]),
        "b": torch.zeros(3, dtype=torch.float16),
        "n": torch.tensor(7),
    }
    path = tmp_path / "weights.pth"
    torch.save(sd, path)
    with pytest.warns(ms.PickleWarning):
        rows = {r.name: r for r in ms.stats(path)}
    w = rows["w"]
    assert (w.shape, w.dtype, w.mean, w.min, w.max, w.zeros) == (
        (2, 2),
        "float32",
        1.5,
        0.0,
        3.0,
        0.25,
    )
    assert w.std == pytest.approx(float(np.std([0, 1, 2, 3])))
    assert rows["b"].dtype == "float16" and rows["b"].zeros == 1.0
    assert rows["n"].shape == () and rows["n"].dtype == "int64"


def test_checkpoint_and_whole_module(tmp_path: Path) -> None:
    """A training checkpoint needs no trust either; a pickled whole module is refused, naming trust."""
    from tests import models

    net = models.trained_net(hidden=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.zeros(2, 64)).sum().backward()
    opt.step()
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, ckpt)
    with pytest.warns(ms.PickleWarning):
        names = [r.name for r in ms.stats(ckpt)]
    assert "model.fc1.weight" in names and "optimizer.state.0.momentum_buffer" in names
    whole = tmp_path / "whole.pt"
    torch.save(net, whole)
    with pytest.raises(ms.UnsafeModelError, match="trust=True only if you trust its author"):
        ms.stats(whole)


def test_nan_inf_and_objects(tmp_path: Path) -> None:
    """NaN and Inf are counted apart and kept out of mean/min/max; modules and dicts work directly."""
    rows = {
        r.name: r for r in ms.stats({"x": torch.tensor([1.0, float("nan"), float("inf"), 3.0])})
    }
    x = rows["x"]
    assert (x.nans, x.infs, x.mean, x.min, x.max) == (1, 1, 2.0, 1.0, 3.0)
    assert x.to_dict()["shape"] == [4]
    allnan = ms.stats({"y": torch.full((2,), float("nan"))})[0]
    assert allnan.to_dict()["mean"] is None and allnan.nans == 2
    from tests import models

    net = models.BNNet()
    assert [r.name for r in ms.stats(net)] == list(net.state_dict())
    with pytest.raises(ms.UnsupportedModelError, match="no weight tensors"):
        ms.stats(object())


def test_plot_weights_writes_a_png(tmp_path: Path) -> None:
    """plot_weights draws histograms to a PNG; write errors and weightless models are clear errors."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "weights.pth"
    torch.save({"a": torch.randn(100), "b": torch.randn(10, 10)}, path)
    with pytest.warns(ms.PickleWarning):
        png = ms.plot_weights(path, tmp_path / "w.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ms.StorageError, match="cannot write the picture"):
        ms.plot_weights({"a": torch.randn(5)}, tmp_path / "missing" / "w.png")
    with pytest.raises(ms.ArgumentError, match="no floating-point weights"):
        ms.plot_weights({"a": torch.arange(5)}, tmp_path / "ints.png")


@pytest.mark.slow
def test_cli_stats_of_a_state_dict_needs_no_trust(tmp_path: Path) -> None:
    """`modelstore inspect weights.pth --stats --plot` works without --trust."""
    import json
    import os
    import subprocess
    import sys

    path = tmp_path / "weights.pth"
    torch.save({"a": torch.randn(100)}, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelstore",
            "inspect",
            str(path),
            "--stats",
            "--json",
            "--plot",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["stats"][0]
    assert row["name"] == "a" and row["dtype"] == "float32" and row["nans"] == 0
    assert "trust" not in proc.stderr and (tmp_path / "p.png").is_file()


def test_cli_stats_table_shows_dtype_zeros_and_nan(tmp_path: Path) -> None:
    """The human --stats table has the stored dtype, the zero fraction and NaN/Inf counts."""
    import io

    from modelstore.cli.main import main

    path = tmp_path / "w.safetensors"
    ms.save({"h": torch.tensor([0.0, float("nan"), 2.0, 2.0]).bfloat16()}, path)
    out = io.StringIO()
    assert main(["inspect", str(path), "--stats"], out=out) == 0
    last = out.getvalue().strip().splitlines()[-1].split()
    assert last[:3] == ["h", "4", "bfloat16"] and last[-2:] == ["25.0%", "1/0"]

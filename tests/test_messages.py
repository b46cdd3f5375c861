"""Messages that keep the important part (issue 15, item 7)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


class Conv(torch.nn.Module):
    """An image model: (N, 1, 8, 8) in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.fc = torch.nn.Linear(2 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def test_unbatched_image_is_told_to_add_a_batch_dimension(tmp_path: Path) -> None:
    """One (1, 8, 8) image into a model recorded with (N, 1, 8, 8): 'add a batch dimension'."""
    path = tmp_path / "conv.safetensors"
    ms.save(Conv(), path, sample_input=torch.randn(2, 1, 8, 8))
    model = ms.load(path, model=Conv)
    image = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    with pytest.raises(ms.ArgumentError) as e:
        ms.predict(model, image)
    text = str(e.value)
    assert "batch dimension" in text and "(1, 1, 8, 8)" in text and "(N, 1, 8, 8)" in text
    assert ms.predict(model, image[None]).shape == (1, 3)


@pytest.mark.slow
def test_onnx_shape_error_keeps_the_detail(tmp_path: Path) -> None:
    """onnxruntime's 'index: 1 Got: 2 Expected: 64' survives; an unbatched row is explained."""
    pytest.importorskip("onnxruntime")
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notes
        ms.export_onnx(models.trained_net(), path, sample_input=torch.randn(4, 64))
    model = ms.load(path)
    with pytest.raises(ms.ArgumentError, match=r"index: 1 Got: 2 Expected: 64") as e:
        ms.predict(model, np.zeros((3, 2), dtype=np.float32))
    assert "(N, 64)" in str(e.value)
    with pytest.raises(ms.ArgumentError, match="batch dimension") as e:
        ms.predict(model, np.zeros(64, dtype=np.float32))
    assert "Please fix" not in str(e.value)


@pytest.mark.slow  # seconds; the full suite runs it
def test_moved_class_says_it_could_not_be_imported(tmp_path: Path) -> None:
    """A pickled whole module whose class is gone: 'could not be imported', not 'damaged'."""
    (tmp_path / "gone_pkg.py").write_text(
        "import torch\nclass Tiny(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.l = torch.nn.Linear(2, 2)\n"
    )
    path = tmp_path / "whole.pt"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import torch, gone_pkg; torch.save(gone_pkg.Tiny(), {str(path)!r})",
        ],
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    (tmp_path / "gone_pkg.py").unlink()  # the code moved away
    for trust in (True, ["gone_pkg.Tiny", "torch.nn.modules.linear.Linear"]):
        with pytest.raises(ms.MissingDependencyError) as e:
            ms.load(path, trust=trust)
        text = str(e.value)
        assert "could not be imported" in text and "gone_pkg" in text and "damaged" not in text
        assert str(path) in text and "safetensors" in text


def test_saving_an_optimizer_says_what_to_save(tmp_path: Path) -> None:
    """ms.save(optimizer) names the checkpoint to write instead, whatever the name."""
    net = models.Net()
    opt = torch.optim.Adam(net.parameters())
    for name in ("opt.pt", "opt.safetensors", "opt"):
        with pytest.raises(ms.UnsupportedModelError, match=r"optimizer.state_dict\(\)"):
            ms.save(opt, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_inspect_of_a_module_is_short() -> None:
    """ms.inspect(module) names the type, not the module's whole repr."""
    net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(20)])
    with pytest.raises(ms.ArgumentError) as e:
        ms.inspect(net)
    text = str(e.value)
    assert "torch.nn.modules.container.Sequential" in text and "Linear(" not in text
    assert "ms.summary(model)" in text and len(text) < 300


@pytest.mark.slow
def test_keras_weights_name_says_a_full_model_was_written(tmp_path: Path) -> None:
    """ms.save(model, "model_weights.h5") writes the full model and says so."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match=r"full model .* model\.weights\.h5"):
        ms.save(model, tmp_path / "model_weights.h5")
    assert len(ms.load(tmp_path / "model_weights.h5").layers) == 1

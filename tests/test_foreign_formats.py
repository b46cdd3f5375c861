"""Formats modelstore does not read get a clear answer: TorchScript archives, TensorFlow
SavedModel folders, and legacy .h5 files Keras itself cannot rebuild."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from modelstore.testing import run_python


def _run_file(code: str, where: Path) -> None:
    """Run ``code`` as a script file in a child (torch.jit.script and tf.function read source)."""
    script = where / "make.py"
    script.write_text(textwrap.dedent(code))
    proc = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def torchscript(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """TorchScript archives written by torch.jit itself: scripted (False) and traced (True)."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torchscript")
    _run_file(
        f"""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, 2)
            def forward(self, x):
                return self.fc(x).relu()
        torch.jit.script(Net()).save({str(folder / "scripted.pt")!r})
        torch.jit.trace(Net(), torch.ones(1, 3)).save({str(folder / "traced.pth")!r})
    """,
        folder,
    )
    return {False: folder / "scripted.pt", True: folder / "traced.pth"}


@pytest.mark.parametrize("traced", [False, True])
def test_torchscript_is_named(torchscript: dict[bool, Path], traced: bool) -> None:
    """load/predict/scan/inspect say it is TorchScript and how to open it, not a list of names."""
    path = torchscript[traced]
    for call in (lambda: ms.load(path), lambda: ms.predict(path, np.ones((1, 3), np.float32))):
        with pytest.raises(ms.UnsafeModelError, match="this is TorchScript") as info:
            call()
        assert "torch.jit.load if you trust it" in str(info.value) and "trust=[" not in str(
            info.value
        )
    with pytest.raises(ms.UnsafeModelError, match="TorchScript"):
        ms.load(path, trust=["<foreign format>", "__torch__.Net"])  # a list never opens it
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "TorchScript" in report.findings[0].reason
    with pytest.raises(ms.FormatError, match="this is TorchScript"):
        ms.inspect(path)


def test_torchscript_with_trust_true_is_torchs_own_load(torchscript: dict[bool, Path]) -> None:
    """trust=True hands the file to torch.load, which opens TorchScript itself."""
    torch = pytest.importorskip("torch")
    path = torchscript[False]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = ms.load(path, trust=True)
    assert isinstance(module, torch.jit.ScriptModule)


@pytest.mark.slow
def test_tensorflow_savedmodel_folder(tmp_path: Path) -> None:
    """A SavedModel folder (and its saved_model.pb) gets a message naming the format and a way on."""
    folder = tmp_path / "sm"
    _run_file(
        f"""
        import tensorflow as tf
        class M(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, 3])])
            def __call__(self, x):
                return x * 2.0
        tf.saved_model.save(M(), {str(folder)!r})
    """,
        tmp_path,
    )
    for target in (folder, folder / "saved_model.pb"):
        for call in (ms.load, ms.inspect):
            with pytest.raises(ms.FormatError, match="TensorFlow SavedModel folder") as info:
                call(target)
            assert "tf2onnx" in str(info.value)
        assert "TensorFlow SavedModel" in ms.scan(target).findings[0].reason


def _legacy_h5(tmp_path: Path, change: Any) -> Path:
    """A legacy .h5 written by Keras, its model_config changed the way an older Keras wrote it."""
    keras = pytest.importorskip("keras")
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "legacy.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        change(config["config"]["layers"][-1]["config"])
        f.attrs["model_config"] = json.dumps(config)
    return path


def test_legacy_h5_keras_cannot_rebuild(tmp_path: Path) -> None:
    """An argument this Keras does not know: 'Keras could not rebuild this model' with the cause."""
    path = _legacy_h5(tmp_path, lambda c: c.update(foo_bar=1))
    with pytest.raises(ms.FormatError, match="Keras could not rebuild this model") as info:
        ms.load(path)
    text = str(info.value)
    assert (
        "Dense" in text
        and "foo_bar" in text
        and "damaged" not in text
        and "re-save it as .keras" in text
    )


def test_legacy_h5_weights_do_not_fit(tmp_path: Path) -> None:
    """Weights that do not fit the config are the same clear answer, not 'damaged'."""
    path = _legacy_h5(tmp_path, lambda c: c.update(units=7))
    with pytest.raises(ms.FormatError, match="Keras could not rebuild this model.*Shape mismatch"):
        ms.load(path)
    shutil.rmtree(tmp_path, ignore_errors=True)

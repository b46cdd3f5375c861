"""Progress bars: tqdm on stderr, only when asked or on a terminal; off by progress=False or
MODELSTORE_PROGRESS=0; tqdm never imported by ``import modelstore``."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


def test_progress_true_draws_the_steps(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "w.safetensors"
    ms.save(models.trained_net(), path, progress=True)
    assert "saving w.safetensors" in capsys.readouterr().err
    ms.load(path, model=models.Net, progress=True)
    err = capsys.readouterr().err
    assert "loading w.safetensors" in err and err.index("checksum") < err.index("scan") < err.index(
        "load]"
    )


def test_off_by_default_off_a_terminal_and_by_the_switches(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.safetensors"
    ms.save(models.trained_net(), path)  # stderr is captured, not a terminal
    ms.load(path)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MODELSTORE_PROGRESS", "1")
    ms.load(path)
    assert "loading w.safetensors" in capsys.readouterr().err
    ms.load(path, progress=False)  # the argument wins over the environment
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MODELSTORE_PROGRESS", "0")
    ms.load(path)
    assert capsys.readouterr().err == ""


def test_convert_and_export_take_progress(tmp_path: Path, capsys: Any) -> None:
    src = tmp_path / "w.pt"
    ms.save(models.trained_net().state_dict(), src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        ms.convert(src, tmp_path / "w.safetensors", progress=True)
    err = capsys.readouterr().err
    assert "converting w.pt" in err and err.count("loading") == 0  # one bar, not one per step


def test_bad_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ms.ArgumentError, match="progress"):
        ms.save(models.trained_net(), tmp_path / "w.safetensors", progress="yes")
    assert not (tmp_path / "w.safetensors").exists()


def test_import_modelstore_does_not_import_tqdm() -> None:
    code = "import sys, modelstore; print('tqdm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr

"""The PickleWarning: once per file per process, at the caller's line, advice that fits."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.cli import main  # noqa: E402
from tests import models  # noqa: E402


def _pickle_warnings(call):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, ms.PickleWarning)]


def test_once_per_file_at_the_callers_line(tmp_path: Path) -> None:
    """A second load of the same file is quiet; the warning names this test file and line."""
    path = tmp_path / "w.pt"
    ms.save(models.trained_net().state_dict(), path)
    first = _pickle_warnings(lambda: ms.load(path))
    assert len(first) == 1 and first[0].filename == __file__
    text = str(first[0].message)
    assert "w.pt" in text and "safetensors" in text and "filterwarnings" in text
    assert _pickle_warnings(lambda: ms.load(path)) == []
    assert _pickle_warnings(lambda: ms.load(path, model=models.Net)) == []
    # a changed file is a new file: it warns again
    ms.save(models.trained_net(hidden=8).state_dict(), path, overwrite=True)
    os.utime(path, ns=(1, 1))
    assert len(_pickle_warnings(lambda: ms.load(path))) == 1
    # trust=True is a different statement (code could run): said once more
    again = _pickle_warnings(lambda: ms.load(path, trust=True))
    assert len(again) == 1 and "any code in it ran" in str(again[0].message)


def test_advice_fits_the_format(tmp_path: Path) -> None:
    """A checkpoint is inherently a pickle; weights go to safetensors; sklearn to ONNX/skops."""
    ckpt = tmp_path / "ckpt.pt"
    net = models.trained_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ms.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, ckpt)
    (w,) = _pickle_warnings(lambda: ms.load(ckpt))
    assert "checkpoint" in str(w.message) and "inherently a pickle" in str(w.message)
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=200).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path = tmp_path / "clf.joblib"
    ms.save(clf, path)
    (w,) = _pickle_warnings(lambda: ms.load(path))
    assert "ONNX" in str(w.message) and ".skops" in str(w.message)


def test_the_standard_filter_silences_it(tmp_path: Path) -> None:
    """The documented way: warnings.filterwarnings("ignore", category=ms.PickleWarning)."""
    path = tmp_path / "mine.pt"
    ms.save(models.trained_net().state_dict(), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ms.PickleWarning)
        ms.load(path)
    assert caught == []


def test_convert_command_says_it_in_its_output(tmp_path: Path) -> None:
    """`modelstore convert x.pt x.safetensors` prints a note; no warning on stderr."""
    src, dst = tmp_path / "w.pt", tmp_path / "w.safetensors"
    ms.save(models.trained_net().state_dict(), src)
    out = io.StringIO()
    found = _pickle_warnings(lambda: main(["convert", str(src), str(dst)], out=out))
    assert found == [] and "is a pickle" in out.getvalue() and dst.is_file()

"""The modelstore command, run as a real subprocess on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "modelstore", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    net = models.trained_net(hidden=8)
    out = {"st": root / "m.safetensors", "pt": root / "m.pth", "whole": root / "whole.pt"}
    ms.save(net, out["st"], config={"hidden": 8}, labels=list("0123456789"))
    torch.save(net.state_dict(), out["pt"])
    torch.save(net, out["whole"])
    return out


def test_inspect_table(files: dict[str, Path]) -> None:
    """inspect prints format, sha256, safety and a per-tensor table with totals."""
    proc = run("inspect", str(files["st"]))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "safetensors (torch)" in text and "executes code  no" in text
    assert "fc1.weight" in text and "8x64" in text and "total" in text and "610" in text


def test_inspect_json_for_each_format(files: dict[str, Path]) -> None:
    """--json gives ModelInfo as JSON for safetensors and torch files."""
    for key, fmt in (("st", "safetensors"), ("pt", "torch")):
        proc = run("inspect", str(files[key]), "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["format"] == fmt and data["num_params"] == 610
    whole = json.loads(run("inspect", str(files["whole"]), "--json").stdout)
    assert whole["executes_code"] is True and "tests.models.Net" in whole["globals"]


def test_scan_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    """scan exits 0 for safe files, 1 for unsafe ones, 2 for unknown or bad input."""
    assert run("scan", str(files["st"]), str(files["pt"])).returncode == 0
    proc = run("scan", str(files["whole"]), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["verdict"] == "unsafe"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    assert run("scan", str(junk)).returncode == 2


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    """A missing file is one clear line on stderr and exit code 2."""
    proc = run("inspect", str(tmp_path / "absent.safetensors"))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_has_examples() -> None:
    """Each subcommand's --help shows examples."""
    for sub in ("inspect", "scan"):
        proc = run(sub, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout
    assert run().returncode == 2


def test_scan_recurses_into_folders_with_progress(tmp_path: Path) -> None:
    """scan DIR finds model files recursively (not sidecars or notes) and draws progress."""
    import pickle

    from tests.hostile import Reduce

    (tmp_path / "a" / "b").mkdir(parents=True)
    ms.save(models.trained_net(), tmp_path / "a" / "m.pt")
    ms.save(models.trained_net(), tmp_path / "a" / "b" / "m.safetensors")
    (tmp_path / "notes.txt").write_text("not a model")
    proc = run("scan", str(tmp_path), "--json", "--progress")
    assert proc.returncode == 0, proc.stderr
    paths = sorted(Path(r["path"]).name for r in json.loads(proc.stdout))
    assert paths == ["m.pt", "m.safetensors"]
    assert "scanning [" in proc.stderr and "2/2" in proc.stderr
    (tmp_path / "a" / "evil.pkl").write_bytes(pickle.dumps(Reduce(os.getcwd)))
    proc = run("scan", str(tmp_path))
    assert proc.returncode == 1 and "evil.pkl: unsafe" in proc.stdout and "posix.getcwd" in proc.stdout
    assert run("scan", str(tmp_path / "a" / "b" / "nothing")).returncode == 2

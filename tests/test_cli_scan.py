"""`modelstore scan` as a CI gate: text, JSON inventory and SARIF 2.1.0, with exit codes 0/1/2."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests import models  # noqa: E402
from tests.hostile import Reduce  # noqa: E402


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "modelstore", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a safe safetensors file, a plain state dict, a hostile pickle and junk."""
    root = tmp_path_factory.mktemp("scan")
    (root / "models" / "sub").mkdir(parents=True)
    ms.save(models.trained_net(hidden=4), root / "models" / "net.safetensors")
    torch.save(models.trained_net(hidden=4).state_dict(), root / "models" / "sub" / "weights.pth")
    (root / "models" / "evil.pkl").write_bytes(pickle.dumps(Reduce(os.getcwd)))
    (root / "models" / "junk.onnx").write_bytes(b"\x00" * 64)
    (root / "models" / "README.txt").write_text("not a model")
    return root


def test_exit_codes(tree: Path) -> None:
    """0 when every file is safe, 1 when one is unsafe, 2 when one is unknown and none unsafe."""
    m = tree / "models"
    assert run("scan", str(m / "net.safetensors"), str(m / "sub")).returncode == 0
    assert run("scan", str(m / "net.safetensors"), str(m / "junk.onnx")).returncode == 2
    assert run("scan", str(m)).returncode == 1
    assert run("scan", str(m / "absent.pt")).returncode == 2


def test_json_inventory(tree: Path) -> None:
    """--format json lists every model file under the folder with format, sha256, size and verdict."""
    proc = run("scan", str(tree / "models"), "--format", "json")
    records = {Path(r["path"]).name: r for r in json.loads(proc.stdout)}
    assert set(records) == {"net.safetensors", "weights.pth", "evil.pkl", "junk.onnx"}
    net = records["net.safetensors"]
    data = (tree / "models" / "net.safetensors").read_bytes()
    assert net["sha256"] == hashlib.sha256(data).hexdigest() and net["size_bytes"] == len(data)
    assert (net["format"], net["verdict"]) == ("safetensors", "safe")
    assert (
        records["evil.pkl"]["verdict"] == "unsafe" and records["junk.onnx"]["verdict"] == "unknown"
    )
    assert run("scan", str(tree / "models"), "--json").stdout == proc.stdout  # the old spelling


def test_sarif(tree: Path) -> None:
    """--format sarif writes SARIF 2.1.0: rules, one artifact per file with its hash, results by level."""
    proc = run("scan", "models", "--format", "sarif", cwd=tree)
    assert proc.returncode == 1, proc.stderr
    log = json.loads(proc.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run_ = log["runs"][0]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "modelstore" and [r["id"] for r in driver["rules"]] == [
        "MS001",
        "MS002",
        "MS003",
    ]
    uris = [a["location"]["uri"] for a in run_["artifacts"]]
    assert uris == [
        "models/evil.pkl",
        "models/junk.onnx",
        "models/net.safetensors",
        "models/sub/weights.pth",
    ]
    assert all(
        a["location"]["uriBaseId"] == "%SRCROOT%" and len(a["hashes"]["sha-256"]) == 64
        for a in run_["artifacts"]
    )
    by_file = {}
    for res in run_["results"]:
        loc = res["locations"][0]["physicalLocation"]["artifactLocation"]
        assert uris[loc["index"]] == loc["uri"] and res["message"]["text"]
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        by_file.setdefault(loc["uri"], []).append((res["ruleId"], res["level"]))
    assert by_file["models/evil.pkl"] == [("MS001", "error")]
    assert by_file["models/junk.onnx"] == [("MS003", "warning")]
    assert "models/net.safetensors" not in by_file and "models/sub/weights.pth" not in by_file
    again = json.loads(run("scan", "models", "--format", "sarif", cwd=tree).stdout)
    assert [r["partialFingerprints"] for r in again["runs"][0]["results"]] == [
        r["partialFingerprints"] for r in run_["results"]
    ]


def test_output_file_and_text_summary(tree: Path, tmp_path: Path) -> None:
    """--output writes the report to a file and still prints the text summary with the inventory."""
    out = tmp_path / "scan.sarif"
    proc = run("scan", str(tree / "models"), "--format", "sarif", "--output", str(out))
    assert proc.returncode == 1 and json.loads(out.read_text())["version"] == "2.1.0"
    assert (
        "4 files: 2 safe, 1 unsafe, 1 unknown" in proc.stdout and "evil.pkl: unsafe" in proc.stdout
    )
    bad = run(
        "scan", str(tree / "models"), "--output", str(tmp_path / "no" / "such" / "dir" / "x.json")
    )
    assert bad.returncode == 2 and "cannot write the report" in bad.stderr
    clash = run("scan", str(tree / "models"), "--json", "--format", "sarif")
    assert clash.returncode == 2 and "disagree" in clash.stderr


def test_empty_folder(tmp_path: Path) -> None:
    """A folder with no model files is an error (exit 2) that says what scan looks for."""
    (tmp_path / "notes.txt").write_text("hi")
    proc = run("scan", str(tmp_path))
    assert (
        proc.returncode == 2
        and "no model files found" in proc.stderr
        and ".safetensors" in proc.stderr
    )

"""Mutated files of every format: load, inspect and scan succeed or raise a ModelstoreError.

Each case runs in a worker subprocess (address space capped at 4 GiB) with a time limit, so
a hang or a crash is seen as such instead of taking the test run down with it.
"""

from __future__ import annotations

import select
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelstore as ms
from tests.reliability.conftest import count, record, spawn

CASE_SECONDS = 20


pytestmark = pytest.mark.slow  # subprocesses killed and fuzzed: the full run, not the quick one


class Worker:
    """The fuzz worker process; restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.hangs = 0
        self.crashes = 0

    def ask(self, path: Path) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = spawn("fuzz", stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_SECONDS)
        if not ready:
            self.hangs += 1
            self.close()
            return "HANG"
        line = self.proc.stdout.readline().strip()
        if not line:
            self.crashes += 1
            self.close()
            return "CRASH"
        return line

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _seed_files(tmp_path_factory.mktemp("seeds"))


def _seed_files(root: Path) -> dict[str, Path]:
    """One valid file per format (and a foreign torch.save file without a sidecar)."""
    files: dict[str, Path] = {}
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    files["safetensors"] = root / "m.safetensors"
    ms.save(net, files["safetensors"], labels=["a", "b"])
    files["torch"] = root / "m.pt"
    ms.save(net, files["torch"])
    files["torch_foreign"] = root / "f.pth"
    torch.save(net.state_dict(), files["torch_foreign"])
    try:
        from sklearn.linear_model import LogisticRegression

        files["joblib"] = root / "m.joblib"
        ms.save(
            LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]), files["joblib"], compress=3
        )
    except ImportError:
        pass
    try:
        import keras

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        files["keras"] = root / "m.keras"
        ms.save(model, files["keras"])
        files["h5"] = root / "m.h5"
        ms.save(model, files["h5"])
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401

        files["onnx"] = root / "m.onnx"
        import numpy as np

        ms.export_onnx(net, files["onnx"], sample_input=np.zeros((2, 8), np.float32), check=False)
    except ImportError:
        pass
    return files


@st.composite
def mutations(draw: Any, size: int) -> tuple[str, int, bytes]:
    kind = draw(
        st.sampled_from(["truncate", "flip", "overwrite", "insert", "header_len", "zero_run"])
    )
    pos = draw(st.integers(0, max(0, size - 1)))
    blob = draw(st.binary(min_size=1, max_size=16))
    return kind, pos, blob


def mutate(data: bytes, kind: str, pos: int, blob: bytes) -> bytes:
    if kind == "truncate":
        return data[:pos]
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << (blob[0] % 8))]) + data[pos + 1 :]
    if kind == "overwrite":
        return data[:pos] + blob + data[pos + len(blob) :]
    if kind == "insert":
        return data[:pos] + blob + data[pos:]
    if kind == "header_len":  # safetensors' length field, zip sizes: an absurd declared size
        return struct.pack("<Q", int.from_bytes(blob[:8].ljust(8, b"\xff"), "little")) + data[8:]
    return data[:pos] + b"\x00" * len(blob) * 64 + data[pos + len(blob) * 64 :]


FORMATS = ["safetensors", "torch", "torch_foreign", "joblib", "keras", "h5", "onnx"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_never_escape(
    tmp_path_factory: pytest.TempPathFactory, seeds: dict[str, Path], fmt: str
) -> None:
    """No foreign exception type, no hang, no crash, no unbounded allocation."""
    root = tmp_path_factory.mktemp(f"fuzz_{fmt}")
    if fmt not in seeds:
        pytest.skip(f"{fmt} framework not installed")
    seed = seeds[fmt]
    data = seed.read_bytes()
    side = Path(str(seed) + ".modelstore.json")
    case_dir = root / "case"
    case_dir.mkdir()
    worker = Worker()
    outcomes: dict[str, int] = {}
    examples = count(40, 400)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutations(len(data)))
    def case(m: tuple[str, int, bytes]) -> None:
        target = case_dir / seed.name
        target.write_bytes(mutate(data, *m))
        if side.exists():
            shutil.copy(side, Path(str(target) + ".modelstore.json"))
        outcome = worker.ask(target)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome != "ok":  # keep the case for whoever debugs it
            keep = root / "failures"
            keep.mkdir(exist_ok=True)
            shutil.copy(
                target, keep / f"{sum(outcomes.values())}-{outcome.split()[0]}{seed.suffix}"
            )

    started = time.perf_counter()
    try:
        case()
    finally:
        worker.close()
    foreign = {k: v for k, v in outcomes.items() if k != "ok"}
    record(
        "fuzz",
        {
            "format": fmt,
            "cases": sum(outcomes.values()),
            "foreign": sum(v for k, v in foreign.items() if k not in ("HANG", "CRASH")),
            "hangs": worker.hangs,
            "crashes": worker.crashes,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    assert not foreign, f"{foreign}; cases kept in {root / 'failures'}"

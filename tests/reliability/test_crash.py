"""Saves killed with SIGKILL at random moments never leave a broken or mismatched file."""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from tests.reliability.conftest import Forker, count, record, spawn
from tests.reliability.workers import FAMILIES, make, version_of

pytestmark = pytest.mark.slow  # subprocesses killed and fuzzed: the full run, not the quick one


def load_quietly(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        return ms.load(path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_killed_saves_leave_a_whole_file(tmp_path: Path, family: str, need: Any) -> None:
    """After every kill the target is the last completed version or the one being written,
    its metadata matches its payload, it verifies, and leftover temp files are cleaned."""
    need(family)
    trials = count(6 if family == "keras" else 20, 100)
    path = tmp_path / f"model{FAMILIES[family]}"
    ms.save(make(family, 0), path, metadata={"i": 0})
    rng = random.Random(0)
    last, temps_seen, mismatches = 0, 0, 0
    forker = Forker(family, tmp_path / "forker.log")  # writers forked once the imports are done
    try:
        for _ in range(trials):
            proc = forker.writer(family, str(path), str(last + 1))
            first = proc.readline()  # one save completed: the writer is up and saving
            assert first.strip(), forker.stderr()
            time.sleep(rng.uniform(0, 0.04))
            proc.kill()
            rest = proc.communicate()
            done = [int(v) for v in (first + rest).split()]
            completed = max(done)
            obj = load_quietly(path)  # verifies the checksum
            v = version_of(family, obj)
            meta_i = ms.inspect(path).metadata["i"]
            mismatches += v != meta_i
            assert v == meta_i, f"payload says {v}, metadata says {meta_i}"
            assert v in (completed, completed + 1), f"found version {v}, last completed {completed}"
            temps_seen += sum(1 for p in tmp_path.iterdir() if "modelstore-tmp" in p.name)
            last = int(max(v, completed))
    finally:
        forker.close()
    ms.save(make(family, last + 1), path, metadata={"i": last + 1})
    assert not [p.name for p in tmp_path.iterdir() if "modelstore-tmp" in p.name]
    record(
        "crash",
        {
            "family": family,
            "trials": trials,
            "kills": trials,
            "corrupt": 0,
            "mismatched": mismatches,
            "temps_left_then_cleaned": temps_seen,
        },
    )


@pytest.mark.parametrize("family", ["safetensors", "torch"])
def test_concurrent_writers_and_readers(tmp_path: Path, family: str, need: Any) -> None:
    """4 processes x 25 saves to one path while this process loads in a loop: every read is a
    complete, verifying file of one of the versions written."""
    need(family)
    per_writer = count(25, 100)
    path = tmp_path / f"model{FAMILIES[family]}"
    ms.save(make(family, 0), path, metadata={"i": 0})
    valid = {0.0} | {float(1000 * (w + 1) + k) for w in range(4) for k in range(per_writer)}
    writers = [
        spawn("writer", family, str(path), str(1000 * (w + 1)), str(w + 1), str(per_writer))
        for w in range(4)
    ]
    reads, failures = 0, []
    while any(w.poll() is None for w in writers):
        try:
            v = version_of(family, load_quietly(path))
            if v not in valid:
                failures.append(f"unexpected version {v}")
        except ms.ModelstoreError as e:
            failures.append(str(e))
        reads += 1
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0, err
        assert len(out.split()) == per_writer
    assert not failures, failures[:3]
    assert reads > 0
    final = version_of(family, load_quietly(path))
    assert final in valid
    record(
        "concurrency",
        {
            "family": family,
            "writers": 4,
            "saves": 4 * per_writer,
            "reads": reads,
            "failed_reads": len(failures),
        },
    )

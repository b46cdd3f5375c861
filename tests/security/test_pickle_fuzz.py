"""The pickle fuzzer (tests/security/pickle_fuzz.py) as part of the suite: streams composed
only of allow-listed globals and opcodes, and mutated states of real fitted objects, loaded
and used in worker processes: no signal, no hang, no foreign exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from tests.security.pickle_fuzz import run  # noqa: E402

CASES = int(os.environ.get("MODELSTORE_FUZZ_CASES", "10000"))


@pytest.mark.slow
def test_allow_listed_compositions_never_crash_hang_or_escape(tmp_path: Path) -> None:
    """10,000 random streams (seeded: a failure names its case and reproduces): 0 signals,
    0 hangs, 0 exceptions from the load that are not ModelstoreErrors."""
    findings = run(tmp_path, CASES, seed=12)
    assert findings["signal"] == [] and findings["hang"] == [] and findings["foreign"] == [], (
        findings
    )

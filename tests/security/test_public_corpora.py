"""The public malicious corpora: picklescan's, modelscan's and fickling's test data.

Their files are not committed here (they are other projects' data): the test reads them from
a local snapshot of each repository, named by ``MODELSTORE_CORPORA`` (a folder holding
``<owner>+<repo>/`` checkouts or bare mirrors, as the project's fetch tool writes them), and
is skipped when none is present. Licences: picklescan MIT, modelscan Apache-2.0, fickling
LGPL-3.0 (files are read, not redistributed).

Each file is scanned and loaded in a child process whose working directory is empty: ``scan``
never says "safe" for a file that is not plain data, ``load`` never runs anything (no marker,
no network: the payloads here call ``eval``, ``os.system``, HTTP and socket clients).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPOS = ("mmaitre314+picklescan", "protectai+modelscan", "trailofbits+fickling")
DATA_DIRS = ("tests/data", "tests/data2", "test/fixtures", "tests/fixtures")
#: Files of these corpora that are benign on purpose (their scanners' negative controls).
BENIGN = {
    "benign0_v0.pkl",
    "benign0_v3.pkl",
    "benign0_v4.pkl",
    "pytorch_model.bin",
    "new_pytorch_model.bin",
    "int_array.npy",
    "int_arrays.npz",
    "int_arrays_compressed.npz",
}


def _corpora() -> Path | None:
    base = Path(os.environ.get("MODELSTORE_CORPORA", "/work/.mirror"))
    return base if any((base / r).exists() for r in REPOS) else None


def _extract(base: Path, dest: Path) -> list[Path]:
    for repo in REPOS:
        src = base / repo
        if (src / "repo").exists():  # a bare mirror: take the data folders of its HEAD
            names = subprocess.run(
                ["git", "--git-dir", str(src / "repo"), "ls-tree", "-r", "--name-only", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            for name in (n for n in names if n.startswith(tuple(d + "/" for d in DATA_DIRS))):
                blob = subprocess.run(
                    ["git", "--git-dir", str(src / "repo"), "show", f"HEAD:{name}"],
                    capture_output=True,
                )
                if blob.returncode == 0:  # snapshots leave out files of 4 MiB and more
                    out = dest / repo / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(blob.stdout)
        else:
            for d in DATA_DIRS:
                if (src / d).is_dir():
                    subprocess.run(["cp", "-r", str(src / d), str(dest / repo / d)], check=True)
    return sorted(p for p in dest.rglob("*") if p.is_file())


_RUN = """
import json, sys, warnings
import modelstore as ms
out = {}
for p in sys.argv[1:]:
    try:
        verdict = ms.scan(p).verdict
    except ms.ModelstoreError as e:
        verdict = "error " + type(e).__name__
    except BaseException as e:
        verdict = "FOREIGN " + type(e).__name__
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ms.load(p)
        loaded = "loaded"
    except ms.ModelstoreError as e:
        loaded = type(e).__name__
    except BaseException as e:
        loaded = "FOREIGN " + type(e).__name__
    out[p] = [verdict, loaded]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_public_corpora_are_never_safe_and_never_run(tmp_path: Path) -> None:
    """Every malicious file of the corpora scans unsafe or unknown and is refused; benign
    controls may load; no foreign exception; nothing runs."""
    base = _corpora()
    if base is None:
        pytest.skip("no local snapshot of picklescan/modelscan/fickling (set MODELSTORE_CORPORA)")
    files = _extract(base, tmp_path / "corpora")
    assert len(files) > 50
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, *map(str, files)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    bad = []
    for path, (verdict, loaded) in results.items():
        name = Path(path).name
        if "FOREIGN" in verdict or "FOREIGN" in loaded:
            bad.append(f"{path}: {verdict} / {loaded}")
        elif name not in BENIGN and (verdict == "safe" or loaded == "loaded"):
            bad.append(f"{path}: malicious but {verdict} / {loaded}")
    assert not bad, "\n".join(bad)
    assert list(cwd.iterdir()) == [], "a payload wrote into the working directory"

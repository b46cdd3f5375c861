"""The hostile corpus: every file is really hostile, and modelstore refuses every one."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import modelstore as ms  # noqa: E402
from tests.hostile import CORPUS, NAIVE_LOADER, Hostile  # noqa: E402

IDS = [h.name for h in CORPUS]


def test_corpus_is_large_enough() -> None:
    """At least 25 hostile files, of pickle, joblib and torch kinds."""
    assert len(CORPUS) >= 25
    assert {h.suffix for h in CORPUS} >= {".pkl", ".joblib", ".pt"}


@pytest.mark.slow
def test_every_payload_runs_under_a_naive_load(tmp_path: Path) -> None:
    """Proof the corpus is real: pickle.load / joblib.load / torch.load(weights_only=False)
    in a fresh process creates each file's marker."""
    args: list[str] = []
    markers = []
    for h in CORPUS:
        if h.naive is None:
            continue
        folder = tmp_path / h.name
        folder.mkdir()
        path, marker = folder / f"model{h.suffix}", folder / "marker"
        h.build(path, marker)
        args += [h.naive, str(path)]
        markers.append((h.name, marker))
    proc = subprocess.run(
        [sys.executable, "-c", NAIVE_LOADER, *args], capture_output=True, text=True, timeout=300
    )
    missing = [name for name, marker in markers if not marker.exists()]
    assert not missing, f"payloads that did not run naively: {missing}\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("hostile", CORPUS, ids=IDS)
def test_modelstore_refuses_and_never_runs_it(tmp_path: Path, hostile: Hostile) -> None:
    """load refuses with UnsafeModelError and no trust recipe, scan is 'unsafe', inspect
    says the file executes code."""
    path, marker = tmp_path / f"model{hostile.suffix}", tmp_path / "marker"
    hostile.build(path, marker)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert str(path) in str(e.value) and "trust=[" not in str(e.value)
    assert ms.scan(path).verdict == "unsafe"
    try:
        assert ms.inspect(path).executes_code
    except ms.ModelstoreError:
        pass  # a file that cannot even be read statically is refused all the same
    # a trust list naming something harmless does not open the door either
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path, trust=["collections.OrderedDict"])
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize(
    "hostile",
    [h for h in CORPUS if h.suffix != ".pt"],
    ids=[h.name for h in CORPUS if h.suffix != ".pt"],
)
def test_the_restricted_unpickler_alone_refuses_it(tmp_path: Path, hostile: Hostile) -> None:
    """The restricted unpickler is the check a load goes through: called directly, with no
    scan before it, it refuses every payload."""
    from modelstore.security.joblibfile import load_file

    path, marker = tmp_path / f"model{hostile.suffix}", tmp_path / "marker"
    hostile.build(path, marker)
    with pytest.raises(ms.UnsafeModelError):
        load_file(path, [])
    assert not marker.exists()


def test_attack_primitives_get_no_trust_recipe(tmp_path: Path) -> None:
    """A known code-execution primitive is called an attack and the message offers no
    trust=[...]; a caller who names it explicitly is still obeyed (their decision)."""
    from tests.hostile import _system, dumped

    path, marker = tmp_path / "m.pkl", tmp_path / "marker"
    dumped(_system)(path, marker)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert e.value.untrusted == ["posix.system"]
    assert "attack" in str(e.value) and "trust=[" not in str(e.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        ms.load(path, trust=["posix.system"])  # the caller explicitly allowed it
    assert marker.exists()


def test_trust_list_names_what_the_file_needs(tmp_path: Path) -> None:
    """A harmless class outside the allow-list gets the exact trust=[...] that allows it,
    and that list widens exactly that one name."""
    import calendar
    import pickle

    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(calendar.Calendar(firstweekday=2), protocol=4))
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert e.value.untrusted == ["calendar.Calendar"]
    assert "trust=['calendar.Calendar']" in str(e.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        cal = ms.load(path, trust=["calendar.Calendar"])
    assert cal.firstweekday == 2

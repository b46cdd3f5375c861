"""Keras lookup vocabularies padded to their longest entry (THREATS class 6; red team pass 4).

``StringLookup``, ``IntegerLookup`` and ``TextVectorization`` make a numpy string array of
their vocabulary when Keras constructs them (from the config) or loads their asset, and numpy
pads every entry to the longest at four bytes a character: one 150,000-character token among
a thousand short ones is a few KB of deflated JSON and ~600 MB of array. Plain Keras is shown
to allocate first (in a child); modelstore refuses the config and the asset without
allocating, ``scan`` agrees, and real vocabularies (adapted, long-tailed) still load.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from modelstore.security import kerassize, kerasvocab

ROOT = Path(__file__).resolve().parents[2]
LONG = 150_000  # characters of the one long entry: ~600 MB of numpy strings with 1,000 others


def _lookup(cls: str, **cfg: Any) -> dict[str, Any]:
    first = {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 1]}}
    layer = {"module": "keras.layers", "class_name": cls, "config": {"name": "l", **cfg}}
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [first, layer]}}


def test_the_config_check_charges_padded_vocabularies() -> None:
    """The padded array (entries x longest) must be covered by 64 x the characters the config
    holds, for a vocabulary, the OOV token repeated num_oov_indices times, a mask token, and
    nested lists (numpy pads them the same way); whatever the class (an IntegerLookup given
    strings pays before it fails)."""
    short = [f"t{k}" for k in range(1000)]
    hostile = [
        _lookup("StringLookup", vocabulary=["x" * LONG, *short]),
        _lookup("TextVectorization", vocabulary=["x" * LONG, *short]),
        _lookup("IntegerLookup", vocabulary=["x" * LONG, *short]),
        _lookup("StringLookup", vocabulary=[["x" * LONG], *[[s] for s in short]]),
        _lookup("StringLookup", oov_token="y" * LONG, num_oov_indices=800),
        _lookup("StringLookup", mask_token="z" * LONG, vocabulary=short),
        # red team pass 5: a token given as a list is an array row of its own
        _lookup("StringLookup", oov_token=["y" * LONG], num_oov_indices=800),
    ]
    for config in hostile:
        with pytest.raises(kerassize.SizeError, match="'l' .*pads its vocabulary"):
            kerassize.check_config(config, [])
    # a long-tailed real vocabulary: 60,000 tokens averaging ~8 characters, one of 240
    tail = [f"w{k:06d}"[: 2 + k % 8] + str(k) for k in range(60_000)] + ["u" * 240]
    kerassize.check_config(_lookup("TextVectorization", vocabulary=tail), [])
    # red team pass 5: what the file holds, not what it inflates to: deflated 50 to 1, the
    # same vocabulary holds too little for its padding
    with pytest.raises(kerassize.SizeError, match="pads its vocabulary"):
        kerassize.check_config(_lookup("TextVectorization", vocabulary=tail), [], held_ratio=1 / 50)
    kerassize.check_config(_lookup("IntegerLookup", vocabulary=list(range(100_000))), [])
    kerassize.check_config(_lookup("StringLookup", num_oov_indices=50, oov_token="[UNK]"), [])


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize("eol", ["\n", "\r", "\x0b", "\x1c", "\u2028"])
def test_asset_lines_are_measured_across_chunks(chunk: int, eol: str) -> None:
    """``lines_padded`` counts lines x the longest line and the characters (not bytes), one
    chunk at a time: a line may span chunks, a character its bytes; lines break where
    ``str.splitlines`` breaks them, as Keras reads the asset (red team pass 5: ``\\r``)."""
    text = eol.join(["[UNK]", "ab", "é" * 10, "c"])
    assert kerasvocab.lines_padded(io.BytesIO(text.encode()), chunk) == (4 * 10, len(text))
    assert kerasvocab.lines_padded(io.BytesIO(b""), chunk) == (0, 0)


def _child(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


GROWTH = """
    import sys, warnings
    warnings.simplefilter("ignore")
    def _status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    def load(path, how):
        import keras, modelstore as ms
        base = _status("VmRSS")
        try:
            if how == "plain":
                keras.saving.load_model(path)
            else:
                ms.load(path)
            outcome = "LOADED"
        except Exception as e:
            outcome = type(e).__name__ + " " + " ".join(str(e).split())
        print("GREW", _status("VmHWM") - base, outcome)
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapted StringLookup (its vocabulary an asset, the config's null) whose asset has one
    long line among a thousand short ones. (The same entry in the config: test_keras_sizes.)"""
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    root = tmp_path_factory.mktemp("keras_vocab")
    short = [f"t{k}" for k in range(1000)]
    layer = keras.layers.StringLookup(name="string_lookup")
    layer.adapt(np.array(short))
    keras.Sequential([keras.Input((1,), dtype="string"), layer]).save(root / "adapted.keras")
    with zipfile.ZipFile(root / "adapted.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    asset = "assets/layers/string_lookup/vocabulary.txt"
    assert asset in members and b'"vocabulary": null' in members["config.json"]
    members[asset] = "\n".join(["[UNK]", "x" * LONG, *short]).encode()
    out = root / "hostile-asset.keras"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    assert out.stat().st_size < 20_000
    return out


@pytest.mark.slow
def test_plain_keras_pads_an_asset_and_modelstore_refuses(hostile: Path) -> None:
    """Plain Keras (safe mode on) allocates hundreds of MB for the few-KB file; ms.load refuses
    it as crafted without allocating, and ``scan`` calls it unsafe."""
    grew = {}
    for how in ("plain", "modelstore"):
        r = _child(GROWTH + f"\n    load({str(hostile)!r}, {how!r})\n")
        assert r.returncode == 0, r.stderr[-3000:]
        line = next(x for x in r.stdout.splitlines() if x.startswith("GREW"))
        _, mb, outcome = line.split(" ", 2)
        grew[how] = (int(mb), outcome)
    assert grew["plain"][0] > 400, grew
    mb, outcome = grew["modelstore"]
    assert outcome.startswith("UnsafeModelError") and "numpy strings" in outcome, outcome
    assert "assets/layers/string_lookup/vocabulary.txt" in outcome, outcome
    assert mb < 100, grew
    assert ms.scan(hostile).verdict == "unsafe"


def test_deprecated_output_modes_count_as_keras_renames_them() -> None:
    """Red team pass 5: Keras takes ``"tf-idf"`` for tf-idf and ``"binary"`` for multi-hot."""
    for mode in ("tf_idf", "tf-idf"):
        layer = _lookup(
            "IntegerLookup", output_mode=mode, pad_to_max_tokens=True, max_tokens=1 << 24
        )
        with pytest.raises(kerassize.SizeError, match="'l' "):
            kerassize.check_config(layer, [])
    for mode in ("multi_hot", "binary"):
        layer = _lookup("StringLookup", output_mode=mode, max_tokens=1 << 27)
        with pytest.raises(kerassize.SizeError, match="outputs or pads"):
            kerassize.check_config(layer, [])


def test_a_lookup_base_class_named_directly_is_refused(tmp_path: Path) -> None:
    """Red team pass 5: ``IndexLookup`` (StringLookup's base) runs the same constructor, but
    the size checks know the concrete layers; Keras never writes a base class by name, so the
    audit refuses it, whatever its arguments."""
    config = _lookup("StringLookup", vocabulary=["a"])
    node = config["config"]["layers"][1]
    node.update(module="keras.src.layers.preprocessing.index_lookup", class_name="IndexLookup")
    path = tmp_path / "base.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "IndexLookup" in str(report.findings), report
    with pytest.raises(ms.UnsafeModelError, match="IndexLookup"):
        ms.load(path)


@pytest.mark.slow
def test_real_vocabularies_load(tmp_path: Path) -> None:
    """An adapted TextVectorization over long-tailed text (one 200-character token among ~20,000
    short ones, its vocabulary an asset) and a StringLookup given its vocabulary round-trip
    through ms.save and ms.load and predict as saved; scan says safe."""
    keras = pytest.importorskip("keras")
    np = pytest.importorskip("numpy")
    L = keras.layers
    rng = np.random.default_rng(0)
    words = [f"w{k}" * (1 + k % 3) for k in range(20_000)] + ["u" * 200]
    text = np.array([" ".join(rng.choice(words, 30)) for _ in range(3000)] + ["u" * 200])
    vectorize = L.TextVectorization(output_mode="int", output_sequence_length=8)
    vectorize.adapt(text)
    assert len(vectorize.get_vocabulary()) > 15_000
    lookup = L.StringLookup(vocabulary=words, num_oov_indices=2)
    cases = [
        (keras.Sequential([keras.Input((1,), dtype="string"), vectorize]), text[:5, None]),
        (keras.Sequential([keras.Input((3,), dtype="string"), lookup]), np.array([words[:3]])),
    ]
    for i, (model, x) in enumerate(cases):
        want = np.asarray(model(x))
        path = tmp_path / f"vocab{i}.keras"
        ms.save(model, path)
        assert ms.scan(path).verdict == "safe", ms.scan(path)
        np.testing.assert_array_equal(np.asarray(ms.load(path)(x)), want)

"""Red team, pass 17 (second look): regular expressions a Keras file chooses, still matched in
super-linear or unbounded time by plain Keras and by ``ms.load``, while ``scan`` calls the file
"safe". Each hostile file is a ~2 KB ``.keras`` archive.

1. A ``DTypePolicyMap`` key that ``kerasregex.key_problem`` accepts: ``(?i).*a{K}b`` has one
   variable repetition (``.*``) and one *fixed* count, which the checker skips as "no choice
   to go back on". But ``a{K}`` costs K steps at every position ``.*`` backtracks to, and K
   costs the file nothing (it is written in digits): against a layer path of n ``a``s the match
   takes (n - K) * K steps, quadratic in the path (0.56 s per lookup at n = 40,000, K = n/2,
   case-insensitive). 32 such keys and one Dense named with 40,000 ``a``s: a 2.1 KB file that
   plain Keras took 188 s to load (safe mode on), ``ms.load`` over 150 s; ``scan``: safe.
2. ``Muon(exclude_layers=[...])`` in ``compile_config``: Keras ``re.search``es each keyword
   against every 2-D variable's path when the optimizer is built, which ``compile_from_config``
   does during the load. ``(a|aa)*c`` and a Dense named with 44 ``a``s: plain Keras and
   ``ms.load`` both past 60 s (each further ``a`` multiplies by ~1.6); ``scan``: safe.
3. ``MultiOptimizer(OptimizerMap(..., {key: ...}))`` in ``compile_config``: ``OptimizerMap``
   ``re.fullmatch``es each key against every variable's path at build, as ``DTypePolicyMap``
   does; its keys are not checked at all.
4. Compiling a key costs more than matching it: a character set spanning most of Unicode,
   ``[\x01-\uffff]`` (5 characters of the key), takes Python's compiler about 3 ms, so a
   1,002-character key of 200 of them about 0.4-0.8 s, and ``key_problem`` compiles each key
   before judging it. 64 such keys: a 2.4 KB file that ``scan`` took 25 s over (to say
   "safe") and plain Keras 24 s to load; 512 keys (10.5 KB, 166x deflated): minutes.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

import modelstore as ms  # noqa: E402
from modelstore.security.kerasregex import key_problem  # noqa: E402
from tests.hang import keras_loads_hang  # noqa: E402
from tests.security.test_keras_policy_keys import policy_map, with_map  # noqa: E402


def _rewrite(src: Path, out: Path, edit: Any) -> Path:
    with zipfile.ZipFile(src) as zf:
        members = {k: zf.read(k) for k in zf.namelist()}
    members["config.json"] = edit(members["config.json"].decode()).encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return out


def _dense(tmp_path: Path, optimizer: Any = None) -> Path:
    tmp_path.mkdir(exist_ok=True)
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2, name="d")(x))
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss="mse")
    src = tmp_path / "plain.keras"
    model.save(src)
    return src


def _quadratic_key_file(tmp_path: Path, n: int = 40_000, keys: int = 32) -> Path:
    """A Dense named with ``n`` ``a``s whose dtype is a map of ``keys`` keys
    ``(?i).*a{K}b`` (K about n/2), each accepted by ``key_problem``."""
    pattern = [f"(?i).*a{{{n // 2 - i}}}b" for i in range(keys)]
    mapping = policy_map(pattern)

    def edit(text: str) -> str:
        config = json.loads(text.replace('"d"', json.dumps("a" * n)))
        node = next(n for n in config["config"]["layers"] if n["class_name"] == "Dense")
        node["config"]["dtype"] = mapping
        return json.dumps(config)

    return _rewrite(_dense(tmp_path), tmp_path / "quadratic-key.keras", edit)


def _optimizer_file(tmp_path: Path, kind: str, n: int = 44, key: str = "(a|aa)*c") -> Path:
    """A compiled Dense named with ``n`` ``a``s whose optimizer carries the regex ``key``:
    Muon's ``exclude_layers`` or an ``OptimizerMap`` key."""
    if kind == "muon":
        opt = keras.optimizers.Muon(exclude_layers=["placeholder_key"])
    else:
        opt = keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.SGD(), {"placeholder_key": keras.optimizers.Adam()}
            )
        )

    def edit(text: str) -> str:
        text = text.replace('"d"', json.dumps("a" * n))
        return text.replace('"placeholder_key"', json.dumps(key))

    return _rewrite(_dense(tmp_path, opt), tmp_path / f"{kind}-regex.keras", edit)


def _refused(path: Path) -> None:
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="regular expressions"):
        ms.load(path)


# -- 1. a fixed count after a variable repetition -----------------------------------------


@pytest.mark.parametrize("key", ["(?i).*a{20000}b", ".*a{99999}b", ".*[a-z]{50000}x"])
def test_a_fixed_count_after_a_repetition_is_not_linear(key: str) -> None:
    """Against a path of n characters the key takes (n - K) * K steps: K is free."""
    assert key_problem(key) is not None


# -- 4. keys that are slow to compile -------------------------------------------------------

WIDE_KEY = "[\u0001-\uffff]" * 200 + "z"


def test_a_key_slow_to_compile_is_refused_without_compiling_it() -> None:
    import re
    import time

    re.purge()
    start = time.monotonic()
    problem = key_problem(WIDE_KEY)
    assert problem is not None
    assert time.monotonic() - start < 0.1


def _wide_keys_file(tmp_path: Path, keys: int = 64) -> Path:
    pattern = [WIDE_KEY + str(i) for i in range(keys)]
    mapping = policy_map(pattern)

    def edit(text: str) -> str:
        config = json.loads(text)
        node = next(n for n in config["config"]["layers"] if n["class_name"] == "Dense")
        node["config"]["dtype"] = mapping
        return json.dumps(config)

    return _rewrite(_dense(tmp_path), tmp_path / "wide-keys.keras", edit)


@pytest.mark.slow
def test_each_hangs_plain_keras_and_is_refused_at_once(tmp_path: Path) -> None:
    """Each file (under 4 KB) keeps plain Keras busy (1.6x more per "a"; 188 s; over 60 s
    twice; 24 s here); scan and load refuse it without matching or compiling anything."""
    (tmp_path / "p").mkdir()
    files = [
        with_map(tmp_path / "p", "a" * 60, ["(a|aa)*c"]),  # (pass 17's first file)
        _quadratic_key_file(tmp_path / "q"),
        _optimizer_file(tmp_path / "m", "muon"),
        _optimizer_file(tmp_path / "o", "optimizer-map"),
        _wide_keys_file(tmp_path / "w"),
    ]
    assert all(f.stat().st_size < 4096 for f in files)
    assert keras_loads_hang(files, tmp_path) == {str(f): True for f in files}
    for f in files:
        _refused(f)

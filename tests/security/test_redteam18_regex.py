"""Red team, pass 18: patterns that pass ``kerasregex.key_problem`` and the step budget of
``PathPatterns``, and files that still keep plain Keras and ``ms.load`` busy for minutes while
``scan`` calls them "safe". Every hostile file here is a small ``.keras`` archive (4-35 KB).

1. Compiling, not matching. Keras calls ``re.fullmatch(key, path)`` for every key on every
   lookup; ``re`` keeps only the last 512 compiled patterns (``re._MAXCACHE``), so a map of
   more than 512 distinct keys is compiled afresh, key by key, on every lookup. A 1,023
   character literal key takes ~0.75 ms to compile (the budget prices it at ~1,000 "steps" of
   a few ns): one ``DTypePolicyMap`` of 1,024 such keys (accepted: 10 x 1,024 x (1,024 + 2 x
   ~10) ~ 1.1e7 steps, 5% of the budget) costs ~0.7 s per lookup. One Dense with that map:
   a 7 KB file, plain Keras load 7.4 s, ``ms.load`` 14 s, 4.4 s per ``predict``; 18 Dense
   layers with one map each (175 KB, just under the 200x inflate limit; 93% of the budget):
   plain Keras 127 s.
2. Lookups are not 10 per holder. The budget counts ``LOOKUPS_PER_LAYER = 10`` per map, but a
   layer looks its dtype up ~4 more times per *call*, and a shared layer is called once per
   inbound node of the functional graph (~100 bytes of JSON each, almost free deflated). One
   Dense called 200 times with the map of (1): 806 lookups, an 11.7 KB file, plain Keras
   ~0.7 s per lookup (about 9-10 minutes of load); ``scan``: safe in 1.2 s; ``ms.load``:
   still running when killed. Likewise ``OptimizerMap`` is looked up once per trainable
   variable when a compiled model's optimizer is built: 1,024 keys and 30 Dense layers (60
   variables), 40+ s.
3. Not a file-chosen regex, a file-chosen subject for a fixed one: ``Rearrange`` (allowed, a
   recorded ``keras.ops.rearrange``) runs ``re.split(r"\\s*->\\s*", pattern)`` and
   ``re.findall(r"\\w+|\\(.*?\\)", ...)`` on the pattern string from the file's
   ``inbound_nodes`` each time the functional graph is rebuilt, both quadratic: a run of
   spaces not followed by ``->`` and a run of ``(`` with no ``)``. ``"b h w" + 40,000 spaces +
   100,000 "(" + " -> b w h " + 100,000 "("`` is a valid pattern (the model loads and is
   correct): a 3.6 KB file, plain Keras ~60-100 s, ``ms.load`` 112 s; ``scan``: safe.
"""

from __future__ import annotations

import json
import random
import string
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

import modelstore as ms  # noqa: E402
from tests.hang import keras_loads_hang  # noqa: E402
from tests.security.test_keras_policy_keys import policy_map  # noqa: E402

#: 1,024 distinct 1,023-character literal keys: each passes ``key_problem``; more than
#: ``re._MAXCACHE`` (512), so every ``re.fullmatch`` compiles its key again.
KEYS = ["a" * 1015 + f"{i:08x}" for i in range(1024)]


def _save(model: Any, tmp_path: Path, out: str, edit: Any) -> Path:
    tmp_path.mkdir(exist_ok=True)
    src = tmp_path / "plain.keras"
    model.save(src)
    with zipfile.ZipFile(src) as zf:
        members = {k: zf.read(k) for k in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / out
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def _shared_layer_file(tmp_path: Path, calls: int = 200) -> Path:
    """One Dense, called ``calls`` times in a chain, whose dtype is a map of :data:`KEYS`."""
    x = keras.Input((4,))
    dense, y = keras.layers.Dense(4, name="d"), x
    for _ in range(calls):
        y = dense(y)

    def edit(config: dict[str, Any]) -> None:
        node = next(n for n in config["config"]["layers"] if n["class_name"] == "Dense")
        node["config"]["dtype"] = policy_map(KEYS)

    return _save(keras.Model(x, y, name="m"), tmp_path, "shared-map.keras", edit)


def _optimizer_map_file(tmp_path: Path, layers: int = 30) -> Path:
    """A compiled chain of ``layers`` Dense layers; ``MultiOptimizer(OptimizerMap)`` whose map
    has :data:`KEYS` (looked up once per trainable variable when the optimizer is built)."""
    x = keras.Input((4,))
    y = x
    for i in range(layers):
        y = keras.layers.Dense(4, name=f"d{i}")(y)
    model = keras.Model(x, y, name="m")
    model.compile(
        optimizer=keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.SGD(), {"placeholder_key": keras.optimizers.SGD()}
            )
        ),
        loss="mse",
    )

    def find(node: Any) -> Any:
        if isinstance(node, dict):
            if "placeholder_key" in (node.get("optimizer_map") or {}):
                return node
            nodes = list(node.values())
        else:
            nodes = node if isinstance(node, list) else []
        return next((f for n in nodes if (f := find(n)) is not None), None)

    def edit(config: dict[str, Any]) -> None:
        holder = find(config)
        value = holder["optimizer_map"]["placeholder_key"]
        holder["optimizer_map"] = dict.fromkeys(KEYS, value)

    return _save(model, tmp_path, "optimizer-map.keras", edit)


def _rearrange_file(tmp_path: Path, spaces: int = 40_000, parens: int = 100_000) -> Path:
    """``keras.ops.rearrange`` recorded in a functional model, its pattern padded with a run
    of spaces and runs of ``(`` (both ignored by the parse, both quadratic to scan)."""
    x = keras.Input((3, 4), batch_size=2)
    model = keras.Model(x, keras.ops.rearrange(x, "b h w -> b w h"), name="m")

    def edit(config: dict[str, Any]) -> None:
        node = next(n for n in config["config"]["layers"] if n["class_name"] == "Rearrange")
        node["inbound_nodes"][0]["args"][1] = (
            "b h w" + " " * spaces + " " + "(" * parens + " -> b w h " + "(" * parens
        )
        # incompressible padding in the model's name keeps config.json under the 200x limit
        rng = random.Random(0)
        config["config"]["name"] = "m" + "".join(
            rng.choice(string.ascii_letters) for _ in range(2500)
        )

    return _save(model, tmp_path, "rearrange.keras", edit)


BUILDERS = {
    "shared-layer-map": _shared_layer_file,
    "optimizer-map": _optimizer_map_file,
    "rearrange": _rearrange_file,
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_scan_calls_the_file_unsafe(tmp_path: Path, kind: str) -> None:
    """Cheap: ``scan`` reads the config only (1-2 s). Today it says "safe" for all three."""
    path = BUILDERS[kind](tmp_path)
    assert path.stat().st_size < 40_000
    assert ms.scan(path).verdict == "unsafe"


@pytest.mark.slow
def test_each_hangs_plain_keras_and_is_refused_at_once(tmp_path: Path) -> None:
    files = [build(tmp_path / kind) for kind, build in BUILDERS.items()]
    assert keras_loads_hang(files, tmp_path) == {str(f): True for f in files}
    for f in files:
        # scan first: while it says "safe", ms.load would run for minutes
        assert ms.scan(f).verdict == "unsafe", f
        with pytest.raises(ms.UnsafeModelError):
            ms.load(f)

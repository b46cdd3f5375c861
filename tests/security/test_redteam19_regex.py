"""Red team, pass 19: the lookup count of ``kerasregex.longest_path`` is additive, Keras' is
multiplicative.

``longest_path`` prices a pattern holder at ``10 x (1 + layers listed + inbound nodes + ...)``
lookups: each nested model's ``layers`` and ``inbound_nodes`` are *added*. But a Functional
model used as a layer re-runs its whole graph on every call, so a model ``m1`` that calls
``m0`` K times, inside ``m2`` that calls ``m1`` K times, ... runs ``m0``'s layers K^(depth-1)
times, and each call of a layer with a ``DTypePolicyMap`` looks its dtype up ~6 times. Loading
builds each layer once (10 lookups: the estimate holds there), but the first ``predict``
traces the whole unfolded graph.

Measured (Keras 3.15.1, TF backend, 2 cores): K=3, depth 8, one Dense named
``"a" * 4999 + "b"`` whose map holds 120 keys ``"a*"``, ``"aa*"``, ... (each accepted, each
runs over the 5,000 character path and fails at the ``b``): a 3.5 KB file;
``longest_path`` -> (5,033, 390 lookups), 4.8e8 steps, just inside :data:`BUDGET`; the
real ``predict`` makes 13,122 lookups (34x). Plain Keras ``load_model`` 0.3 s, first
``predict`` 87 s (20 s with a 1-key map: the regex adds ~67 s, against ~1 s the budget
allows); ``ms.scan``: safe; ``ms.load`` 10 s; ``ms.predict(path)`` 97 s. The factor grows
as K^(depth-1) / (K x depth).

Without any map the same nesting is already exponential in ``predict`` (not a regex
problem, reported alongside): K=2, depth 12 (2,048 Dense calls), a 3.9 KB file, plain Keras
first ``predict`` 13 s; each further level doubles it (depth 15: over 100 s).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasregex  # noqa: E402
from tests.hang import GO, run_or_hang  # noqa: E402
from tests.security.test_keras_policy_keys import policy_map  # noqa: E402


def _nested(tmp_path: Path, calls: int, depth: int, name: str, keys: list[str] | None) -> Path:
    """``m0`` = Input -> Dense(name); ``m{i}`` calls ``m{i-1}`` ``calls`` times in a chain."""
    i = keras.Input((4,))
    m = keras.Model(i, keras.layers.Dense(4, name=name)(i), name="m0")
    for level in range(1, depth):
        i = keras.Input((4,))
        x = i
        for _ in range(calls):
            x = m(x)
        m = keras.Model(i, x, name=f"m{level}")
    src = tmp_path / "plain.keras"
    m.save(src)
    with zipfile.ZipFile(src) as zf:
        members = {k: zf.read(k) for k in zf.namelist()}
    config = json.loads(members["config.json"])
    mapping = policy_map(keys) if keys is not None else None

    def put(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Dense":
                node["config"]["dtype"] = mapping
            for value in node.values():
                put(value)
        elif isinstance(node, list):
            for value in node:
                put(value)

    if keys is not None:
        put(config)
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "nested.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def test_lookup_bound_covers_the_calls_of_nested_models(tmp_path: Path) -> None:
    """The bound must be a bound: count Keras' real lookups on a small nested file."""
    from keras.src.dtype_policies.dtype_policy_map import DTypePolicyMap

    path = _nested(tmp_path, 3, 5, "d", ["zz.*"])
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    _, bound = kerasregex.longest_path(config)
    count = [0]
    original = DTypePolicyMap.__getitem__

    def counting(self: Any, key: str) -> Any:
        count[0] += 1
        return original(self, key)

    model = keras.saving.load_model(path)
    DTypePolicyMap.__getitem__ = counting  # type: ignore[method-assign]
    try:
        model.predict(__import__("numpy").zeros((1, 4), "float32"), verbose=0)
    finally:
        DTypePolicyMap.__getitem__ = original  # type: ignore[method-assign]
    assert count[0] <= bound, f"predict made {count[0]} lookups, bound {bound}"


def test_scan_refuses_maps_under_nested_model_reuse(tmp_path: Path) -> None:
    name = "a" * 4999 + "b"
    keys = ["a" * (n + 1) + "*" for n in range(120)]
    path = _nested(tmp_path, 3, 8, name, keys)
    assert os.path.getsize(path) < 8_000
    # plain Keras: load 0.3 s, first predict 87 s (13,122 lookups x 120 keys x 5,000 chars)
    assert ms.scan(path).verdict != "safe"


def test_scan_refuses_exponential_nested_model_reuse(tmp_path: Path) -> None:
    """No regex: 2 calls per level, 20 levels -> 2**19 Dense calls traced by predict."""
    path = _nested(tmp_path, 2, 20, "d", None)
    assert os.path.getsize(path) < 8_000
    assert ms.scan(path).verdict != "safe"
    with pytest.raises(ms.UnsafeModelError, match="nested model reuse"):
        ms.load(path)


@pytest.mark.slow
def test_plain_keras_traces_nested_reuse_for_ever(tmp_path: Path) -> None:
    """The first ``predict`` of plain Keras (safe mode on) on 2 calls per level, 16 levels
    (2**15 Dense calls; each level doubles the time): still running 4 s in."""
    path = _nested(tmp_path, 2, 16, "d", None)
    code = (
        "import numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"{GO}\n"
        "m.predict(np.zeros((1, 4), 'float32'), verbose=0)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    assert run_or_hang([sys.executable, "-c", code], env=env) is None

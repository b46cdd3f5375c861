"""Red team, pass 17: the keys of a Keras ``DTypePolicyMap`` are regular expressions that Keras
matches (``re.fullmatch``) against each layer's path on every lookup of the layer's dtype,
and the file chooses both. The key ``(a|aa)*c`` and a layer named with n ``a``s made a
1.6 KB ``.keras`` load in time growing about 1.6x per ``a`` (1.3 s at 30), in plain Keras and
in ``ms.load``, and ``scan`` called it safe. Now a key must match in linear time
(``kerasregex.key_problem``): both refuse the file at once. (That the file hangs plain Keras
is shown with the other pattern attacks, in ``test_redteam17_regex.py``.)
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasaudit  # noqa: E402
from modelstore.security.kerasregex import MAX_KEYS, key_problem  # noqa: E402

P = keras.dtype_policies
FLOAT32 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}


def policy_map(keys: list[str]) -> dict[str, Any]:
    return {
        "module": "keras.dtype_policies",
        "class_name": "DTypePolicyMap",
        "registered_name": None,
        "config": {"default_policy": "float32", "policy_map": dict.fromkeys(keys, FLOAT32)},
    }


def with_map(tmp_path: Path, name: str, keys: list[str]) -> Path:
    """A Dense model saved by Keras, its Dense layer renamed ``name`` and given a
    ``DTypePolicyMap`` of ``keys`` in the archive's config (Keras would look the keys up while
    building the model to save it)."""
    x = keras.Input((4,))
    src = tmp_path / "plain.keras"
    keras.Model(x, keras.layers.Dense(2, name="d")(x)).save(src)
    with zipfile.ZipFile(src) as zf:
        members = {k: zf.read(k) for k in zf.namelist()}
    config = json.loads(members["config.json"])
    text = json.dumps(config).replace('"d"', json.dumps(name))  # the layer and its references
    config = json.loads(text)
    node = next(n for n in config["config"]["layers"] if n["class_name"] == "Dense")
    node["config"]["dtype"] = policy_map(keys)
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / f"map-{len(name)}.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def test_scan_and_load_refuse_a_backtracking_key_at_once(tmp_path: Path) -> None:
    path = with_map(tmp_path, "a" * 60, ["(a|aa)*c"])
    start = time.monotonic()
    report = ms.scan(path)
    assert report.verdict == "unsafe"
    assert any("(a|aa)*c" in f.reason for f in report.findings), report.findings
    with pytest.raises(ms.UnsafeModelError, match=r"policy_map pattern '\(a\|aa\)\*c'"):
        ms.load(path)
    assert time.monotonic() - start < 60  # (a hang otherwise: about 1.6x per "a")


def test_too_many_keys_are_refused(tmp_path: Path) -> None:
    path = with_map(tmp_path, "d1", [f"block_{i}" for i in range(MAX_KEYS + 1)])
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="policy_map of 257 keys"):
        ms.load(path)


def test_the_legacy_reader_is_audited_alike() -> None:
    """A legacy ``.h5`` config names the class plainly; the same check applies."""
    layer = {
        "class_name": "Dense",
        "config": {"name": "aaa", "units": 2, "dtype": {**policy_map(["(a+)+b"])}},
    }
    layer["config"]["dtype"].pop("module")
    audit = kerasaudit.audit_config(
        {"class_name": "Sequential", "config": {"layers": [layer]}}, legacy_root=True
    )
    assert any("(a+)+b" in f.reason for f in audit.findings), audit.findings


def test_a_map_of_paths_and_simple_patterns_loads(tmp_path: Path) -> None:
    """Keras' documented keys (exact paths, ``encoder/.*``) load and predict as in Keras."""
    policies = P.DTypePolicyMap(default_policy="float32")
    policies["dense_a"] = P.DTypePolicy("float32")
    policies["enc/.*"] = P.DTypePolicy("float32")
    policies["query_.*"] = P.DTypePolicy("float32")
    x = keras.Input((4,))
    y = keras.layers.Dense(3, name="dense_a", dtype=policies)(x)
    model = keras.Model(x, keras.layers.Dense(2, name="query_dense", dtype=policies)(y))
    path = tmp_path / "mapped.keras"
    model.save(path)
    assert "DTypePolicyMap" in zipfile.ZipFile(path).read("config.json").decode()
    assert ms.scan(path).verdict == "safe"
    want = np.arange(8, dtype="float32").reshape(2, 4)
    got = ms.load(path)
    np.testing.assert_allclose(got.predict_on_batch(want), model.predict_on_batch(want))


@pytest.mark.parametrize(
    "key",
    [
        "functional/dense_1",
        "encoder/.*",
        "encoder/layer_0/.*",
        r"block_0/attention_\d+",
        "layer_[0-9]+",
        "dense_[0-9]{2}",
        "a.b",
    ],
)
def test_linear_keys_are_accepted(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("(a|aa)*c", "not the last item"),
        ("(a+)+", "more than one character"),
        (".*a.*b", "not the last item"),
        ("(query|key)_dense", "SUBPATTERN"),
        ("query|key", "BRANCH"),
        (r"(a)\1", "not accepted"),
        ("(?=a)a", "not accepted"),
        ("(?i)dense", "an inline flag"),
        ("[", "not a regular expression"),
        ("a" * 1025, "1,025 characters"),
    ],
)
def test_keys_that_can_backtrack_are_refused(key: str, why: str) -> None:
    problem = key_problem(key)
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize("kind", ["muon", "optimizer-map"])
def test_optimizers_with_plain_patterns_load(tmp_path: Path, kind: str) -> None:
    """``Muon(exclude_layers=[...])`` keywords in plain text and ``OptimizerMap`` keys in the
    documented form load as in Keras (red team, pass 17: both are matched at build)."""
    if kind == "muon":
        opt = keras.optimizers.Muon(exclude_layers=["dense_a"])
    else:
        opt = keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.SGD(), {"dense_a/.*": keras.optimizers.Adam()}
            )
        )
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2, name="dense_a")(x))
    model.compile(optimizer=opt, loss="mse")
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    assert ms.scan(path).verdict == "safe"
    want = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(ms.load(path).predict_on_batch(want), model.predict_on_batch(want))


def test_patterns_are_counted_over_the_whole_model() -> None:
    """Python's ``re`` keeps 512 compiled patterns; past that, each lookup compiles each key
    again (red team, pass 18): at most 256 distinct patterns in one config, all holders
    together, and the lookups priced by the config's layers and calls."""
    from modelstore.security.kerasregex import PathPatterns

    def dense(i: int, keys: list[str]) -> dict[str, Any]:
        return {"class_name": "Dense", "config": {"name": f"d{i}", "dtype": policy_map(keys)}}

    root = {"config": {"layers": [dense(i, [f"m{i}_{k}" for k in range(200)]) for i in (0, 1)]}}
    patterns = PathPatterns(root)
    target = "keras.dtype_policies.DTypePolicyMap"
    first, second = (
        patterns.problem(target, layer["config"]["dtype"]["config"])
        for layer in root["config"]["layers"]
    )
    assert first is None
    assert second is not None and "over 256 distinct patterns" in second
    # the same keys in both: 200 distinct, accepted
    root = {"config": {"layers": [dense(i, [f"k{k}" for k in range(200)]) for i in (0, 1)]}}
    patterns = PathPatterns(root)
    assert all(
        patterns.problem(target, layer["config"]["dtype"]["config"]) is None
        for layer in root["config"]["layers"]
    )


# -- which entries of a map may apply to a layer (kerasquant charges the costliest) ----------


@pytest.mark.parametrize(
    ("key", "name", "may"),
    [
        ("q", "q", True),  # the path is the name ...
        ("outer/q", "q", True),  # ... or scopes, then the name (they vary with the format)
        ("zzz", "q", False),
        ("q2", "q", False),
        ("outer/r", "q", False),
        ("zzz.*", "q", True),  # scopes may start with zzz
        ("encoder/.*", "q", True),
        (".*/q", "q", True),
        ("[^q]", "q", False),
        ("..", "q", True),  # "x/q" is not it, but "/q" of an empty scope name is
        ("...", "q", True),
        ("[^\\s\\S]*", "q", False),  # a set matching nothing
        ("[^\\s\\S]/q", "q", True),  # as a path itself: a scope may be named "[^\\s\\S]"
        ("[^\\s\\S]x/q", "q", True),
        ("[^\\s\\S].", "q", False),
        ("a[/q]{2}", "q", True),
        ("[/q]{3,}", "q", True),
        ("q.+", "q", True),  # "q/q": scopes may be named anything
        ("x.q", "q", True),
        ("x.[q]", "q", True),
        ("x.[r]", "q", False),
        ("(?a)\\w+/q", "q", True),
        ("(?a)\\w+", "q", True),
        ("(?a)\\w+", "é", True),  # é itself is not \w in ASCII mode: scopes/é is not \w+
    ],
)
def test_entries_that_may_apply_to_a_layer(key: str, name: str, may: bool) -> None:
    from modelstore.security.kerasmaps import may_resolve

    got = may_resolve(key, name)
    if key == "(?a)\\w+" and name == "é":
        assert got is False  # no string of ASCII word characters ends with "/é"
        return
    assert got is may, (key, name)


def test_only_dot_star_and_dot_plus_cover_every_path() -> None:
    from modelstore.security.kerasmaps import covers_every_path

    assert covers_every_path(".*") and covers_every_path(".+")
    for key in (".?", "a.*", "[\\s\\S]*", ".{0,9}", "x", 3, "(a|b)*"):
        assert not covers_every_path(key), key


def test_a_key_too_costly_to_analyse_counts_as_applying() -> None:
    import time

    from modelstore.security.kerasmaps import may_resolve

    key, name = "[ab]" * 250 + "[ab/]*", "a" * 1000  # ~10^5 alignments of 250 tests
    start = time.monotonic()
    assert may_resolve(key, name) in (True, None)
    assert time.monotonic() - start < 10  # (a hang guard, not a speed goal)


def test_a_benign_map_of_one_width_scans_safe_and_loads(tmp_path: Path) -> None:
    path = with_map(tmp_path, "dense_a", ["dense_a", "encoder/.*", ".*"])
    assert ms.scan(path).verdict == "safe"
    ms.load(path)


def test_the_analysis_of_a_config_s_maps_is_bounded() -> None:
    """200 layers named with ~1,000 characters, each with a map of 256 keys of 250 sets and a
    repetition: the analysis stops at its budget and counts every entry (the stricter
    charge), in about a second."""
    import time

    from modelstore.security import kerassize

    keys = {"[ab]" * 249 + f"[a{chr(0x100 + i)}]" + "[ab/]*": "int8" for i in range(256)}
    dtype = policy_map([])
    dtype["config"]["policy_map"] = keys
    layers: list[dict[str, Any]] = [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 4]}}
    ]
    for i in range(200):
        cfg = {"name": "a" * 990 + str(i), "units": 4, "dtype": dtype}
        layers.append(
            {"class_name": "Dense", "config": cfg, "build_config": {"input_shape": [None, 4]}}
        )
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}
    start = time.monotonic()
    kerassize.check_config(config, [1 << 20])  # float32 at most: 200 x 20 weights
    assert time.monotonic() - start < 30  # (a hang guard, not a speed goal)

"""Hostile Keras files: each first fires under a naive Keras load, then every entry point refuses it.

The payloads are harmless: Python bytecode that appends to a marker file, a vocabulary or a
weight read from a canary file. Files are built by editing the config of a real saved model,
so nothing hostile runs in this process while building them.
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.formats.keras import backend as keras_  # noqa: E402
from modelstore.security import kerasaudit, kerasnames  # noqa: E402
from tests import cli_batch  # noqa: E402
from tests.sampling import quick_sample  # noqa: E402

X = np.zeros((2, 3), np.float32)
CANARY = "CANARY-7f3a9"
POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}


def code_of(marker: Path) -> str:
    """Base64 bytecode (Keras' func_dump format) of a lambda that appends to ``marker``."""
    src = f"lambda v: (open({str(marker)!r}, 'a').close(), v)[1]"
    return base64.b64encode(marshal.dumps(compile(src, "<payload>", "eval").co_consts[0])).decode()


def bytecode(marker: Path) -> dict[str, Any]:
    """A generic ``__lambda__`` node (any slot that Keras deserialises)."""
    return {"class_name": "__lambda__", "config": {"value": [code_of(marker), None, None]}}


def lambda_layer(
    marker: Path, module: str | None = "keras.layers", class_name: str = "Lambda", name: str = "lam"
) -> dict[str, Any]:
    node: dict[str, Any] = {
        "class_name": class_name,
        "registered_name": None,
        "build_config": {"input_shape": [None, 3]},
        "config": {
            "name": name,
            "trainable": True,
            "dtype": POLICY,
            "arguments": {},
            "function": {
                "class_name": "__lambda__",
                "config": {"code": code_of(marker), "defaults": None, "closure": None},
            },
        },
    }
    if module is not None:
        node["module"] = module
    return node


def edit_keras(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Copy a .keras archive with its config.json rewritten (and modelstore's metadata dropped)."""
    with zipfile.ZipFile(src) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist() if i.filename != "modelstore.json"}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def dense(config: dict[str, Any]) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")


def wrapped(inner: dict[str, Any]) -> dict[str, Any]:
    """``inner`` inside a TimeDistributed layer (a layer inside a layer)."""
    return {
        "module": "keras.layers",
        "class_name": "TimeDistributed",
        "registered_name": None,
        "config": {"name": "td", "trainable": True, "dtype": POLICY, "layer": inner},
        "build_config": {"input_shape": [None, 1, 3]},
    }


@dataclass
class KerasHostile:
    name: str
    naive: str | None  # "marker": a naive load + predict creates it; "canary": it reads the canary
    edit: Callable[[dict[str, Any], Path, Path], None]  # (config, marker, canary)
    subject: str
    base: str = "dense"  # which real model's config is edited: "dense" or "td" (TimeDistributed)


def _insert(
    layer: Callable[[Path], dict[str, Any]],
) -> Callable[[dict[str, Any], Path, Path], None]:
    def edit(config: dict[str, Any], marker: Path, canary: Path) -> None:
        config["config"]["layers"].insert(1, layer(marker))

    return edit


def _slot(slot: str, value: Callable[[Path], Any]) -> Callable[[dict[str, Any], Path, Path], None]:
    def edit(config: dict[str, Any], marker: Path, canary: Path) -> None:
        dense(config)["config"][slot] = value(marker)

    return edit


def _function(module: str, name: str) -> Callable[[Path], Any]:
    return lambda marker: {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": name,
    }


def _td_dense(config: dict[str, Any]) -> dict[str, Any]:
    layer = next(
        layer for layer in config["config"]["layers"] if layer["class_name"] == "TimeDistributed"
    )
    inner: dict[str, Any] = layer["config"]["layer"]
    return inner


def _timedistributed_dense(config: dict[str, Any], marker: Path, canary: Path) -> None:
    _td_dense(config)["config"]["activation"] = bytecode(marker)


def _timedistributed_lambda(config: dict[str, Any], marker: Path, canary: Path) -> None:
    layers = config["config"]["layers"]
    layers.insert(1, wrapped(lambda_layer(marker, module="keras", class_name="layers.Lambda")))


def _vocabulary(config: dict[str, Any], marker: Path, canary: Path) -> None:
    config["config"]["layers"] = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "registered_name": None,
            "config": {"batch_shape": [None, 1], "dtype": "string", "name": "input"},
        },
        {
            "module": "keras.layers",
            "class_name": "StringLookup",
            "registered_name": None,
            "config": {"name": "lookup", "vocabulary": str(canary), "output_mode": "int"},
        },
    ]


def _torch_wrapper(config: dict[str, Any], marker: Path, canary: Path) -> None:
    config["config"]["layers"].insert(
        1,
        {
            "module": "keras.layers",
            "class_name": "TorchModuleWrapper",
            "registered_name": None,
            "config": {"name": "t", "module": "gASVAA=="},
        },
    )


CORPUS = [
    KerasHostile(
        "lambda_spelled_keras_layers_dot_Lambda",
        "marker",
        _insert(lambda m: lambda_layer(m, module="keras", class_name="layers.Lambda")),
        "keras.layers.Lambda",
    ),
    KerasHostile(
        "lambda_by_its_source_module",
        "marker",
        _insert(lambda m: lambda_layer(m, module="keras.src.layers.core.lambda_layer")),
        "keras.layers.Lambda",
    ),
    KerasHostile(
        "lambda_without_module",
        "marker",
        _insert(lambda m: lambda_layer(m, module=None)),
        "keras.layers.Lambda",
    ),
    KerasHostile(
        "bytecode_as_dense_activation", "marker", _slot("activation", bytecode), "__lambda__"
    ),
    KerasHostile(
        "bytecode_in_a_layer_inside_a_layer", "marker", _timedistributed_dense, "__lambda__", "td"
    ),
    KerasHostile(
        "lambda_layer_inside_a_layer",
        "marker",
        _timedistributed_lambda,
        "keras.layers.Lambda",
        "td",
    ),
    # Keras' own initializer/constraint/regularizer lookups refuse bytecode; we refuse it anyway
    KerasHostile(
        "bytecode_as_initializer", None, _slot("kernel_initializer", bytecode), "__lambda__"
    ),
    KerasHostile(
        "bytecode_as_constraint", None, _slot("kernel_constraint", bytecode), "__lambda__"
    ),
    KerasHostile(
        "bytecode_as_regularizer", None, _slot("kernel_regularizer", bytecode), "__lambda__"
    ),
    KerasHostile(
        "vocabulary_read_from_a_file", "canary", _vocabulary, "keras.layers.StringLookup.vocabulary"
    ),
    KerasHostile(
        "get_file_as_activation",
        None,
        _slot("activation", _function("keras.utils", "get_file")),
        "keras.utils.get_file",
    ),
    KerasHostile(
        "get_file_by_source_module",
        None,
        _slot("activation", _function("keras.src.utils.file_utils", "get_file")),
        "keras.src.utils.file_utils.get_file",
    ),
    KerasHostile(
        "safe_mode_switch_as_activation",
        None,
        _slot("activation", _function("keras.config", "enable_unsafe_deserialization")),
        "keras.config.enable_unsafe_deserialization",
    ),
    KerasHostile(
        "resolver_as_activation",
        None,
        _slot("activation", _function("keras.activations", "get")),
        "keras.activations.get",
    ),
    KerasHostile("torch_module_wrapper", None, _torch_wrapper, "keras.layers.TorchModuleWrapper"),
    KerasHostile(
        "custom_function",
        None,
        _slot("activation", _function("builtins", "print")),
        "builtins.print",
    ),
    KerasHostile(
        "resolver_found_through_builtins",
        None,
        _slot("activation", _function("builtins", "deserialize")),
        "keras.activations.deserialize",
    ),
]
IDS = [h.name for h in CORPUS]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real .keras files whose configs the hostile files edit: Input(3) -> Dense(2), and
    Input(1, 3) -> TimeDistributed(Dense(2))."""
    folder = tmp_path_factory.mktemp("base")
    models = {
        "dense": keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
        "td": keras.Sequential(
            [keras.Input((1, 3)), keras.layers.TimeDistributed(keras.layers.Dense(2))]
        ),
    }
    for name, model in models.items():
        model.save(folder / f"{name}.keras")
    return {name: folder / f"{name}.keras" for name in models}


@pytest.fixture(scope="module")
def base(bases: dict[str, Path]) -> Path:
    return bases["dense"]


def build(bases: dict[str, Path], folder: Path, hostile: KerasHostile) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path, marker, canary = folder / "model.keras", folder / "marker", folder / "canary.txt"
    canary.write_text(f"{CANARY}\n")
    edit_keras(bases[hostile.base], path, lambda config: hostile.edit(config, marker, canary))
    return path, marker, canary


NAIVE = """
import sys, warnings, numpy as np
warnings.simplefilter("ignore")
import keras
for path in sys.argv[1:]:
    try:
        model = keras.saving.load_model(path, safe_mode=False)
        for layer in model.layers:
            if hasattr(layer, "get_vocabulary"):
                print(path, "VOCAB", layer.get_vocabulary())
        shape = [d or 1 for d in model.inputs[0].shape]
        x = np.array([["a"]]) if "string" in str(model.inputs[0].dtype) else np.zeros(shape, np.float32)
        model.predict(x, verbose=0)
    except Exception as e:
        print(path, "ERROR", type(e).__name__, str(e)[:200])
"""


def naive(paths: list[Path]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", NAIVE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_payload_fires_under_a_naive_keras_load(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    """Proof the corpus is real: keras.saving.load_model(safe_mode=False) + predict in a fresh
    process runs each bytecode payload or reads the canary."""
    built = {h.name: build(bases, tmp_path / h.name, h) for h in CORPUS if h.naive}
    out = naive([p for p, _, _ in built.values()])
    for h in CORPUS:
        if h.naive == "marker":
            assert built[h.name][1].exists(), f"{h.name} did not fire:\n{out}"
        elif h.naive == "canary":
            assert CANARY in out, f"{h.name} did not read the canary:\n{out}"


@pytest.mark.parametrize("hostile", quick_sample(CORPUS, every=4), ids=IDS)
def test_every_entry_point_refuses(
    bases: dict[str, Path], tmp_path: Path, hostile: KerasHostile
) -> None:
    """load, predict(path), convert, serve start-up and a harmless trust list refuse; scan is
    unsafe and names the object; inspect reports code; nothing fires, no canary leaks."""
    path, marker, _ = build(bases, tmp_path, hostile)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and hostile.subject in report.untrusted, report
    info = ms.inspect(path)
    assert info.executes_code and hostile.subject in info.globals
    calls: list[Callable[[], Any]] = [
        lambda: ms.load(path),
        lambda: ms.predict(path, X),
        lambda: ms.convert(path, tmp_path / "out.keras"),
        lambda: ms.load(path, trust=["keras.layers.Dense"]),
    ]
    if _has_starlette():
        from modelstore.serve import create_app

        calls.append(lambda: create_app(str(path)))
    for call in calls:
        with pytest.raises(ms.UnsafeModelError) as e:
            call()
        assert str(path) in str(e.value) and CANARY not in str(e.value)
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "out.keras").exists()


def _has_starlette() -> bool:
    import importlib.util

    return importlib.util.find_spec("starlette") is not None


@pytest.mark.slow
def test_cli_refuses_every_hostile_file(bases: dict[str, Path], tmp_path: Path) -> None:
    """modelstore scan as a subprocess, then inspect / predict of each file (one child runs
    them all, each as ``python -m modelstore`` would): unsafe, code reported, refused, no marker."""
    built = [(h, *build(bases, tmp_path / h.name, h)) for h in CORPUS]
    x = tmp_path / "x.npy"
    np.save(x, X)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    scan = subprocess.run(
        [sys.executable, "-m", "modelstore", "scan", *[str(p) for _, p, _, _ in built], "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert scan.returncode == 1 and {r["verdict"] for r in json.loads(scan.stdout)} == {"unsafe"}
    commands = []
    for _, path, _, _ in built:
        commands += [["inspect", str(path), "--json"], ["predict", str(path), "--input", str(x)]]
    results = cli_batch.run(commands, env=env)
    for (h, _, marker, _), info, pred in zip(built, results[::2], results[1::2]):
        assert info.returncode == 0 and json.loads(info.stdout)["executes_code"] is True, h.name
        assert (
            pred.returncode != 0 and "Traceback" not in pred.stderr and CANARY not in pred.stderr
        ), h.name
        assert not marker.exists(), h.name


# -- trust lists widen exactly what they name -------------------------------------------------


def _lambda_plus(
    base: Path, tmp_path: Path, extra: Callable[[Path], Any]
) -> tuple[Path, Path, Path]:
    """A Lambda layer (marker a) plus a second payload in a Dense activation (marker b)."""
    path, a, b = tmp_path / "m.keras", tmp_path / "a", tmp_path / "b"

    def edit(config: dict[str, Any]) -> None:
        config["config"]["layers"].insert(1, lambda_layer(a))
        dense(config)["config"]["activation"] = extra(b)

    edit_keras(base, path, edit)
    return path, a, b


def test_trusting_lambda_does_not_trust_other_bytecode(base: Path, tmp_path: Path) -> None:
    """trust=['keras.layers.Lambda']: a second, unlisted bytecode payload is still refused."""
    path, a, b = _lambda_plus(base, tmp_path, bytecode)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path, trust=["keras.layers.Lambda"])
    assert e.value.untrusted == ["__lambda__"]
    with pytest.raises(ms.UnsafeModelError):
        ms.predict(path, X)
    assert not a.exists() and not b.exists()
    model = ms.load(path, trust=["keras.layers.Lambda", "__lambda__"])  # both named: both allowed
    ms.predict(model, X)
    assert a.exists() and b.exists()


def test_trusting_lambda_does_not_trust_a_custom_function(base: Path, tmp_path: Path) -> None:
    """trust=['keras.layers.Lambda'] with an unlisted custom function in the same file: refused."""
    path, a, _ = _lambda_plus(base, tmp_path, _function("mypkg.acts", "steal"))
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path, trust=["keras.layers.Lambda"])
    assert e.value.untrusted == ["mypkg.acts.steal"]
    assert not a.exists()


def test_trusting_lambda_loads_only_the_lambda(base: Path, tmp_path: Path) -> None:
    """With only a Lambda layer in the file, trust=['keras.layers.Lambda'] runs it."""
    path, a = tmp_path / "m.keras", tmp_path / "a"
    edit_keras(base, path, lambda config: config["config"]["layers"].insert(1, lambda_layer(a)))
    ms.predict(ms.load(path, trust=["keras.layers.Lambda"]), X)
    assert a.exists()


def test_bytecode_under_an_unknown_spelling_is_its_own_finding(base: Path, tmp_path: Path) -> None:
    """A Lambda spelled through a re-exporting module is refused as an unknown name, and its
    bytecode separately: trusting the spelling alone does not let the bytecode run."""
    path, a = tmp_path / "m.keras", tmp_path / "a"
    edit_keras(
        base,
        path,
        lambda config: config["config"]["layers"].insert(
            1, lambda_layer(a, module="keras.src.layers", class_name="Lambda")
        ),
    )
    assert sorted(ms.scan(path).untrusted) == ["__lambda__", "keras.src.layers.Lambda"]
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path, trust=["keras.src.layers.Lambda"])
    assert e.value.untrusted == ["__lambda__"]
    assert not a.exists()


def test_safe_mode_is_pinned_for_the_load() -> None:
    """A process-wide enable_unsafe_deserialization() does not turn safe mode off for our load."""
    from keras.src.saving import serialization_lib

    before = serialization_lib.in_safe_mode()
    keras.config.enable_unsafe_deserialization()
    try:
        with keras_._pinned_safe_mode(True):
            assert serialization_lib.in_safe_mode() is True
    finally:
        serialization_lib.global_state.set_global_attribute("safe_mode_saving", before)


def test_keras_version_floor() -> None:
    """The gated path needs Keras >= 3.13.2 and says how to upgrade."""
    keras_._require_keras(Path("m.keras"), "3.13.2")
    keras_._require_keras(Path("m.keras"), "3.15.1")
    with pytest.raises(ms.MissingDependencyError, match=r"keras>=3\.13\.2"):
        keras_._require_keras(Path("m.keras"), "3.13.1")
    with pytest.raises(ms.MissingDependencyError):
        keras_._require_keras(Path("m.keras"), "3.9.0rc1")


# -- the allow-list: generated from Keras, resolved as Keras resolves ---------------------------


def test_allow_list_matches_the_installed_keras() -> None:
    """kerasnames.py is exactly what the generator makes from the installed Keras (regenerate
    with ``python -m modelstore.security._kerasgen`` after a Keras upgrade and review the diff)."""
    from modelstore.security import _kerasgen

    if keras.__version__ != kerasnames.KERAS_VERSION:
        pytest.skip(f"the list was generated from Keras {kerasnames.KERAS_VERSION}")
    fresh = _kerasgen.render(_kerasgen.collect())
    assert fresh == Path(kerasnames.__file__).read_text(), "Keras changed: regenerate kerasnames.py"


def test_spellings_resolve_as_keras_resolves() -> None:
    """Every spelling the audit knows resolves, in Keras itself, to the object the audit says."""
    from keras.src import api_export
    from keras.src.saving import serialization_lib

    allowed, aliases = kerasaudit._tables()[:2]
    spellings = sorted(set(aliases) | allowed)
    for spelling in spellings:
        module, name = spelling.rsplit(".", 1)
        config = {"module": module, "class_name": name, "config": {}, "registered_name": None}
        try:
            obj = serialization_lib._retrieve_class_or_fn(name, None, module, "class", config)
        except (TypeError, ValueError):
            continue  # Keras cannot reach it this way: the audit's entry is merely unused
        want = kerasaudit.canonical(spelling)
        got = api_export.get_name_from_symbol(obj) or f"{obj.__module__}.{obj.__qualname__}"
        assert got == want, spelling


def test_allow_list_is_exact_names_not_prefixes() -> None:
    """Allowed names are matched whole: near spellings and utilities are refused."""
    allowed = kerasaudit._tables()[0]
    assert "keras.layers.Dense" in allowed and "keras.activations.relu" in allowed
    for name in (
        "keras.layers.Dense.x",
        "keras.layersX.Dense",
        "keras.layers",
        "keras.utils.get_file",
        "keras.saving.load_model",
        "keras.config.enable_unsafe_deserialization",
        "keras.layers.Lambda",
        "keras.activations.get",
        "keras.layers.deserialize",
        "keras.layers.TFSMLayer",
    ):
        assert name not in allowed, name
    assert set(kerasnames.GROUPS) == set(kerasnames.ALLOWED_BY_GROUP)  # a reason for every group


@pytest.mark.slow
def test_benign_models_audit_clean(tmp_path: Path) -> None:
    """Functional models with ops, schedules, metrics, regularisers and nested layers audit clean."""
    inp = keras.Input((4,))
    h = keras.layers.Dense(
        3,
        activation="gelu",
        kernel_regularizer="l2",
        kernel_constraint=keras.constraints.MaxNorm(2),
    )(inp)
    h = keras.ops.add(keras.ops.sum(h, axis=-1, keepdims=True), h)
    seq = keras.layers.Reshape((3, 1))(h)
    out = keras.layers.Bidirectional(keras.layers.LSTM(2))(seq)
    model = keras.Model(inp, out)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="mse", metrics=["mae", keras.metrics.AUC()]
    )
    for name in ("f.keras", "f.h5"):
        ms.save(model, tmp_path / name)
        assert ms.scan(tmp_path / name).verdict == "safe", ms.scan(tmp_path / name)
    np.testing.assert_allclose(
        ms.predict(ms.load(tmp_path / "f.keras"), np.ones((2, 4), np.float32)),
        model.predict(np.ones((2, 4), np.float32), verbose=0),
        rtol=1e-5,
    )


# -- legacy H5 configs --------------------------------------------------------------------------


def _h5_with(base_h5: Path, path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    import shutil

    shutil.copy(base_h5, path)
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
        if "modelstore" in f.attrs:
            del f.attrs["modelstore"]


@pytest.mark.slow
def test_legacy_h5_lambda_fires_naively_and_is_refused(tmp_path: Path) -> None:
    """An .h5 model_config with a Keras 2 style Lambda ([code, defaults, closure]) and with
    bytecode as an activation: a naive load fires both; modelstore refuses both."""
    base_h5 = tmp_path / "base.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(base_h5)
    lam, act = tmp_path / "lam.h5", tmp_path / "act.h5"
    m1, m2 = tmp_path / "m1", tmp_path / "m2"

    def legacy_lambda(config: dict[str, Any]) -> None:
        node = {
            "class_name": "Lambda",
            "config": {
                "name": "lam",
                "function": [code_of(m1), None, None],
                "function_type": "lambda",
                "arguments": {},
            },
        }
        config["config"]["layers"].insert(1, node)

    _h5_with(base_h5, lam, legacy_lambda)
    _h5_with(base_h5, act, lambda c: dense(c)["config"].__setitem__("activation", bytecode(m2)))
    out = naive([lam, act])
    assert m1.exists() and m2.exists(), out
    m1.unlink()
    m2.unlink()
    for path, subject in ((lam, "keras.layers.Lambda"), (act, "__lambda__")):
        assert subject in ms.scan(path).untrusted
        for call in (lambda: ms.load(path), lambda: ms.predict(path, X)):
            with pytest.raises(ms.UnsafeModelError):
                call()
    assert not m1.exists() and not m2.exists()


def test_training_config_of_h5_is_audited(tmp_path: Path) -> None:
    """An .h5 training_config naming a non-modelling function (as a loss) is refused."""
    path = tmp_path / "m.h5"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.save(path)
    with h5py.File(path, "a") as f:
        training = json.loads(f.attrs["training_config"])
        training["loss"] = {
            "module": "keras.utils",
            "class_name": "function",
            "config": "get_file",
            "registered_name": "get_file",
        }
        f.attrs["training_config"] = json.dumps(training)
    assert "keras.utils.get_file" in ms.scan(path).untrusted
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path, verify=False)

"""Red team (finding F): the size checks compared element counts whatever the dtype, so a layer
declared ``float64`` over ``uint8`` datasets made Keras allocate 8 bytes for each byte the file
stores. The config check now counts a layer's weights at its dtype's width, and the load's
check build matches each variable with a stored dataset of its element count and at least its
width. The hostile file loads in plain Keras (and allocates the wide variables) first."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.security import kerasbuild, kerasquant, kerassize  # noqa: E402

L = keras.layers
FLOAT64 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"}}
GPTQ_MAP = {
    "class_name": "DTypePolicyMap",
    "config": {"policy_map": {"d": "gptq/8/1_from_float32"}},
}


def _widened(tmp_path: Path, n: int) -> Path:
    """A Dense(n) over n inputs, declared float64, its datasets rewritten as uint8 zeros."""
    x = keras.Input((n,))
    keras.Model(x, L.Dense(n, name="wide")(x)).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    node = next(n for n in config["config"]["layers"] if n["class_name"] == "Dense")
    node["config"]["dtype"] = {**FLOAT64, "registered_name": None}
    members["config.json"] = json.dumps(config).encode()
    out = io.BytesIO()
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as src, h5py.File(out, "w") as dst:

        def copy(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                dst.create_dataset(name, data=np.zeros(obj.shape, "uint8"))
            else:
                dst.require_group(name)

        src.visititems(copy)
    members["model.weights.h5"] = out.getvalue()
    path = tmp_path / "widened.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_float64_layer_over_uint8_datasets_is_refused(tmp_path: Path) -> None:
    path = _widened(tmp_path, 1024)
    plain = keras.saving.load_model(path)  # fires: 8 bytes allocated per stored byte
    kernel = next(w for w in plain.weights if w.path.endswith("kernel"))
    assert (kernel.dtype, tuple(kernel.shape)) == ("float64", (1024, 1024))
    report = ms.scan(path)
    assert report.verdict == "unsafe", report
    assert "'wide' (Dense, units=1024) built for the input [None, 1024]" in str(report)
    with pytest.raises(ms.UnsafeModelError, match="wide"):
        ms.load(path)


def test_the_check_build_matches_widths() -> None:
    """Behind the config check: a variable must find a stored dataset of its element count
    at least as wide; the total is counted in bytes."""
    x = keras.Input((512,))
    model = keras.Model(x, L.Dense(512, name="wide", dtype="float64")(x))
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    declared = kerasbuild.declared_by(config, False)
    assert (
        "Dense 'wide', variable 'kernel'",
        (512, 512),
        512 * 512,
        kerasbuild.STORED,
        8,
    ) in declared
    kerasbuild.match(declared, [(512 * 512, 8), (512, 8)], "the config")
    with pytest.raises(kerassize.SizeError, match="144 elements of 8 bytes.*no weight of that"):
        kerasbuild.match(declared, [(512 * 512, 1), (512, 8)], "the config")


@pytest.mark.parametrize(
    ("dtype", "eighths"),
    [
        ("float64", 64),
        ("bfloat16", 16),
        ("mixed_float16", 32),
        (None, 32),
        (FLOAT64, 64),
        ("int8_from_float32", 8),
        ("float8_from_float64", 64),  # float8 keeps its kernel at the source dtype
        ({"class_name": "Int4DTypePolicy", "config": {"mode": "int4/128", "source_name": "x"}}, 4),
        ({"class_name": "DTypePolicyMap", "config": {"default_policy": "float64"}}, 64),
        # GPTQ packs two 4-bit kernel elements in a byte, other widths one (no source_name:
        # Keras takes the global policy's); AWQ is 4-bit only
        ({"class_name": "GPTQDTypePolicy", "config": {"mode": "gptq/4/128"}}, 4),
        ({"class_name": "GPTQDTypePolicy", "config": {"mode": "gptq/3/1"}}, 8),
        ("awq/4/128_from_float32", 4),
        (GPTQ_MAP, 8),
        ("gptq/4/128", 1),  # no "_from_": Keras refuses it
    ],
)
def test_a_layers_width_is_its_variables(dtype: Any, eighths: int) -> None:
    """Eighths of a byte per weight, at least (red team, pass 6: the quantised policies'
    discount is no larger than the mode's, and a policy map's is its policies'). The
    scales and zero points GPTQ, AWQ and int4 add per group are charged on top
    (``test_keras_quantised.py``)."""
    assert kerasquant.width({"dtype": dtype}) == eighths


@pytest.mark.slow
def test_quantised_kernels_count_as_packed(tmp_path: Path) -> None:
    """int4 stores half a kernel's elements (here 8 Mi int8 for 16 Mi weights, beyond the
    slack): a quantised model still scans and loads."""
    x = keras.Input((4096,))
    model = keras.Model(x, L.Dense(4096)(x))
    with warnings.catch_warnings():  # "InputLayer does not have a quantize method"
        warnings.simplefilter("ignore", UserWarning)
        model.quantize("int4")
    path = tmp_path / "q.keras"
    model.save(path)
    assert ms.scan(path).verdict == "safe"
    got = ms.load(path)
    want = np.ones((2, 4096), "float32")
    np.testing.assert_allclose(got.predict_on_batch(want), model.predict_on_batch(want))


def test_unreached_layers_in_both_node_formats() -> None:
    """The layers no output depends on, by Keras 3's ``keras_history`` and by Keras 2's
    ``[name, node, tensor, kwargs]`` references (red team, pass 7)."""
    from modelstore.security.kerasgraph import unreached_layers

    def history(name: str) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}

    new = [
        {"name": "x", "inbound_nodes": []},
        {"name": "d", "inbound_nodes": [{"args": [history("x")], "kwargs": {}}]},
        {"name": "ghost", "inbound_nodes": [{"args": [history("x")], "kwargs": {}}]},
    ]
    old = [
        {"name": "x", "inbound_nodes": []},
        {"name": "d", "inbound_nodes": [[["x", 0, 0, {}]]]},
        {"name": "ghost", "inbound_nodes": [[["x", 0, 0, {}]]]},
    ]
    for layers in (new, old):
        for outputs in ([["d", 0, 0]], ["d", 0, 0]):
            found = unreached_layers({"layers": layers, "output_layers": outputs})
            assert found == {id(layers[2])}, (layers, outputs)
    assert unreached_layers({"layers": new}) == set()  # not a Functional config


def test_unreached_layers_follow_nodes_as_keras_does() -> None:
    """Red team, pass 8: outputs given as a dict, a reference under a key Keras never reads,
    a shared layer whose used node does not take the ghost, and a name listed twice (Keras
    builds both, keeps the last) each hid a layer no output depends on."""
    from modelstore.security.kerasgraph import unreached_layers

    def tensor(name: str, node: int = 0) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, 0]}}

    def call(*names: str) -> dict[str, Any]:
        return {"args": [tensor(n) for n in names], "kwargs": {}}

    x = {"name": "x", "inbound_nodes": []}
    ghost = {"name": "ghost", "inbound_nodes": [call("x")]}
    gn = {"name": "gn", "inbound_nodes": [{**call("x"), "junk": ["ghost", 0, 0]}]}
    layers = [x, ghost, gn]
    assert unreached_layers({"layers": layers, "output_layers": {"y": ["gn", 0, 0]}}) == {id(ghost)}
    act = {"name": "act", "inbound_nodes": [call("ghost"), call("gn")]}
    shared = {"layers": [*layers, act], "output_layers": [["act", 1, 0]]}
    assert unreached_layers(shared) == {id(ghost)}
    shared["output_layers"] = [["act", 0, 0]]  # the node that takes the ghost: reached
    assert unreached_layers(shared) == {id(gn)}
    twin = {"name": "gn", "inbound_nodes": {}}
    found = unreached_layers({"layers": [twin, x, gn], "output_layers": [["gn", 0, 0]]})
    assert found == {id(twin), id(gn), id(x)}  # (the input layer is never a finding)

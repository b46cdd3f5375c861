"""Keras models with several named inputs and outputs: predict keeps the model's structure
(dict or list), takes dict inputs by name, explains wrong inputs, and serve answers JSON objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import modelstore as ms  # noqa: E402

RNG = np.random.default_rng(0)
A = RNG.random((6, 3), dtype=np.float32)
B = RNG.random((6, 2), dtype=np.float32)


def two_by_two(as_dict: bool) -> Any:
    """Inputs a (3) and b (2); outputs cls (4-way softmax) and reg (1 value)."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = keras.layers.Concatenate()([a, b])
    cls = keras.layers.Dense(4, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    if as_dict:
        return keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    return keras.Model([a, b], [cls, reg])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("multio")
    out = {}
    for kind in ("dict", "list"):
        out[kind] = folder / f"{kind}.keras"
        two_by_two(kind == "dict").save(out[kind])  # written by Keras itself
    return out


def test_dict_outputs_are_a_dict_of_arrays(saved: dict[str, Path]) -> None:
    """A dict-output model gives {name: array}, equal to Keras' own predict."""
    model = ms.load(saved["dict"])
    want = model.predict({"a": A, "b": B}, verbose=0)
    got = ms.predict(model, {"a": A, "b": B.astype(np.float64)})
    assert isinstance(got, dict) and list(got) == ["cls", "reg"]
    for k in want:
        assert isinstance(got[k], np.ndarray)
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
    got = ms.predict(model, [A, B])  # a list in input order works too
    np.testing.assert_allclose(got["reg"], want["reg"], rtol=1e-6)


def test_list_outputs_are_a_list_of_arrays(saved: dict[str, Path]) -> None:
    """A list-output model gives a list of arrays; tuple, list or dict inputs."""
    model = ms.load(saved["list"])
    want = model.predict([A, B], verbose=0)
    for x in ((A, B), [A, B], {"b": B, "a": A}):
        got = ms.predict(model, x, batch_size=4)
        assert isinstance(got, list) and len(got) == 2
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)


def test_proba_and_label_per_output(saved: dict[str, Path]) -> None:
    """proba/label apply to each output with its own final activation."""
    model = ms.load(saved["dict"])
    proba = ms.predict(model, {"a": A, "b": B}, output="proba")
    np.testing.assert_allclose(proba["cls"].sum(axis=1), 1, rtol=1e-5)
    assert proba["reg"].shape == (6, 2)  # one column: binary [1 - p, p]
    labels = ms.predict(model, {"a": A, "b": B}, output="label")
    assert labels["cls"] == proba["cls"].argmax(axis=1).tolist()


@pytest.mark.parametrize(
    "bad",
    [
        {"a": A},  # missing b
        {"a": A, "b": B, "c": B},  # unknown c
        A,  # one array for two inputs
        [A],  # too few in a list
    ],
)
def test_wrong_inputs_name_the_expected(saved: dict[str, Path], bad: Any) -> None:
    """A wrong set of inputs is an ArgumentError naming the inputs and their order."""
    model = ms.load(saved["dict"])
    with pytest.raises(ms.ArgumentError, match=r"in this order: \['a', 'b'\]"):
        ms.predict(model, bad)


def test_wrong_shape_names_the_inputs(saved: dict[str, Path]) -> None:
    """A shape Keras refuses is an ArgumentError that also lists the inputs."""
    with pytest.raises(ms.ArgumentError, match=r"\['a', 'b'\]"):
        ms.predict(ms.load(saved["list"]), {"a": B, "b": A})


def test_serve_answers_json_objects(saved: dict[str, Path]) -> None:
    """serve: named inputs in, a JSON object of named outputs (or a list) out."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from modelstore.serve import create_app

    body = {"inputs": {"a": A.tolist(), "b": B.tolist()}}
    with TestClient(create_app(str(saved["dict"]))) as client:
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]
        assert set(out) == {"cls", "reg"} and np.asarray(out["cls"]).shape == (6, 4)
        r = client.post("/predict", json={**body, "output": "label"})
        assert r.status_code == 200 and len(r.json()["outputs"]["cls"]) == 6
        r = client.post("/predict", json={"inputs": {"a": A.tolist()}})
        assert r.status_code == 422 and "['a', 'b']" in r.json()["error"]
    with TestClient(create_app(str(saved["list"]))) as client:
        r = client.post("/predict", json=body)
        assert r.status_code == 200 and [np.asarray(o).shape for o in r.json()["outputs"]] == [
            (6, 4),
            (6, 1),
        ]

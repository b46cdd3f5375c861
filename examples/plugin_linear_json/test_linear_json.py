"""The example plugin passes modelstore's backend contract suite and becomes the default for
the objects it saves, using public names only (run: ``pytest examples/plugin_linear_json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from linear_json import LinearJsonBackend, dump, load_json

import modelstore as ms
from modelstore.testing import BackendContract


@pytest.fixture(autouse=True, scope="module")
def registered() -> Any:
    ms.register(LinearJsonBackend, clobber=True)
    yield


def _data() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


class TestLinearJson(BackendContract):
    backend_name = "linearjson"
    suffix = ".linear.json"
    backend_module = "linear_json"
    framework_modules = ("sklearn",)

    def make_model(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        x, y = _data()
        return LogisticRegression(max_iter=500).fit(x, y)

    def make_input(self) -> Any:
        return _data()[0][:20]

    def native_save(self, model: Any, path: Path) -> None:
        dump(model, path)

    def native_load(self, path: Path) -> Any:
        return load_json(path)

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        return loaded.predict(x)

    def set_recorded_class(self, path: Path, class_path: str) -> None:
        doc = json.loads(path.read_text())
        doc["modelstore"]["model_class"] = class_path
        path.write_text(json.dumps(doc))


def test_priority_makes_it_the_default_for_its_objects(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    x, y = _data()
    ridge = Ridge().fit(x, y)
    info = ms.save(ridge, tmp_path / "model")  # no suffix: the object decides, by priority
    assert info.format == "linearjson"
    assert ms.save(ridge, tmp_path / "model.joblib").format == "sklearn"  # a suffix still decides
    back = ms.load(tmp_path / "model")
    np.testing.assert_array_equal(ms.predict(back, x), ridge.predict(x))


def test_unknown_options_are_refused_with_the_valid_names(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    x, y = _data()
    with pytest.raises(ms.ArgumentError, match="indent="):
        ms.save(Ridge().fit(x, y), tmp_path / "m.linear.json", compress=3)
    ms.save(Ridge().fit(x, y), tmp_path / "m.linear.json", indent=2)
    assert "\n  " in (tmp_path / "m.linear.json").read_text()


def test_labels_travel_with_the_loaded_model(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    ms.save(
        LogisticRegression(max_iter=500).fit(x, y),
        tmp_path / "iris.linear.json",
        labels=["setosa", "versicolor", "virginica"],
    )
    model = ms.load(tmp_path / "iris.linear.json")
    assert ms.predict(model, x[:1], output="label") == ["setosa"]


def test_the_plugin_uses_public_names_only() -> None:
    import ast

    tree = ast.parse(Path(__file__).with_name("linear_json.py").read_text())
    used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in used if m.split(".")[0] == "modelstore"}
    assert ours <= {"modelstore", "modelstore.backends", "modelstore.errors"}, ours

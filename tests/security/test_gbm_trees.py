"""Boosted trees whose structure crashes or hangs the native predictor (THREATS.md class 6).

XGBoost and LightGBM load a tree without checking it and walk it at prediction time: a child
index past the node arrays reads out of bounds (XGBoost: SIGSEGV), one that points back up the
tree loops forever (LightGBM). Each hostile file is first shown to crash or hang the naive
loader in a child process, then refused by every modelstore entry point, also in a child so
that a crash would show as a signal rather than a pass.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from modelstore.security import gbtrees
from modelstore.testing import run_python
from tests.hang import GO, run_or_hang

pytestmark = pytest.mark.slow  # children import xgboost / lightgbm

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

_NAIVE_XGB = (
    "import sys, numpy as np, xgboost; b = xgboost.Booster(); b.load_model(sys.argv[1]); "
    "x = xgboost.DMatrix((np.random.rand(256, 4) * 10).astype('float32')); "
    f"{GO}; b.predict(x)"
)
_NAIVE_LGB = (
    "import sys, numpy as np, lightgbm; b = lightgbm.Booster(model_file=sys.argv[1]); "
    f"x = np.random.rand(256, 4) * 10; {GO}; b.predict(x)"
)


@pytest.fixture(scope="module")
def trees() -> dict[str, Any]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return {
        "x": x,
        "xgb": xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y),
        "lgb": lgb.train(
            {"objective": "binary", "verbose": -1, "num_leaves": 4},
            lgb.Dataset(x, (y == 1).astype(int)),
            3,
        ),
    }


def _xgb_file(tmp_path: Path, trees: dict[str, Any], kind: str, suffix: str) -> Path:
    good = tmp_path / "good.json"
    trees["xgb"].save_model(good)
    doc = json.loads(good.read_text())
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    if kind == "child-out-of-range":
        tree["right_children"][0] = 1_000_000
    elif kind == "cycle":
        tree["left_children"][0] = 0
    elif kind == "feature-out-of-range":
        tree["split_indices"][0] = 1_000_000
    else:
        raise AssertionError(kind)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    if suffix == ".ubj":  # the same model as XGBoost's binary format, written by XGBoost
        b = xgb.Booster()
        b.load_model(str(path))
        b.save_model(tmp_path / "m.ubj")
        path = tmp_path / "m.ubj"
    return path


def _lgb_file(tmp_path: Path, trees: dict[str, Any], kind: str) -> Path:
    text = trees["lgb"].model_to_string()
    lines = text.split("\n")
    # the root's first inner child (always walked): left_child or right_child, token 0
    at = next(i for i, line in enumerate(lines) if re.match(r"(left|right)_child=[0-9]", line))
    key, _, values = lines[at].partition("=")
    tokens = values.split(" ")
    tokens[0] = {"child-out-of-range": "100000000", "cycle": "0"}[kind]
    lines[at] = key + "=" + " ".join(tokens)
    bad = "\n".join(lines)
    # keep LightGBM's tree_sizes header true, as a crafted file would
    head, _, rest = bad.partition("\nTree=")
    body, _, tail = ("Tree=" + rest).partition("end of trees")
    sizes = [len(("Tree=" + b).encode()) for b in body.split("Tree=") if b]
    head = re.sub(r"tree_sizes=.*", "tree_sizes=" + " ".join(map(str, sizes)), head)
    bad = head + "\n" + body + "end of trees" + tail
    assert bad != text
    path = tmp_path / "m.txt"
    path.write_text(bad)
    return path


def _naive(script: str, path: Path) -> str:
    proc = run_or_hang([sys.executable, "-c", script, str(path)])
    if proc is None:
        return "hang"
    return "crash" if proc.returncode < 0 else f"exit {proc.returncode}"


def _refused_everywhere(path: Path) -> None:
    proc = run_python(f"""
        import numpy as np, modelstore as ms
        x = np.random.rand(256, 4) * 10
        calls = (ms.load, ms.inspect, lambda p: ms.predict(p, x))
        for call in calls:
            try:
                call({str(path)!r})
            except ms.ModelstoreError as e:
                print("refused", type(e).__name__, str(e)[:300].replace(chr(10), " "))
            else:
                print("loaded")
    """)
    assert proc.returncode == 0, proc.stderr[-1000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused") for line in lines), proc.stdout
    assert str(path) in lines[0]


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
@pytest.mark.parametrize("kind", ["child-out-of-range", "cycle"])
def test_xgboost_tree_that_crashes_the_predictor(
    tmp_path: Path, trees: dict[str, Any], kind: str, suffix: str
) -> None:
    path = _xgb_file(tmp_path, trees, kind, suffix)
    assert _naive(_NAIVE_XGB, path) in ("crash", "hang")
    _refused_everywhere(path)


def test_xgboost_split_on_a_missing_feature(tmp_path: Path, trees: dict[str, Any]) -> None:
    path = _xgb_file(tmp_path, trees, "feature-out-of-range", ".json")
    with pytest.raises(gbtrees.TreeStructureError, match="feature 1000000"):
        ms.load(path)


@pytest.mark.parametrize("kind", ["child-out-of-range", "cycle"])
def test_lightgbm_tree_that_hangs_the_predictor(
    tmp_path: Path, trees: dict[str, Any], kind: str
) -> None:
    path = _lgb_file(tmp_path, trees, kind)
    assert _naive(_NAIVE_LGB, path) in ("crash", "hang")
    _refused_everywhere(path)


def test_checked_models_still_predict_the_same(tmp_path: Path, trees: dict[str, Any]) -> None:
    """The canonical text the child writes back is the same model, bit for bit in outputs."""
    x = trees["x"]
    trees["xgb"].save_model(tmp_path / "c.ubj")
    trees["lgb"].save_model(str(tmp_path / "l.txt"))
    np.testing.assert_array_equal(
        ms.predict(ms.load(tmp_path / "c.ubj"), x, output="proba"),
        trees["xgb"].predict_proba(x),
    )
    np.testing.assert_array_equal(ms.predict(tmp_path / "l.txt", x), trees["lgb"].predict(x))


def test_tree_checks_accept_real_models_of_every_kind(trees: dict[str, Any]) -> None:
    """dart, gblinear, multi-class, categorical and linear-leaf models pass the checks."""
    import pandas as pd

    x = trees["x"]
    y = (x[:, 0] > 5.8).astype(int)
    for params in ({"booster": "dart"}, {"booster": "gblinear"}, {"objective": "multi:softprob"}):
        target = np.arange(len(x)) % 3 if "multi" in str(params) else y
        booster = xgb.train(
            {**params, "num_class": 3} if "multi" in str(params) else params,
            xgb.DMatrix(x, target),
            3,
        )
        gbtrees.check_xgboost(json.loads(booster.save_raw("json")), "m")
    frame = pd.DataFrame({"a": x[:, 0], "c": pd.Categorical((x[:, 1] * 2).astype(int))})
    cat = xgb.XGBClassifier(n_estimators=3, enable_categorical=True, tree_method="hist")
    gbtrees.check_xgboost(json.loads(cat.fit(frame, y).get_booster().save_raw("json")), "m")
    for params, data in (
        ({"objective": "binary"}, lgb.Dataset(frame, y)),
        ({"objective": "regression", "linear_tree": True}, lgb.Dataset(x, x[:, 0])),
        ({"objective": "multiclass", "num_class": 3}, lgb.Dataset(x, np.arange(len(x)) % 3)),
        ({"objective": "regression", "min_data_in_leaf": 1000}, lgb.Dataset(x, x[:, 0])),
    ):
        booster = lgb.train({**params, "verbose": -1, "min_data_per_group": 5}, data, 3)
        gbtrees.check_lightgbm(booster.model_to_string(num_iteration=-1), "m")

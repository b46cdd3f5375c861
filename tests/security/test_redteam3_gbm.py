"""Red-team findings against the gradient-boosted tree checks (round 5; ``.pt2``:
test_redteam3.py).

Each hostile file is built from a model the library trained, first shown to misbehave under
the naive loader in a child process (a crash, or memory measured there), then refused by
modelstore. Large allocations happen only in children.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402

#: prints the child's own peak memory in KiB (VmHWM: ru_maxrss would include the parent's,
#: which Linux carries across exec)
PEAK = (
    "print('peak', next(line.split()[1] for line in open('/proc/self/status') "
    "if line.startswith('VmHWM')))\n"
)

# -- 6. XGBoost: sizes the file declares that XGBoost allocates -----------------------------


def _xgb_doc(categorical: bool) -> dict[str, Any]:
    import json

    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    if categorical:
        x = rng.integers(0, 5, size=(300, 2)).astype(float)
        data = xgb.DMatrix(x, x[:, 0] == 2, feature_types=["c", "c"], enable_categorical=True)
        params = {"max_depth": 2, "objective": "binary:logistic", "max_cat_to_onehot": 1}
    else:
        x = rng.normal(size=(200, 4))
        data = xgb.DMatrix(x, x[:, 0] > 0)
        params = {"max_depth": 2, "objective": "binary:logistic"}
    doc: dict[str, Any] = json.loads(xgb.train(params, data, 2).save_raw("json"))
    return doc


def huge_category(folder: Path, code: int = 400_000_000) -> Path:
    """One category code of 4e8 in each tree: XGBoost builds a bitset up to it on load."""
    import json

    doc = _xgb_doc(categorical=True)
    for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
        assert tree["categories"], tree
        tree["categories"][-1] = code
    path = folder / "category.json"
    path.write_text(json.dumps(doc))
    return path


def many_features(folder: Path, count: int = 100_000_000) -> Path:
    """``num_feature`` of 1e8 for a model of 4: XGBoost predicts 4-column rows anyway,
    with a buffer of the declared size per thread."""
    import json

    doc = _xgb_doc(categorical=False)
    doc["learner"]["learner_model_param"]["num_feature"] = str(count)
    path = folder / "features.json"
    path.write_text(json.dumps(doc))
    return path


def _naive_xgb(path: Path, columns: int, categorical: bool) -> int:
    """Peak RSS (KiB) of a child that loads ``path`` with XGBoost and predicts 3 rows."""
    types = f", feature_types={['c'] * columns}, enable_categorical=True" if categorical else ""
    script = (
        "import sys, numpy as np, xgboost as xgb\n"
        "b = xgb.Booster(); b.load_model(sys.argv[1])\n"
        f"b.predict(xgb.DMatrix(np.zeros((3, {columns})){types}))\n" + PEAK
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split("peak")[-1])


@pytest.mark.slow
def test_huge_category_code_allocates_under_xgboost(tmp_path: Path) -> None:
    path = huge_category(tmp_path)
    small = _naive_xgb(huge_category(tmp_path / "..", code=4), 2, True)
    assert path.stat().st_size < 4096
    assert _naive_xgb(path, 2, True) - small > 80_000  # ~100 MB of bitsets from 2 KB


@pytest.mark.slow
def test_huge_category_code_is_refused(tmp_path: Path) -> None:
    path = huge_category(tmp_path)
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.ModelstoreError) as e:
        ms.load(path)
    assert "2**24" in str(e.value)


def test_category_bitsets_are_bounded_in_total() -> None:
    """Codes below 2**24 each cost up to 2 MiB: many such splits are refused together."""
    from modelstore.security.gbtrees import TreeStructureError, check_xgboost

    def tree(code: int) -> dict[str, Any]:
        return {
            "tree_param": {"num_nodes": "3", "size_leaf_vector": "1"},
            "left_children": [1, -1, -1],
            "right_children": [2, -1, -1],
            "parents": [2147483647, 0, 0],
            "split_indices": [0, 0, 0],
            "split_type": [1, 0, 0],
            "default_left": [0, 0, 0],
            "base_weights": [0.0, 0.0, 0.0],
            "categories": [code],
            "categories_nodes": [0],
            "categories_segments": [0],
            "categories_sizes": [1],
        }

    def doc(count: int, code: int) -> dict[str, Any]:
        model = {
            "trees": [tree(code) for _ in range(count)],
            "gbtree_model_param": {"num_trees": str(count)},
            "tree_info": [0] * count,
            "iteration_indptr": list(range(count + 1)),
        }
        return {
            "learner": {
                "learner_model_param": {"num_feature": "1", "num_class": "0"},
                "gradient_booster": {"name": "gbtree", "model": model},
            }
        }

    check_xgboost(doc(8, (1 << 24) - 1), "ok.json")  # 16 MiB: a big but possible model
    with pytest.raises(TreeStructureError, match="MiB of category bitsets"):
        check_xgboost(doc(40, (1 << 24) - 1), "many.json")
    with pytest.raises(TreeStructureError, match="2\\*\\*24"):
        check_xgboost(doc(1, 1 << 24), "big.json")


@pytest.mark.slow
def test_declared_feature_count_allocates_under_xgboost(tmp_path: Path) -> None:
    small = _naive_xgb(many_features(tmp_path / "..", count=4), 4, False)
    assert _naive_xgb(many_features(tmp_path), 4, False) - small > 300_000  # 800 MB / thread


@pytest.mark.slow
def test_declared_feature_count_must_match_the_input(tmp_path: Path) -> None:
    path = many_features(tmp_path)
    with pytest.raises(ms.ArgumentError, match="100000000 features"):
        ms.predict(path, np.zeros((3, 4), np.float32))
    ok = many_features(tmp_path / "..", count=4)
    assert np.asarray(ms.predict(ok, np.zeros((3, 4), np.float32))).shape[0] == 3


# -- 7. scan of boosted trees said "safe" for files load refuses ---------------------------
@pytest.mark.slow
def test_scan_of_boosted_trees_is_as_strict_as_load(tmp_path: Path) -> None:
    """scan did not run the tree checks at all: a tree that crashes XGBoost's predictor or
    hangs LightGBM's was "safe" (THREATS.md: scan is never more lenient than load)."""
    from sklearn.datasets import load_iris

    from .test_gbm_trees import _lgb_file, _xgb_file

    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    x, y = load_iris(return_X_y=True)
    trees = {
        "xgb": xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y),
        "lgb": lgb.train(
            {"objective": "binary", "verbose": -1, "num_leaves": 4},
            lgb.Dataset(x, (y == 1).astype(int)),
            3,
        ),
    }
    (tmp_path / "x").mkdir()
    (tmp_path / "l").mkdir()
    for path in (
        _xgb_file(tmp_path / "x", trees, "child-out-of-range", ".json"),
        _lgb_file(tmp_path / "l", trees, "cycle"),
    ):
        report = ms.scan(path)
        assert report.verdict == "unsafe", report
        assert "reached twice" in str(report.findings) or "outside" in str(report.findings)
    good = tmp_path / "good.json"
    trees["xgb"].save_model(good)
    assert ms.scan(good).verdict == "safe"


# -- 8. the child that parses first had no memory bound ------------------------------------
@pytest.mark.slow
def test_the_parsing_child_is_memory_bounded(tmp_path: Path, monkeypatch: Any) -> None:
    """The child parses the file before any tree check: category codes of 2e9 make XGBoost
    allocate ~1 GB there from 2 KB (and any amount with more trees). Its data size is bounded
    (RLIMIT_DATA), so the parse fails and the file is refused; shown with a lower bound."""
    from modelstore.security import child

    path = huge_category(tmp_path, code=2_000_000_000)
    assert _naive_xgb(path, 2, True) > 900_000
    monkeypatch.setattr(child, "MEMORY", 600 << 20)
    with pytest.raises(ms.FormatError, match="bad_alloc|cannot read"):
        ms.load(path)


# -- 9. XGBoost multi-output trees ----------------------------------------------------------
def multi_output(folder: Path, leaf_row: int | None = None) -> Path:
    """A multi_output_tree model (XGBoost 3: a leaf's right_children entry is its row in
    leaf_weights); ``leaf_row`` rewrites the first leaf's row."""
    import json

    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 3))
    params = {"tree_method": "hist", "multi_strategy": "multi_output_tree"}
    doc = json.loads(xgb.train(params, xgb.DMatrix(x, y), 3).save_raw("json"))
    if leaf_row is not None:
        tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
        tree["right_children"][tree["left_children"].index(-1)] = leaf_row
    path = folder / f"multi-{leaf_row}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.slow
def test_multi_output_leaf_row_out_of_range_crashes_xgboost(tmp_path: Path) -> None:
    script = (
        "import sys, numpy as np, xgboost as xgb\n"
        "b = xgb.Booster(); b.load_model(sys.argv[1])\n"
        "b.predict(xgb.DMatrix(np.random.default_rng(1).normal(size=(256, 4))))\n"
    )
    path = multi_output(tmp_path, leaf_row=10**6)
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, timeout=120
    )
    assert out.returncode < 0, out


@pytest.mark.slow
def test_multi_output_trees_load_and_bad_leaf_rows_are_refused(tmp_path: Path) -> None:
    import json

    """The leaf check used to refuse every multi-output tree ("leaf has a right child");
    now real ones load and predict, and a leaf row outside leaf_weights is refused."""
    good = multi_output(tmp_path)
    assert ms.scan(good).verdict == "safe"
    assert np.asarray(ms.predict(good, np.zeros((5, 4)), output="raw")).shape == (5, 3)
    bad = multi_output(tmp_path, leaf_row=10**6)
    assert ms.scan(bad).verdict != "safe"  # XGBoost's own writer aborts in the child
    with pytest.raises(ms.ModelstoreError):
        ms.load(bad)
    from modelstore.security.gbtrees import TreeStructureError, check_xgboost

    with pytest.raises(TreeStructureError, match="leaf value row"):
        check_xgboost(json.loads(bad.read_text()), str(bad))


# -- 10. output widths the trees do not back -----------------------------------------------
def wide_lightgbm(folder: Path, classes: int = 1_000_000) -> Path:
    """``num_class`` of 1e6 over 3 binary trees: LightGBM predicts rows x 1e6 values (a
    MemoryError, not a ModelstoreError, escaped ``ms.predict`` at 1e8 and 1000 rows)."""
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    params = {"num_leaves": 4, "objective": "binary", "verbose": -1}
    text = lgb.train(params, lgb.Dataset(x, x[:, 0] > 0), 3).model_to_string()
    assert "num_class=1\n" in text
    path = folder / "wide.txt"
    path.write_text(text.replace("num_class=1\n", f"num_class={classes}\n"))
    return path


@pytest.mark.slow
def test_wide_lightgbm_output_under_lightgbm(tmp_path: Path) -> None:
    script = (
        "import sys, numpy as np, lightgbm\n"
        "b = lightgbm.Booster(model_file=sys.argv[1])\n"
        "print('shape', b.predict(np.zeros((3, 4))).shape)\n"
    )
    path = wide_lightgbm(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert "shape (3, 1000000)" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_output_widths_must_be_backed_by_trees(tmp_path: Path) -> None:
    import json

    from modelstore.security.gbtrees import TreeStructureError, check_xgboost

    path = wide_lightgbm(tmp_path)
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.ModelstoreError, match="num_class 1000000"):
        ms.predict(path, np.zeros((3, 4)))
    doc = _xgb_doc(categorical=False)
    check_xgboost(doc, "ok.json")
    doc["learner"]["learner_model_param"]["num_class"] = "100000"
    with pytest.raises(TreeStructureError, match="100000 outputs declared for 2 trees"):
        check_xgboost(json.loads(json.dumps(doc)), "wide.json")

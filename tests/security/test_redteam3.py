"""Red-team findings against the ``.pt2`` reader and the gradient-boosted tree checks (round 5).

Each test builds one hostile file from a benign one, first proves in a subprocess that it
misbehaves under the naive loader (``torch.export.load``, then ``.module()`` and one call),
then that modelstore refuses it from every entry point. Payloads are harmless: a marker file
in a temp folder, a canary file the test wrote, an allocation measured in a child process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402

from . import pt2_hostile as h  # noqa: E402


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


#: prints the child's own peak memory in KiB (VmHWM: ru_maxrss would include the parent's,
#: which Linux carries across exec)
PEAK = (
    "print('peak', next(line.split()[1] for line in open('/proc/self/status') "
    "if line.startswith('VmHWM')))\n"
)


def naive(path: Path, code: str = "") -> subprocess.CompletedProcess[str]:
    """``torch.export.load`` + ``.module()`` + one call, in a child; ``code`` runs after."""
    script = (
        "import sys, torch\n"
        "out = None\n"
        "try:\n"
        "    out = torch.export.load(sys.argv[1]).module()(torch.randn(3, 4))\n"
        "except Exception as e:\n"
        "    print('failed', type(e).__name__)\n" + code
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: Any) -> Path:
    return h.benign(tmp_path_factory.mktemp("rt3") / "benign.pt2")


# -- 1. torch's zip reader finds records ignoring case ------------------------------------
def case_folded_inputs(src: Path, dst: Path, marker: Path) -> Path:
    """``data/sample_inputs/model.pt`` replaced by ``data/sample_inputs/MODEL.pt`` holding a
    payload: modelstore looked the record up by its exact name, found none and checked
    nothing; miniz (torch's reader) folds case and torch.load-s it, retrying with
    ``weights_only=False``."""
    with zipfile.ZipFile(src) as zin:
        root = zin.namelist()[0].partition("/")[0]
        items = [(i.filename.partition("/")[2], zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w") as zout:
        for rel, data in items:
            if rel == "data/sample_inputs/model.pt":
                rel, data = "data/sample_inputs/MODEL.pt", h.torch_bytes(((h.Payload(marker),), {}))
            zout.writestr(f"{root}/{rel}", data)
    return dst


def case_twins(src: Path, dst: Path, marker: Path) -> Path:
    """Two programs whose names differ only in case: torch's reader cannot tell their
    records apart."""
    with zipfile.ZipFile(src) as zin:
        program = zin.read(next(n for n in zin.namelist() if n.endswith("models/model.json")))
    return h.rewrite(src, dst, add={"models/MODEL.json": program})


# -- 2. an empty raw record becomes torch.zeros(declared sizes) ----------------------------
ROWS = 50_000_000  # x 4 float32 = 800 MB from a file of a few KB


def empty_record(src: Path, dst: Path, marker: Path | None = None, rows: int = ROWS) -> Path:
    def edit(doc: dict[str, Any]) -> None:
        meta = doc["config"]["l.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": rows}, {"as_int": 4}]

    return h.rewrite(
        src,
        dst,
        change={"data/weights/weight_0": b""},
        edit_json={"data/weights/model_weights_config.json": edit},
    )


# -- 3. an operator passed as an argument is resolved and called ---------------------------
def operator_argument(src: Path, dst: Path, canary: Path, size: int) -> Path:
    """``wrap_with_set_grad_enabled(False, aten.from_file.default, canary, False, size,
    dtype=uint8)`` as the program's output: the allowed higher-order operator calls the
    operator argument, which the check did not look at, and predict returns the file."""

    def edit(doc: dict[str, Any]) -> None:
        g = doc["graph_module"]["graph"]

        def arg(kind: str, value: Any, name: str = "", k: int = 1) -> dict[str, Any]:
            return {"name": name, "arg": {kind: value}, "kind": k}

        g["nodes"].append(
            {
                "target": "torch.ops.higher_order.wrap_with_set_grad_enabled",
                "inputs": [
                    arg("as_bool", False),
                    arg("as_operator", "torch.ops.aten.from_file.default"),
                    arg("as_string", str(canary)),
                    arg("as_bool", False),
                    arg("as_int", size),
                    arg("as_scalar_type", 1, "dtype", 2),
                ],
                "outputs": [{"as_tensor": {"name": "evil"}}],
                "metadata": {},
                "is_hop_single_tensor_return": True,
                "name": "evil",
            }
        )
        meta = copy.deepcopy(g["tensor_values"]["relu"])
        meta.update(dtype=1, sizes=[{"as_int": size}], strides=[{"as_int": 1}])
        meta["requires_grad"] = False
        g["tensor_values"]["evil"] = meta
        g["outputs"] = [{"as_tensor": {"name": "evil"}}]
        spec = {"user_output": {"arg": {"as_tensor": {"name": "evil"}}}}
        doc["graph_module"]["signature"]["output_specs"] = [spec]

    return h.rewrite(src, dst, edit_json={"models/model.json": edit})


def refused_everywhere(path: Path) -> None:
    report = ms.scan(path)
    assert report.verdict == "unsafe", report
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert str(path) in str(e.value)
    with pytest.raises(ms.UnsafeModelError):
        ms.predict(path, np.zeros((3, 4), np.float32))
    try:
        info = ms.inspect(path)
    except ms.UnsafeModelError:
        pass
    else:
        assert info.executes_code and info.globals, info


@pytest.mark.slow
def test_case_folded_record_fires_under_torch(source: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    naive(case_folded_inputs(source, tmp_path / "case.pt2", marker))
    assert marker.exists()


def test_case_folded_record_is_checked(source: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = case_folded_inputs(source, tmp_path / "case.pt2", marker)
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "posix.system" in str(e.value)
    assert not marker.exists()


def test_names_differing_only_in_case_are_refused(source: Path, tmp_path: Path) -> None:
    path = case_twins(source, tmp_path / "twins.pt2", tmp_path / "marker")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "differ only in case" in str(e.value)


@pytest.mark.slow
def test_empty_record_allocates_under_torch(source: Path, tmp_path: Path) -> None:
    path = empty_record(source, tmp_path / "empty.pt2")
    assert path.stat().st_size < 64 << 10
    out = naive(
        path,
        PEAK,
    )
    peak_kib = int(out.stdout.split("peak")[-1])
    assert peak_kib > (ROWS * 4 * 4) >> 10, out.stdout  # the 800 MB of zeros were made


def test_empty_record_declaring_a_tensor_is_refused(source: Path, tmp_path: Path) -> None:
    path = empty_record(source, tmp_path / "empty.pt2")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "is empty" in str(e.value) and "weight_0" in str(e.value)


@pytest.mark.slow
def test_operator_argument_reads_a_file_under_torch(source: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"CANARY-SECRET")
    path = operator_argument(source, tmp_path / "read.pt2", canary, 13)
    out = naive(path, "print('got', bytes(out.tolist()))\n")
    assert "got b'CANARY-SECRET'" in out.stdout, out.stdout + out.stderr


def test_operator_argument_is_checked_as_a_target(source: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"CANARY-SECRET")
    path = operator_argument(source, tmp_path / "read.pt2", canary, 13)
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.predict(path, np.zeros((3, 4), np.float32))
    assert "from_file" in str(e.value)


# -- 4. aten operators that do not check their arguments -----------------------------------
def unchecked_view(src: Path, dst: Path, marker: Path | None = None) -> Path:
    """``aten._reshape_alias(relu, [10**6], [1000]).sum()``: a view nobody bounds-checks,
    read far outside a 12-byte storage (SIGSEGV when the program runs)."""

    def edit(doc: dict[str, Any]) -> None:
        g = doc["graph_module"]["graph"]

        def node(target: str, name: str, inputs: list[tuple[str, Any]]) -> dict[str, Any]:
            return {
                "target": target,
                "inputs": [{"name": k, "arg": v, "kind": 1} for k, v in inputs],
                "outputs": [{"as_tensor": {"name": name}}],
                "metadata": {},
                "is_hop_single_tensor_return": None,
                "name": name,
            }

        n = 10**6
        g["nodes"].append(
            node(
                "torch.ops.aten._reshape_alias.default",
                "evil",
                [
                    ("self", {"as_tensor": {"name": "relu"}}),
                    ("size", {"as_ints": [n]}),
                    ("stride", {"as_ints": [1000]}),
                ],
            )
        )
        g["nodes"].append(
            node("torch.ops.aten.sum.default", "total", [("self", {"as_tensor": {"name": "evil"}})])
        )
        for name, sizes, strides in (("evil", [n], [1000]), ("total", [], [])):
            meta = copy.deepcopy(g["tensor_values"]["relu"])
            meta.update(sizes=[{"as_int": d} for d in sizes])
            meta.update(strides=[{"as_int": d} for d in strides])
            g["tensor_values"][name] = meta
        g["outputs"] = [{"as_tensor": {"name": "total"}}]
        spec = {"user_output": {"arg": {"as_tensor": {"name": "total"}}}}
        doc["graph_module"]["signature"]["output_specs"] = [spec]

    return h.rewrite(src, dst, edit_json={"models/model.json": edit})


@pytest.mark.slow
def test_unchecked_view_crashes_torch(source: Path, tmp_path: Path) -> None:
    out = naive(unchecked_view(source, tmp_path / "alias.pt2"))
    assert out.returncode < 0, (out.returncode, out.stdout, out.stderr[-2000:])


def test_unchecked_view_is_refused(source: Path, tmp_path: Path) -> None:
    path = unchecked_view(source, tmp_path / "alias.pt2")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.predict(path, np.zeros((3, 4), np.float32))
    assert "_reshape_alias" in str(e.value)


SPARSE = (
    "torch.ops.aten.sparse_coo_tensor.indices_size(torch.tensor([[10**9]]), torch.ones(1), [3])"
)


@pytest.mark.slow
def test_sparse_constructor_crashes_torch() -> None:
    code = f"import torch\nprint({SPARSE}.to_dense())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert out.returncode < 0, out


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.sparse_coo_tensor.indices_size",
        "torch.ops.aten._sparse_coo_tensor_unsafe.default",
        "torch.ops.aten._sparse_csr_tensor_unsafe.default",
        "torch.ops.aten._reshape_alias_copy.default",
    ],
)
def test_unchecked_operators_are_refused(target: str) -> None:
    from modelstore.security.pt2graph import GraphCheck, check_target

    out = GraphCheck()
    check_target(target, out)
    assert out.problems and not out.problems[0][2], out.problems


# -- 5. a loop whose condition the file decides --------------------------------------------
class Loop(torch.nn.Module):
    def forward(self, x: Any) -> Any:
        from torch._higher_order_ops.while_loop import while_loop

        def cond(i: Any, x: Any) -> Any:
            return i < 3

        def body(i: Any, x: Any) -> Any:
            return i + 1, x + 1

        return while_loop(cond, body, (torch.tensor(0), x))[1]


def endless_loop(folder: Path) -> Path:
    """A ``while_loop`` torch.export wrote, its condition ``i < 3`` edited to ``i < 2**62``:
    ``predict`` never returns."""
    src = folder / "loop.pt2"
    torch.export.save(torch.export.export(Loop(), (torch.randn(3, 4),)), str(src))

    def edit(doc: dict[str, Any]) -> None:
        loops = [n for n in doc["graph_module"]["graph"]["nodes"] if "while_loop" in n["target"]]
        cond = loops[0]["inputs"][0]["arg"]["as_graph"]["graph"]["nodes"][0]
        assert cond["target"] == "torch.ops.aten.lt.Scalar", cond
        cond["inputs"][1]["arg"] = {"as_int": 2**62}

    return h.rewrite(src, folder / "endless.pt2", edit_json={"models/model.json": edit})


@pytest.mark.slow
def test_endless_loop_hangs_torch(tmp_path: Path) -> None:
    path = endless_loop(tmp_path)
    script = "import sys, torch\ntorch.export.load(sys.argv[1]).module()(torch.randn(3, 4))\n"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", script, str(path)], env=_env(), timeout=30)


def test_endless_loop_is_refused_unless_trusted_by_name(tmp_path: Path) -> None:
    path = endless_loop(tmp_path)
    refused_everywhere(path)
    name = "torch.ops.higher_order.while_loop"
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert e.value.untrusted == [name]
    assert ms.load(path, trust=[name]) is not None  # loading runs nothing; predict would


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

"""Decision trees checked together when the load ends (issue 19, eighth round).

A tree's sizes are checked at its ``BUILD`` (all ``Tree.__setstate__`` relies on); its node
table when the load ends, with every other tree of the file, a group of tables at a time
(:func:`check_sklearn_tree.check_trees`). These tests hold the batched check to a walk of
each table on its own, and show that a bad table anywhere in a forest, in any group, is
refused by ``ms.load`` (and loads silently with ``pickle``).
"""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # noqa: E402
from sklearn.tree._tree import Tree  # noqa: E402

from modelstore.security import check_sklearn_tree  # noqa: E402
from modelstore.security.check_sklearn_tree import (  # noqa: E402
    _depths_within,
    _nodes_in_order,
    _tables,
)


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        yield


def _order_ok(nodes: Any, n_features: int) -> bool:
    """The pointer half of :func:`_walk_ok` (what :func:`_nodes_in_order` checks)."""
    n = len(nodes)
    for i in range(n):
        left, right = int(nodes["left_child"][i]), int(nodes["right_child"][i])
        if left == -1 and right != -1:
            return False
        if left != -1 and not (
            i < left < n and i < right < n and 0 <= nodes["feature"][i] < n_features
        ):
            return False
    return True


def _walk_ok(nodes: Any, n_features: int, max_depth: int) -> bool:
    """One table on its own, a node at a time: children after their parent and inside the
    table, features in range, leaves without a right child, ``missing_go_to_left`` 0 or 1,
    every node but the root reached exactly once, none deeper than stated."""
    n = len(nodes)
    parents = [0] * n
    depth = [0] * n
    for i in range(n):
        left, right = int(nodes["left_child"][i]), int(nodes["right_child"][i])
        if nodes["missing_go_to_left"][i] > 1:
            return False
        if left == -1:
            if right != -1:
                return False
            continue
        if not (i < left < n and i < right < n and 0 <= nodes["feature"][i] < n_features):
            return False
        for c in (left, right):
            parents[c] += 1
            depth[c] = depth[i] + 1
    return parents[0] == 0 and all(p == 1 for p in parents[1:]) and max(depth) <= max_depth


def _batch_ok(tables: list[Any], widths: list[int], depths: list[int]) -> bool:
    nodes, lens, start, count = _tables(tables)
    return (
        _nodes_in_order(nodes, start, count, np.repeat(np.asarray(widths, np.uint64), lens))
        and bool((nodes["missing_go_to_left"] <= 1).all())
        and _depths_within(nodes, start, np.repeat(np.asarray(depths, np.int64), lens))
    )


@pytest.fixture(scope="module")
def fitted() -> list[tuple[Any, int, int]]:
    """(node table, feature count, stated depth) of trees of different sizes and builders,
    a one-node tree among them."""
    x, y = load_digits(return_X_y=True)
    out = []
    for leaves, seed in [(None, 0), (7, 1), (40, 2), (None, 3), (3, 4)]:
        t = DecisionTreeClassifier(max_leaf_nodes=leaves, random_state=seed).fit(x, y).tree_
        out.append((t.__getstate__()["nodes"].copy(), t.n_features, t.max_depth))
    one = DecisionTreeClassifier().fit(x[:5], np.zeros(5)).tree_
    out.append((one.__getstate__()["nodes"].copy(), one.n_features, one.max_depth))
    return out


_I64 = np.iinfo(np.int64)


def test_the_batched_check_agrees_with_each_table_walked_alone(
    fitted: list[tuple[Any, int, int]],
) -> None:
    """600 batches of two to five tables, one of them mutated around every boundary: pointers
    one past its own table (the next table's root, once they are end to end), into the table
    before, at itself, int64 extremes; features at the width; stated depths one short."""
    rng = np.random.default_rng(8)
    verdicts = {True: 0, False: 0}
    for _ in range(600):
        picks = [fitted[int(i)] for i in rng.integers(len(fitted), size=int(rng.integers(2, 6)))]
        tables = [p[0].copy() for p in picks]
        widths = [p[1] for p in picks]
        depths = [p[2] for p in picks]
        k = int(rng.integers(len(tables)))
        bad, n = tables[k], len(tables[k])
        for _ in range(int(rng.integers(1, 3))):
            field = str(rng.choice(["left_child", "right_child", "feature", "missing_go_to_left"]))
            i = int(rng.integers(n))
            pool = [-1, -2, 0, i, i + 1, n - 1, n, n + 1, -n, widths[k], widths[k] - 1]
            pool += [_I64.max, _I64.min, 2, 1]
            value = pool[int(rng.integers(len(pool)))]
            if field == "missing_go_to_left":
                value = int(value) & 0xFF
            bad[field][i] = value
        if rng.random() < 0.2:
            depths[k] = max(0, depths[k] - 1)
        want = all(_walk_ok(t, w, d) for t, w, d in zip(tables, widths, depths, strict=True))
        assert _batch_ok(tables, widths, depths) == want
        nodes, lens, start, count = _tables(tables)
        width = np.repeat(np.asarray(widths, np.uint64), lens)
        in_order = all(_order_ok(t, w) for t, w in zip(tables, widths, strict=True))
        assert _nodes_in_order(nodes, start, count, width) == in_order
        verdicts[want] += 1
    assert verdicts[True] > 60 and verdicts[False] > 300  # both sides were exercised


def test_the_unmutated_tables_pass_in_any_order(fitted: list[tuple[Any, int, int]]) -> None:
    for order in (fitted, fitted[::-1], fitted[2:] + fitted[:2]):
        assert _batch_ok([p[0] for p in order], [p[1] for p in order], [p[2] for p in order])


# -- end to end: one bad tree in a forest ----------------------------------------------------------


def _with_nodes(tree: Tree, nodes: Any) -> Tree:
    """A copy of ``tree`` holding ``nodes`` (``Tree.__setstate__`` checks only their shape)."""
    state = tree.__getstate__()
    state["nodes"] = nodes
    t = Tree(tree.n_features, np.array(tree.n_classes, dtype=np.intp), tree.n_outputs)
    t.__setstate__(state)
    return t


@pytest.fixture(scope="module")
def forest() -> RandomForestClassifier:
    x, y = load_digits(return_X_y=True)
    est = RandomForestClassifier(90, random_state=0).fit(x, y)
    sizes = [e.tree_.node_count for e in est.estimators_]
    assert sum(sizes) > 2 * check_sklearn_tree._GROUP  # the tables span several groups
    return est


def _mutations(nodes: Any) -> dict[str, Any]:
    n = len(nodes)
    internal = np.flatnonzero(nodes["left_child"] != -1)
    leaf = int(np.flatnonzero(nodes["left_child"] == -1)[0])
    out = {}
    out["next table's root"] = nodes.copy()
    out["next table's root"]["right_child"][internal[-1]] = n
    out["back up"] = nodes.copy()
    out["back up"]["left_child"][internal[-1]] = internal[0]
    out["two parents"] = nodes.copy()
    out["two parents"]["right_child"][internal[0]] = nodes["left_child"][internal[-1]]
    out["leaf with a child"] = nodes.copy()
    out["leaf with a child"]["right_child"][leaf] = n - 1
    return out


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize(
    "mutation", ["next table's root", "back up", "two parents", "leaf with a child"]
)
def test_a_bad_tree_anywhere_in_a_forest_is_refused(
    tmp_path: Path, forest: RandomForestClassifier, where: str, mutation: str
) -> None:
    k = {"first": 0, "middle": len(forest.estimators_) // 2, "last": -1}[where]
    est = copy.deepcopy(forest)
    tree = est.estimators_[k].tree_
    est.estimators_[k].tree_ = _with_nodes(tree, _mutations(tree.__getstate__()["nodes"])[mutation])
    path = tmp_path / "forest.pkl"
    path.write_bytes(pickle.dumps(est, protocol=4))
    naive = pickle.loads(path.read_bytes())  # the naive loader takes it as it is
    assert not _walk_ok(naive.estimators_[k].tree_.__getstate__()["nodes"], 64, 10**9)
    with pytest.raises(ms.UnsafeModelError, match="decision tree"):
        ms.load(path)


def test_a_forest_loads_the_same(tmp_path: Path, forest: RandomForestClassifier) -> None:
    path = tmp_path / "forest.joblib"
    ms.save(forest, path)
    x, _ = load_digits(return_X_y=True)
    assert (ms.load(path).predict_proba(x) == forest.predict_proba(x)).all()


def test_a_tree_larger_than_a_group_is_checked_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((12_000, 3))
    est = DecisionTreeRegressor(random_state=0).fit(x, rng.random(12_000))
    assert est.tree_.node_count > check_sklearn_tree._GROUP
    path = tmp_path / "tree.pkl"
    path.write_bytes(pickle.dumps(est, protocol=4))
    assert (ms.load(path).predict(x[:50]) == est.predict(x[:50])).all()
    nodes = est.tree_.__getstate__()["nodes"].copy()
    nodes["left_child"][np.flatnonzero(nodes["left_child"] != -1)[-1]] = len(nodes)
    est.tree_ = _with_nodes(est.tree_, nodes)
    path.write_bytes(pickle.dumps(est, protocol=4))
    with pytest.raises(ms.UnsafeModelError, match="decision tree"):
        ms.load(path)


# -- red team, eighth round ---------------------------------------------------------------------

_TRUSTED_WARM_UP = """
import pickle, sys, warnings
import numpy as np
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._classes import BaseDecisionTree
from sklearn.tree._tree import Tree

warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 4))
est = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
state = est.tree_.__getstate__()
nodes = state["nodes"].copy()
nodes["right_child"][0] = 1 << 40  # predict reads node 2**40 for any x going right at the root
bad = Tree(4, np.array([2], dtype=np.intp), 1)
bad.__setstate__({**state, "nodes": nodes})
est.tree_ = bad

class WarmUp:  # a predict while unpickling, as the caller's own trusted code might do
    def __reduce__(self):
        return (BaseDecisionTree.predict, (est, np.full((3, 4), 10.0)))

data = pickle.dumps([est, WarmUp()], protocol=4)
if sys.argv[1] == "pickle":
    pickle.loads(data)
    print("loaded")
else:
    import modelstore as ms
    open(sys.argv[2], "wb").write(data)
    try:
        ms.load(sys.argv[2], trust=["sklearn.tree._classes.BaseDecisionTree.predict"])
        print("loaded")
    except ms.UnsafeModelError as e:
        print("refused:", e)
"""


@pytest.mark.slow  # child processes
def test_a_trusted_call_never_sees_an_unchecked_tree(tmp_path: Path) -> None:
    """With ``trust=[...]``, the caller's trusted code runs during the stream and may use a
    tree before the load ends (here a trusted ``predict`` of a tree whose child is 2**40):
    trees are then checked at their own BUILD, before anything can use them. The naive
    loader crashes."""
    import subprocess
    import sys

    script = tmp_path / "warm.py"
    script.write_text(_TRUSTED_WARM_UP)
    naive = subprocess.run(
        [sys.executable, str(script), "pickle"], capture_output=True, text=True, timeout=120
    )
    assert naive.returncode != 0 and "loaded" not in naive.stdout  # the read past the table
    ours = subprocess.run(
        [sys.executable, str(script), "ms", str(tmp_path / "warm.pkl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ours.returncode == 0, ours.stderr
    assert "refused:" in ours.stdout and "point outside the tree" in ours.stdout


def test_trees_sharing_one_array_are_refused(tmp_path: Path) -> None:
    """One node table referenced by many trees through the memo: each tree copies it, so
    1.2 MB made 4.7 GB (4,000 trees; the red team's measure). scikit-learn never writes it."""
    x, y = load_digits(return_X_y=True)
    tree = DecisionTreeClassifier(random_state=0).fit(x, y).tree_
    state = tree.__getstate__()

    class Shared:
        def __reduce__(self) -> Any:
            args = (tree.n_features, np.array(tree.n_classes, dtype=np.intp), tree.n_outputs)
            return (Tree, args, state)

    data = pickle.dumps([Shared() for _ in range(50)], protocol=4)
    assert len(data) < 2 * (state["nodes"].nbytes + state["values"].nbytes)  # once in the file
    naive = pickle.loads(data)
    assert len({id(t) for t in naive}) == 50  # fifty copies in memory
    path = tmp_path / "shared.pkl"
    path.write_bytes(data)
    with pytest.raises(ms.UnsafeModelError, match="already used for another object"):
        ms.load(path)


# -- red team, eighth round, second pass ----------------------------------------------------------


class _RawArray:
    """Pickles as numpy's ``_reconstruct`` + ``BUILD (1, shape, dtype, False, raw)``, with
    ``raw`` memo-shared when the same object is given to several."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, raw: Any) -> None:
        self.shape, self.dtype, self.raw = shape, dtype, raw

    def __reduce__(self) -> Any:
        from numpy._core.multiarray import _reconstruct

        return (
            _reconstruct,
            (np.ndarray, (0,), b"b"),
            (1, self.shape, self.dtype, False, self.raw),
        )


class _FromBuffer(_RawArray):
    """Pickles as protocol 5's ``_frombuffer(raw, dtype, shape, "C")``."""

    def __reduce__(self) -> Any:
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (self.raw, self.dtype, self.shape, "C"))


class _Leaf:
    """A one-leaf tree over ``classes`` classes whose values array is ``values``."""

    def __init__(self, classes: int, values: Any) -> None:
        self.classes, self.values = classes, values

    def __reduce__(self) -> Any:
        from sklearn.tree._tree import NODE_DTYPE

        leaf = np.zeros(1, dtype=NODE_DTYPE)
        leaf["left_child"] = leaf["right_child"] = -1
        leaf["feature"] = -2
        state = {"max_depth": 0, "node_count": 1, "nodes": leaf, "values": self.values}
        return (Tree, (1, np.array([self.classes], dtype=np.intp), 1), state)


@pytest.mark.parametrize("array", [_RawArray, _FromBuffer])
def test_trees_over_one_shared_buffer_are_refused(tmp_path: Path, array: Any) -> None:
    """Distinct arrays over one memo-shared bytes object (numpy does not copy bytes over 1,000
    long): each tree copies the values, so 16 KB of values in the file became 3.4 GB with 200
    trees of 2**21 classes (the red team's measure; here 40 trees of 2**12)."""
    classes = 1 << 12
    shared = bytes(8 * classes)
    trees = [_Leaf(classes, array((1, 1, classes), np.dtype("float64"), shared)) for _ in range(40)]
    data = pickle.dumps(trees, protocol=5)
    assert len(data) < 2 * len(shared) + 40 * 400  # the values are in the file once
    naive = pickle.loads(data)
    assert len({id(t) for t in naive}) == 40  # forty copies in memory
    path = tmp_path / "shared.pkl"
    path.write_bytes(data)
    with pytest.raises(ms.UnsafeModelError, match="already used for another object"):
        ms.load(path)
    one = tmp_path / "one.pkl"  # one such tree alone is fine
    one.write_bytes(pickle.dumps(trees[:1], protocol=5))
    assert ms.load(one)[0].max_n_classes == classes


def test_object_arrays_over_one_shared_list_are_refused(tmp_path: Path) -> None:
    """Each object array copies its list's pointers: 300 arrays over one memo-shared list of
    2**20 items made 2.4 GB from a 1 MB file (the red team's measure; here 50 of 2**14)."""
    items = [None] * (1 << 14)
    data = pickle.dumps([_RawArray((len(items),), np.dtype("O"), items) for _ in range(50)], 4)
    assert len({id(a) for a in pickle.loads(data)}) == 50
    path = tmp_path / "objects.pkl"
    path.write_bytes(data)
    with pytest.raises(ms.UnsafeModelError, match="already used for another object"):
        ms.load(path)


_TRUSTED_LATE = """
import io, pickle, sys, warnings
import numpy as np
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._classes import BaseDecisionTree
from sklearn.tree._tree import Tree

warnings.simplefilter("ignore")
case, how = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 1))
est = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
state = est.tree_.__getstate__()


class WarmUp:  # a predict in the middle of the stream, as trusted code might do
    def __reduce__(self):
        return (BaseDecisionTree.predict, (est, np.ones((3, 1))))


class Empty:  # Tree(...) with no state yet: no nodes at all
    def __reduce__(self):
        return (Tree, (1, np.array([2], dtype=np.intp), 1))


class BuildLater:  # that tree's BUILD, after the predict
    def __init__(self, target):
        self.target = target


class Pickler(pickle._Pickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, BuildLater):
            self.save(obj.target)
            self.save(state)
            self.write(pickle.BUILD)
            return
        return super().save(obj, save_persistent_id)


if case == "width":
    # alone the tree is fine (2**31 - 1 features, splitting on feature 2**31 - 2); with the
    # estimator's 1 feature it reads far past each row: the estimator's check refuses the pair
    nodes = state["nodes"].copy()
    nodes["feature"][0] = (1 << 31) - 2
    wide = Tree((1 << 31) - 1, np.array([2], dtype=np.intp), 1)
    wide.__setstate__({**state, "nodes": nodes})
    est.tree_ = wide
    stream = [est, WarmUp()]
else:  # the predict walks a tree whose BUILD comes later in the stream
    empty = Empty()
    est.tree_ = empty
    stream = [WarmUp(), BuildLater(empty)]
buf = io.BytesIO()
Pickler(buf, protocol=4).dump(stream)
if how == "pickle":
    pickle.loads(buf.getvalue())
    print("loaded")
else:
    import modelstore as ms

    open(sys.argv[3], "wb").write(buf.getvalue())
    try:
        ms.load(sys.argv[3], trust=["sklearn.tree._classes.BaseDecisionTree.predict"])
        print("loaded")
    except ms.UnsafeModelError as e:
        print("refused:", e)
"""


@pytest.mark.slow  # child processes
@pytest.mark.parametrize(
    "case, reason",
    [("width", "gives 1 features to a tree over"), ("unbuilt", "still lacks its state")],
)
def test_trusted_code_runs_only_after_every_check_so_far(
    tmp_path: Path, case: str, reason: str
) -> None:
    """Trusted code that runs mid-stream (a trusted ``predict``) first sees every check
    registered so far pass, and nothing still waiting for its state: a tree wider than its
    estimator (an end-of-load check) and a tree used before its BUILD both crash the naive
    loader."""
    import subprocess
    import sys

    script = tmp_path / "late.py"
    script.write_text(_TRUSTED_LATE)
    run = [sys.executable, str(script), case]
    naive = subprocess.run([*run, "pickle"], capture_output=True, text=True, timeout=120)
    assert naive.returncode != 0 and "loaded" not in naive.stdout
    ours = subprocess.run(
        [*run, "ms", str(tmp_path / "late.pkl")], capture_output=True, text=True, timeout=120
    )
    assert ours.returncode == 0, ours.stderr
    assert "refused:" in ours.stdout and reason in ours.stdout, ours.stdout


def test_early_checks_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trusted call reruns the checks registered so far: past a bound the load is
    refused rather than made quadratic."""
    from modelstore.security import pickle_load

    x, y = load_digits(return_X_y=True)
    path = tmp_path / "many.pkl"
    trust = ["copy.copy"]
    data = pickle.dumps(
        [DecisionTreeClassifier(max_depth=2, random_state=s).fit(x, y) for s in range(4)]
        + [_Call() for _ in range(30)],
        protocol=4,
    )
    path.write_bytes(data)
    assert len(ms.load(path, trust=trust)) == 34
    monkeypatch.setattr(pickle_load, "EARLY_CHECKS", 20)
    with pytest.raises(ms.UnsafeModelError, match="trusted code so often"):
        ms.load(path, trust=trust)


class _Call:
    """A trusted call in the stream: ``copy.copy(1)``."""

    def __reduce__(self) -> Any:
        return (copy.copy, (1,))

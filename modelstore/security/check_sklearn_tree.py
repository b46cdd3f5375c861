"""``sklearn.tree._tree.Tree``: the node tables decision trees and forests predict with.

``predict``, ``apply`` and ``decision_path`` walk a tree's nodes by the child indices the
nodes hold, without bounds checks, and ``decision_path`` sizes its buffer from the depth the
tree states. So a tree whose child points past its nodes or back up the tree crashes or never
returns, and one deeper than it says writes past its buffer.

A tree is checked in two steps:

- **At its ``BUILD``**, the sizes: the state's node and value arrays have exactly the dtype
  and shape the counts say. That is all ``Tree.__setstate__`` relies on (it copies the two
  arrays into memory of that size), so it runs then.
- **When the load ends**, the node tables of every tree in the file, together, a group of
  tables at a time in a few array operations each (a forest has hundreds of small trees, and
  a dozen numpy calls per tree cost more than reading it). What is checked is each tree's own memory, read back
  through ``Tree.__getstate__`` (a view, not a copy), with its own counts. Nothing runs in
  between but the allow-list's validators, which never walk a tree, and code the caller
  trusts, before which every tree so far is checked (:meth:`.LoadState.before_trusted`).

Each tree copies its arrays, so two trees may not be made from one array, or from arrays over
one buffer (:meth:`.LoadState.claim`): through the pickle memo, a 1 MB table shared by
thousands of trees would fill memory (scikit-learn never writes that).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .check_sklearn import _MAX, _array, _count, _np

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler


_FIELDS = ("left_child", "right_child", "feature", "missing_go_to_left")


def _tables(tables: Sequence[Any]) -> tuple[dict[str, Any], Any, Any, Any]:
    """The node tables' fields end to end (field by field: copying whole records of the
    structured dtype is ten times slower); each table's length; each node's table start and
    table length."""
    np = _np()
    lens = np.fromiter((len(t) for t in tables), np.int64, len(tables))
    starts = np.cumsum(lens) - lens
    nodes = {k: np.concatenate([t[k] for t in tables]) for k in _FIELDS}
    return nodes, lens, np.repeat(starts, lens), np.repeat(lens, lens)


def _nodes_in_order(nodes: Any, start: Any, count: Any, n_features: Any) -> bool:
    """Internal nodes (``left_child != -1``) have both children in ``(i, n)`` and split on a
    feature in ``[0, n_features)``; leaves have ``right_child == -1`` (``i`` a node's index in
    its own table, ``n`` that table's length). ``i < c < n`` is tested as
    ``c - (i + 1) < n - (i + 1)`` on unsigned values, where a negative difference (or one that
    wrapped) is a huge number."""
    np = _np()
    left, right = nodes["left_child"], nodes["right_child"]
    after = np.arange(1, len(left) + 1, dtype=np.int64) - start
    room = (count - after).astype(np.uint64)
    inside = (
        ((left - after).astype(np.uint64) < room)
        & ((right - after).astype(np.uint64) < room)
        & (nodes["feature"].astype(np.uint64) < n_features)
    )
    return bool(np.where(left != -1, inside, right == -1).all())


def _depths_within(nodes: Any, start: Any, max_depth: Any) -> bool:
    """Whether every node but a root has exactly one parent (as in every fitted tree) and no
    path down from a root passes more than its tree's ``max_depth`` splits. Needs
    :func:`_nodes_in_order` first (children come after their parents, inside their table).
    Depths come from pointer jumping: each round doubles how far up every node's known
    ancestor is, so ``log2(depth)`` rounds over all nodes for the deepest tree."""
    np = _np()
    left, right = nodes["left_child"], nodes["right_child"]
    index = np.arange(len(left))
    internal = np.flatnonzero(left != -1)
    offset = start[internal]  # children are stored relative to their table
    children = np.concatenate((left[internal] + offset, right[internal] + offset))
    if not (np.bincount(children, minlength=len(left)) == (index != start)).all():
        return False
    anc = start.copy()  # a root is its own ancestor
    anc[children] = np.concatenate((internal, internal))
    dist = (anc != index).astype(np.int64)  # how many splits up anc[i] is
    # after k rounds anc[i] is 2**k splits up (or its root): with 2**k above every stated
    # depth, a node whose ancestor is not yet its root is too deep, and every other one's
    # dist is its depth
    for _ in range(int(max_depth.max()).bit_length()):
        dist += dist[anc]
        anc = anc[anc]
    return bool((anc == start).all() and (dist <= max_depth).all())


def _nodes_ok(nodes: Any, n: int, n_features: int) -> bool:
    """:func:`_nodes_in_order` for one table of ``n`` nodes."""
    np = _np()
    return _nodes_in_order(nodes, np.zeros(1, np.int64), np.int64(n), n_features)


def _depth_within(nodes: Any, n: int, max_depth: int) -> bool:
    """:func:`_depths_within` for one table (``n`` nodes) that states ``max_depth``."""
    np = _np()
    return _depths_within(nodes, np.zeros(n, np.int64), np.full(n, max_depth, np.int64))


#: node tables are checked in groups of about this many nodes: the temporary arrays stay in
#: the allocator's heap (larger ones are fresh mappings, page-faulted in on every use)
_GROUP = 16384


def check_trees(st: LoadState, trees: list[Any]) -> None:
    """End of the load: every tree's node table, read back from the tree, a group at a time."""
    group: list[Any] = []
    size = 0
    for tree in trees:
        group.append(tree)
        size += tree.node_count
        if size >= _GROUP:
            _check_group(st, group)
            group, size = [], 0
    if group:
        _check_group(st, group)


def _check_group(st: LoadState, trees: list[Any]) -> None:
    np = _np()
    tables = [tree.__getstate__()["nodes"] for tree in trees]  # views of the trees' own nodes
    nodes, lens, start, count = _tables(tables)
    width = np.repeat(np.fromiter((t.n_features for t in trees), np.uint64, len(trees)), lens)
    if not (
        _nodes_in_order(nodes, start, count, width) and (nodes["missing_go_to_left"] <= 1).all()
    ):
        raise st.refuse(
            "a decision tree whose nodes point outside the tree, back up it, or at features it does not have"
        )
    depth = np.repeat(np.fromiter((t.max_depth for t in trees), np.int64, len(trees)), lens)
    if not _depths_within(nodes, start, depth):
        raise st.refuse(
            "a decision tree deeper than the depth it states (or not a tree: a node with two "
            "parents); its decision_path would write past its buffer"
        )


def call_tree(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``Tree(n_features, n_classes, n_outputs)``: sizes the tree allocates from."""
    if len(args) != 3:
        raise st.refuse("Tree called with arguments scikit-learn never writes")
    n_features, n_outputs = args[0], args[2]
    if type(n_features) is not int or not 1 <= n_features < _MAX:  # else as _count says
        _count(st, n_features, "a tree's feature count", 1)
    if type(n_outputs) is not int or not 1 <= n_outputs < 1 << 20:
        n_outputs = _count(st, n_outputs, "a tree's output count", 1, 1 << 20)
    classes = _array(st, args[1], "a tree's class counts", ndim=1)
    counts = classes.tolist() if classes.dtype.kind in "iu" else None
    if counts is None or len(counts) != n_outputs or not 1 <= min(counts) <= max(counts) < _MAX:
        raise st.refuse("a tree whose class counts do not match its outputs")
    if n_outputs * max(counts) >= _MAX:
        raise st.refuse("a tree whose value stride overflows")
    return st.expect_build(func(*args), required=True)


_STATE = ("max_depth", "node_count", "nodes", "values")
_STATE_KEYS = frozenset(_STATE)


@functools.cache
def _dtypes() -> tuple[Any, Any]:
    """scikit-learn's node record dtype and float64, made once (not per tree)."""
    from sklearn.tree._tree import NODE_DTYPE

    return NODE_DTYPE, _np().dtype("float64")


def build_tree(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    """Sizes now (``__setstate__`` copies exactly these arrays); node tables at the end."""
    st = reader.state
    if not (
        state.keys() >= _STATE_KEYS
        if type(state) is dict
        else isinstance(state, dict) and all(k in state for k in _STATE)
    ):
        raise st.refuse("a decision tree state without its nodes")
    node_dtype, f64 = _dtypes()
    nodes = _array(st, state["nodes"], "a tree's nodes", dtype=node_dtype, ndim=1)
    n = state["node_count"]
    if type(n) is not int or not 1 <= n < _MAX:  # else as _count says
        n = _count(st, n, "a tree's node count", 1)
    depth = state["max_depth"]
    if type(depth) is not int or not 0 <= depth < _MAX:
        depth = _count(st, depth, "a tree's depth")
    if nodes.shape[0] != n:
        raise st.refuse(f"a tree with node_count {n} but {nodes.shape[0]} nodes")
    if depth > n - 1:  # decision_path allocates n_samples * (1 + max_depth) entries
        raise st.refuse(f"a tree of {n} nodes that states a depth of {depth}")
    values = _array(st, state["values"], "a tree's values", dtype=f64, ndim=3)
    if values.shape != (n, target.n_outputs, target.max_n_classes):
        raise st.refuse("a tree whose value array does not match its nodes and outputs")
    st.claim(nodes, "a decision tree's nodes")  # each tree copies both arrays
    st.claim(values, "a decision tree's values")
    target.__setstate__(state)
    st.batch("sklearn.tree._tree.Tree", check_trees, target)
    return target


CALLS = {"sklearn.tree._tree:Tree": call_tree}


def build_for(t: type) -> Any:
    """The BUILD validator for ``Tree``, or None for any other type."""
    if t.__module__ == "sklearn.tree._tree" and t.__name__ == "Tree":
        return build_tree
    return None

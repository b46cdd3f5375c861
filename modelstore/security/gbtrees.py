"""Structure checks for gradient-boosted trees (XGBoost JSON, LightGBM model text).

Neither library checks a loaded tree before walking it: a child index past the end of the
node arrays, or one that points back up the tree, makes prediction read out of bounds
(XGBoost: a segmentation fault) or loop forever (LightGBM), and a split on a feature the
model does not have reads past the caller's row. These checks run on the canonical text the
library itself re-serialised from the file (see :mod:`modelstore.security.child`), so they see
exactly the arrays the library will walk:

- every per-node array has the length the tree declares;
- from the root, every child index is in range and every node is reached at most once (so
  there is no cycle and no shared subtree), to a depth of at most MAX_DEPTH;
- a split's feature index is below the model's feature count; categorical splits point
  inside the category tables; linear leaves name real features;
- the model-level tables (tree groups, iteration boundaries, dart weights, linear weights)
  agree with the number of trees and outputs.

A violation raises :class:`TreeStructureError` naming the file, the tree and the node.
"""

from __future__ import annotations

from typing import Any

from ..errors import FormatError

#: deepest tree accepted (real boosted trees are a few dozen levels deep)
MAX_DEPTH = 4096
#: most outputs (classes or targets) accepted
MAX_OUTPUTS = 1 << 20
#: outputs a model may declare beyond its trees (an untrained model predicts its base score)
FREE_OUTPUTS = 1 << 10
#: XGBoost category codes are floats below 2**24 (it treats larger inputs as invalid)
MAX_CATEGORY = 1 << 24
#: most bytes of category bitsets XGBoost may build on load: one bitset per categorical
#: split, sized by the largest code in it, so a few bytes of JSON can ask for megabytes
MAX_CATEGORY_BYTES = 64 << 20


class TreeStructureError(FormatError):
    """A boosted tree whose structure the library would walk out of bounds or forever."""


def _ints(where: str, name: str, value: Any, length: int | None = None) -> list[int]:
    if not isinstance(value, list) or not all(
        type(v) is int
        for v in value  # noqa: E721 - bool is not an index
    ):
        raise TreeStructureError(f"{where}: '{name}' is not a list of integers")
    if length is not None and len(value) != length:
        raise TreeStructureError(
            f"{where}: '{name}' has {len(value)} entries where the tree has {length}"
        )
    return value


def _count(where: str, name: str, value: Any, low: int = 0, high: int = 1 << 40) -> int:
    """An integer field (XGBoost writes its parameters as strings of digits)."""
    text = value if isinstance(value, str) else None
    if type(value) is int:
        number = value
    elif text is not None and text.isascii() and text.strip().lstrip("-").isdigit():
        number = int(text)
    else:
        raise TreeStructureError(f"{where}: '{name}' is {str(value)[:40]!r}, not an integer")
    if not low <= number <= high:
        raise TreeStructureError(f"{where}: '{name}' is {number}, outside {low}..{high}")
    return number


def _walk(where: str, n_nodes: int, children: Any) -> list[int]:
    """Visit from node 0; ``children(n)`` gives the inner-node children of ``n``.

    Returns the nodes reached. Refuses a child index out of range, a node reached twice
    (a cycle or a shared subtree), and a tree deeper than MAX_DEPTH.
    """
    seen = [False] * n_nodes
    seen[0] = True
    order = [0]
    stack = [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise TreeStructureError(f"{where}: the tree is deeper than {MAX_DEPTH} levels")
        for child in children(node):
            if not 0 <= child < n_nodes:
                raise TreeStructureError(
                    f"{where}: node {node} has child {child}, outside the tree's {n_nodes} nodes"
                )
            if seen[child]:
                raise TreeStructureError(
                    f"{where}: node {child} is reached twice (a cycle or a shared subtree)"
                )
            seen[child] = True
            order.append(child)
            stack.append((child, depth + 1))
    return order


# -- XGBoost ------------------------------------------------------------------------------
_XGB_NODE_ARRAYS = (
    "left_children",
    "right_children",
    "parents",
    "split_indices",
    "split_type",
    "default_left",
)


def check_xgboost(doc: Any, where: str) -> None:
    """Check an XGBoost model as ``Booster.save_raw("json")`` writes it."""
    learner = doc.get("learner") if isinstance(doc, dict) else None
    if not isinstance(learner, dict):
        raise TreeStructureError(f"{where}: not an XGBoost model (no 'learner' object)")
    param = learner.get("learner_model_param")
    if not isinstance(param, dict):
        raise TreeStructureError(f"{where}: no 'learner_model_param' object")
    n_features = _count(where, "num_feature", param.get("num_feature"), 0, 1 << 31)
    n_class = _count(where, "num_class", param.get("num_class", "0"), 0, MAX_OUTPUTS)
    n_target = _count(where, "num_target", param.get("num_target", "1"), 1, MAX_OUTPUTS)
    groups = max(n_class, n_target, 1)
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict):
        raise TreeStructureError(f"{where}: no 'gradient_booster' object")
    name = booster.get("name")
    if name == "gblinear":
        weights = (booster.get("model") or {}).get("weights")
        if not isinstance(weights, list) or len(weights) != (n_features + 1) * groups:
            raise TreeStructureError(
                f"{where}: the linear booster's weights do not match "
                f"({n_features} features + bias) x {groups} outputs"
            )
        return
    if name == "dart":
        model = (booster.get("gbtree") or {}).get("model")
    elif name == "gbtree":
        model = booster.get("model")
    else:
        raise TreeStructureError(f"{where}: unknown booster {str(name)[:40]!r}")
    if not isinstance(model, dict) or not isinstance(model.get("trees"), list):
        raise TreeStructureError(f"{where}: the tree booster has no list of trees")
    trees = model["trees"]
    mparam = model.get("gbtree_model_param") or {}
    declared = _count(where, "num_trees", mparam.get("num_trees", str(len(trees))))
    if declared != len(trees):
        raise TreeStructureError(f"{where}: {declared} trees declared, {len(trees)} stored")
    # the output width (predict makes rows x outputs values): each output needs its trees,
    # or, for multi-output trees, leaf vectors of that size
    leaf_sizes = [
        _count(where, "size_leaf_vector", (t.get("tree_param") or {}).get("size_leaf_vector", "1"))
        for t in trees
        if isinstance(t, dict)
    ]
    if groups > max(len(trees), *leaf_sizes, FREE_OUTPUTS):
        raise TreeStructureError(
            f"{where}: {groups} outputs declared for {len(trees)} trees; a model has at least "
            f"one tree (or one leaf value) per output"
        )
    info = _ints(where, "tree_info", model.get("tree_info", []), len(trees))
    if any(not 0 <= g < groups for g in info):
        raise TreeStructureError(f"{where}: a tree is assigned to an output beyond {groups}")
    indptr = _ints(where, "iteration_indptr", model.get("iteration_indptr", [0, len(trees)]))
    if indptr[:1] != [0] or indptr[-1] != len(trees) or indptr != sorted(indptr):
        raise TreeStructureError(f"{where}: 'iteration_indptr' does not cover the trees in order")
    if name == "dart":
        drops = booster.get("weight_drop")
        if not isinstance(drops, list) or len(drops) != len(trees):
            raise TreeStructureError(f"{where}: dart 'weight_drop' does not match the trees")
    bitsets = 0
    for i, tree in enumerate(trees):
        bitsets += _check_xgb_tree(tree, f"{where}: tree {i}", n_features)
        if bitsets > MAX_CATEGORY_BYTES:
            raise TreeStructureError(
                f"{where}: the category splits up to tree {i} would make XGBoost allocate "
                f"{bitsets >> 20} MiB of category bitsets (at most {MAX_CATEGORY_BYTES >> 20})"
            )


def _check_xgb_tree(tree: Any, where: str, n_features: int) -> int:
    """Check one tree; return the bytes of category bitsets XGBoost builds for it."""
    if not isinstance(tree, dict):
        raise TreeStructureError(f"{where} is not an object")
    tparam = tree.get("tree_param") or {}
    n = _count(where, "num_nodes", tparam.get("num_nodes"), 1, 1 << 31)
    leaf_size = _count(where, "size_leaf_vector", tparam.get("size_leaf_vector", "1"), 0)
    arrays = {k: _ints(where, k, tree.get(k), n) for k in _XGB_NODE_ARRAYS}
    weights = tree.get("base_weights")
    if not isinstance(weights, list) or len(weights) not in (n, n * max(leaf_size, 1)):
        raise TreeStructureError(f"{where}: 'base_weights' does not match the {n} nodes")
    left, right, parents = arrays["left_children"], arrays["right_children"], arrays["parents"]
    split, kind = arrays["split_indices"], arrays["split_type"]

    # multi-output trees (XGBoost 3): a leaf's right_children entry is its row in
    # leaf_weights (size_leaf_vector values each), which the predictor reads unchecked
    leaf_rows = _leaf_rows(tree, where, leaf_size)
    used = [False] * (leaf_rows or 0)

    def children(node: int) -> tuple[int, ...]:
        if left[node] == -1:
            if leaf_rows is not None:
                row = right[node]
                if not 0 <= row < leaf_rows or used[row]:
                    raise TreeStructureError(
                        f"{where}: leaf {node} names leaf value row {row}, out of range or "
                        f"used twice ({leaf_rows} rows)"
                    )
                used[row] = True
            elif right[node] != -1:
                raise TreeStructureError(f"{where}: leaf {node} has a right child")
            return ()
        if not 0 <= split[node] < n_features:
            raise TreeStructureError(
                f"{where}: node {node} splits on feature {split[node]}; the model has {n_features}"
            )
        return (left[node], right[node])

    for node in _walk(where, n, children):
        if node and left[parents[node]] != node and right[parents[node]] != node:
            raise TreeStructureError(f"{where}: node {node}'s parent does not point to it")
    cats = _ints(where, "categories", tree.get("categories", []))
    nodes = _ints(where, "categories_nodes", tree.get("categories_nodes", []))
    segments = _ints(where, "categories_segments", tree.get("categories_segments", []), len(nodes))
    sizes = _ints(where, "categories_sizes", tree.get("categories_sizes", []), len(nodes))
    if any(not 0 <= c < MAX_CATEGORY for c in cats):
        raise TreeStructureError(f"{where}: a category code is negative or beyond 2**24")
    bitsets = 0
    for node, start, size in zip(nodes, segments, sizes):
        if not 0 <= node < n or kind[node] != 1:
            raise TreeStructureError(
                f"{where}: category table for node {node}, not a category split"
            )
        if start < 0 or size < 0 or start + size > len(cats):
            raise TreeStructureError(f"{where}: node {node}'s categories lie outside the table")
        bitsets += (max(cats[start : start + size], default=0) >> 3) + 8
    return bitsets


def _leaf_rows(tree: dict[str, Any], where: str, leaf_size: int) -> int | None:
    """Rows of ``leaf_weights`` in a multi-output tree, or None for a one-output tree."""
    weights = tree.get("leaf_weights")
    if weights is None or leaf_size <= 1:
        return None
    if not isinstance(weights, list) or len(weights) % leaf_size:
        raise TreeStructureError(f"{where}: 'leaf_weights' is not rows of {leaf_size} values")
    return len(weights) // leaf_size


# -- LightGBM -----------------------------------------------------------------------------
def check_lightgbm(text: str, where: str) -> None:
    """Check a LightGBM model text as ``Booster.model_to_string`` writes it."""
    head, _, rest = text.partition("\nTree=")
    header = _pairs(head, where)
    n_features = _count(where, "max_feature_idx", header.get("max_feature_idx"), -1) + 1
    body, found, _ = ("Tree=" + rest).partition("end of trees")
    if not rest:
        body, found = "", "end of trees"
    if not found:
        raise TreeStructureError(f"{where}: the model text has no 'end of trees' line")
    blocks = [b for b in body.split("Tree=") if b.strip()]
    sizes = header.get("tree_sizes")
    if sizes is not None:
        declared = [_count(where, "tree_sizes", s) for s in sizes.split()]
        actual = [len(("Tree=" + b).encode("utf-8")) for b in blocks]
        if declared != actual:
            raise TreeStructureError(f"{where}: 'tree_sizes' does not match the trees stored")
    # the output width: LightGBM's predict makes rows x num_class values whatever the trees;
    # a real model grows num_class (= trees per iteration) trees in each iteration
    n_class = _count(where, "num_class", header.get("num_class", "1"), 1, MAX_OUTPUTS)
    per_iteration = _count(
        where, "num_tree_per_iteration", header.get("num_tree_per_iteration", "1"), 1, MAX_OUTPUTS
    )
    if (
        per_iteration != n_class
        or n_class > max(len(blocks), FREE_OUTPUTS)
        or len(blocks) % n_class
    ):
        raise TreeStructureError(
            f"{where}: num_class {n_class} with {per_iteration} trees per iteration does not "
            f"match the {len(blocks)} trees stored"
        )
    for block in blocks:
        index, _, block_text = block.partition("\n")
        _check_lgb_tree(
            _pairs(block_text, where), f"{where}: tree {index.strip()[:20]}", n_features
        )


def _pairs(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key in out:
            raise TreeStructureError(f"{where}: the key '{key[:40]}' appears twice")
        out[key] = value
    return out


def _ints_of(fields: dict[str, str], key: str, where: str, length: int) -> list[int]:
    text = fields.get(key, "")
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise TreeStructureError(f"{where}: '{key}' is not a list of integers") from None
    if len(values) != length:
        raise TreeStructureError(
            f"{where}: '{key}' has {len(values)} entries where the tree has {length}"
        )
    return values


def _check_lgb_tree(fields: dict[str, str], where: str, n_features: int) -> None:
    leaves = _count(where, "num_leaves", fields.get("num_leaves"), 1, 1 << 31)
    inner = leaves - 1
    left = _ints_of(fields, "left_child", where, inner)
    right = _ints_of(fields, "right_child", where, inner)
    feature = _ints_of(fields, "split_feature", where, inner)
    decision = _ints_of(fields, "decision_type", where, inner)
    if len(fields.get("leaf_value", "").split()) != leaves:
        raise TreeStructureError(f"{where}: 'leaf_value' does not match the {leaves} leaves")
    n_cat = _count(where, "num_cat", fields.get("num_cat", "0"), 0, 1 << 31)
    if inner:
        seen_leaf = [False] * leaves

        def children(node: int) -> list[int]:
            if not 0 <= feature[node] < n_features:
                raise TreeStructureError(
                    f"{where}: node {node} splits on feature {feature[node]}; "
                    f"the model has {n_features}"
                )
            out = []
            for child in (left[node], right[node]):
                if child >= 0:
                    out.append(child)
                    continue
                leaf = ~child
                if not 0 <= leaf < leaves or seen_leaf[leaf]:
                    raise TreeStructureError(
                        f"{where}: node {node} points to leaf {leaf}, out of range or reached twice"
                    )
                seen_leaf[leaf] = True
            return out

        reached = _walk(where, inner, children)
        if len(reached) != inner or not all(seen_leaf):
            raise TreeStructureError(f"{where}: some nodes or leaves are not reached from the root")
    if n_cat:
        bounds = _ints_of(fields, "cat_boundaries", where, n_cat + 1)
        table = len(fields.get("cat_threshold", "").split())
        if bounds[0] != 0 or bounds != sorted(bounds) or bounds[-1] != table:
            raise TreeStructureError(f"{where}: 'cat_boundaries' do not cover 'cat_threshold'")
        thresholds = fields.get("threshold", "").split()
        for node, d in enumerate(decision):
            if d & 1:
                try:
                    slot = int(float(thresholds[node]))
                except (IndexError, ValueError):
                    slot = -1
                if not 0 <= slot < n_cat:
                    raise TreeStructureError(f"{where}: node {node}'s category table is missing")
    elif any(d & 1 for d in decision):
        raise TreeStructureError(f"{where}: a category split in a tree with no category tables")
    if fields.get("is_linear", "0").strip() == "1":
        counts = _ints_of(fields, "num_features", where, leaves)
        try:
            used = [int(v) for v in fields.get("leaf_features", "").split()]
        except ValueError:
            raise TreeStructureError(
                f"{where}: 'leaf_features' is not a list of integers"
            ) from None
        if any(c < 0 for c in counts) or sum(counts) != len(used):
            raise TreeStructureError(f"{where}: 'leaf_features' does not match 'num_features'")
        if len(fields.get("leaf_coeff", "").split()) != len(used):
            raise TreeStructureError(f"{where}: 'leaf_coeff' does not match 'leaf_features'")
        if any(not 0 <= f < n_features for f in used):
            raise TreeStructureError(f"{where}: a linear leaf uses a feature the model lacks")


__all__ = ["TreeStructureError", "check_lightgbm", "check_xgboost", "MAX_DEPTH"]

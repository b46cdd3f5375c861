"""The layer graph of a Keras Functional config, read from the JSON alone: which layers no
output of the model depends on (Keras builds every listed layer, and never writes one)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def unreached_layers(config: dict[str, Any]) -> set[int]:
    """The layer nodes of a Functional ``config`` (its ``layers``, ``output_layers``) that no
    output depends on, followed as Keras follows them (red team, pass 8): from each output's
    ``[layer, node index, tensor index]`` to that one node of the layer, to the tensors its
    ``args`` and ``kwargs`` hold (Keras 3's ``__keras_tensor__`` with its ``keras_history``,
    or Keras 2's ``[layer, node, tensor, kwargs]`` entries), and on; ``output_layers`` in any
    structure (a dict too). Every layer of a name listed twice counts as unreached (Keras keeps
    the last, having built both). None if the config is not a Functional one."""
    layers, outputs = config.get("layers"), config.get("output_layers")
    if not isinstance(layers, list) or not isinstance(outputs, (list, dict)):
        return set()
    nodes = [n for n in layers if isinstance(n, dict)]
    names = [_name(n) for n in nodes]
    counts = Counter(n for n in names if isinstance(n, str))  # (a ref names a str)
    by_name = {name: n for name, n in zip(names, nodes, strict=True) if counts[name] == 1}
    stack, seen, reached = _refs(outputs), set(), set()
    while stack:
        name, index = stack.pop()
        if (name, index) in seen or name not in by_name:
            continue
        seen.add((name, index))
        reached.add(name)
        inbound = by_name[name].get("inbound_nodes")
        if not isinstance(inbound, list):
            continue
        if not 0 <= index < len(inbound):  # a nested model may count its own node first
            stack.extend(r for node in inbound for r in _node_refs(node))
        else:
            stack.extend(_node_refs(inbound[index]))
    return {id(n) for name, n in zip(names, nodes, strict=True) if name not in reached}


def _name(node: dict[str, Any]) -> Any:
    cfg = node.get("config")
    return node.get("name", cfg.get("name") if isinstance(cfg, dict) else None)


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:3])
    )


def _refs(value: Any) -> list[tuple[str, int]]:
    """(layer, node index) of every ``[layer, node, tensor]`` in an output structure."""
    if _is_ref(value):
        return [(value[0], value[1])]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [r for v in items for r in _refs(v)]


def _node_refs(node: Any) -> list[tuple[str, int]]:
    """(layer, node index) of every tensor one inbound node is called on."""
    if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        return [(e[0], e[1]) for e in node if _is_ref(e)]
    if not isinstance(node, dict):
        return []
    out, stack = [], [node.get("args"), node.get("kwargs")]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            cfg = v.get("config")
            if v.get("class_name") == "__keras_tensor__" and isinstance(cfg, dict):
                history: Any = cfg.get("keras_history")
                if _is_ref(history):
                    out.append((history[0], history[1]))
            else:
                stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


#: Layer calls a model may run when Keras traces it (its first ``predict``), unfolded: at most
#: this many, or this many times the calls its config writes (red team, pass 19: a model that
#: calls a nested model twice, nested 20 deep, is a 4 KB file whose first ``predict`` traces
#: 2**19 layer calls; each level doubles the time).
MAX_UNFOLDED = 2000
UNFOLDED_FACTOR = 4
_CAP = 10**12
#: Where a layer's config holds another layer (wrappers, recurrent cells).
INNER = ("layer", "backward_layer", "cell")


def unfolded_calls(root: Any) -> tuple[int, int]:
    """(layer calls the config writes, layer calls Keras runs tracing it): a nested model runs
    its own graph once per call of it, so its calls multiply by the calls of it."""
    if not isinstance(root, dict):
        return 0, 0
    listed, unfolded = _inner(root)
    return listed, max(unfolded, 1)


def _inner(node: dict[str, Any]) -> tuple[int, int]:
    """What calling ``node`` once runs: (calls written below it, calls run)."""
    cfg = node.get("config")
    if not isinstance(cfg, dict):
        return 0, 0
    if isinstance(cfg.get("layers"), list):
        return _model(cfg["layers"])
    listed = unfolded = 0
    for key in INNER:
        if isinstance(cfg.get(key), dict):
            inner_listed, inner_unfolded = _inner(cfg[key])
            listed, unfolded = listed + inner_listed, unfolded + inner_unfolded
    return listed, unfolded


def _model(layers: list[Any]) -> tuple[int, int]:
    listed = unfolded = 0
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        calls = layer.get("inbound_nodes")
        n = len(calls) if isinstance(calls, (list, dict)) and calls else 1
        inner_listed, inner_unfolded = _inner(layer)
        listed += n + inner_listed
        unfolded = min(unfolded + n * max(inner_unfolded, 1), _CAP)
    return listed, unfolded

"""The layer graph of a Keras Functional config, read from the JSON alone: which layers no
output of the model depends on (Keras builds every listed layer, and never writes one)."""

from __future__ import annotations

from typing import Any


def unreached_layers(config: dict[str, Any]) -> set[int]:
    """The layer nodes of a Functional ``config`` (its ``layers``, ``output_layers``) that no
    output depends on, by the names their inbound nodes refer to (``keras_history``, or a
    legacy ``[name, node, tensor]``); none if the config is not one."""
    layers, outputs = config.get("layers"), config.get("output_layers")
    if not isinstance(layers, list) or not isinstance(outputs, list):
        return set()
    by_name = {_name(n): n for n in layers if isinstance(n, dict)}
    stack = _referenced(outputs) if not _is_ref(outputs) else [outputs[0]]
    seen: set[Any] = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        stack.extend(_referenced(by_name[name].get("inbound_nodes")))
    return {id(n) for name, n in by_name.items() if name not in seen}


def _name(node: dict[str, Any]) -> Any:
    cfg = node.get("config")
    return node.get("name", cfg.get("name") if isinstance(cfg, dict) else None)


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) for v in value[1:3])
    )


def _referenced(value: Any) -> list[Any]:
    """Every layer name ``value`` refers to (nested, both node formats)."""
    out, stack = [], [value]
    while stack:
        v = stack.pop()
        if _is_ref(v):
            out.append(v[0])
        elif isinstance(v, dict):  # a keras_history is a reference: found as a list below
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out

"""What a torch object is, without importing torch (an object can only be a torch module if
torch is already in ``sys.modules``)."""

from __future__ import annotations

from typing import Any

from ..base import is_instance_of


def is_module(obj: Any) -> bool:
    return is_instance_of(obj, "torch.nn", "Module")


def is_tensor(obj: Any) -> bool:
    return is_instance_of(obj, "torch", "Tensor")


def is_state_dict(obj: Any) -> bool:
    """A flat ``{str: Tensor}`` mapping (what safetensors can hold)."""
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and is_tensor(v) for k, v in obj.items())


def contains_tensor(obj: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if is_tensor(obj):
        return True
    if isinstance(obj, dict):
        return any(contains_tensor(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(contains_tensor(v, depth + 1) for v in obj)
    return False

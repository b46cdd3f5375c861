"""What a torch object is, without importing torch (an object can only be a torch module if
torch is already in ``sys.modules``)."""

from __future__ import annotations

from typing import Any

from ..base import is_instance_of


def is_module(obj: Any) -> bool:
    return is_instance_of(obj, "torch.nn", "Module")


def training_state_hint(obj: Any) -> str | None:
    """What to save instead of an optimizer or a scheduler (their state belongs in a
    checkpoint beside the model's weights), or None for anything else."""
    if is_instance_of(obj, "torch.optim", "Optimizer"):
        what = "an optimizer"
    elif is_instance_of(obj, "torch.optim.lr_scheduler", "LRScheduler"):
        what = "a learning-rate scheduler"
    else:
        return None
    return (
        f"{what} is saved by its state, in a training checkpoint with the model's weights: "
        "ms.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), "
        "'epoch': epoch}, 'ckpt.pt'); to resume, build them again and call load_state_dict"
    )


def is_tensor(obj: Any) -> bool:
    return is_instance_of(obj, "torch", "Tensor")


def is_state_dict(obj: Any) -> bool:
    """A flat ``{str: Tensor}`` mapping (what safetensors can hold)."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and is_tensor(v) for k, v in obj.items())
    )


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

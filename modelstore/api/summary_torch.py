"""A torch module's per-layer summary: parameters and buffers counted apart, output shapes from a
forward pass with hooks (on the meta device where the forward allows it)."""

from __future__ import annotations

import math
import sys
from typing import Any

from ..errors import ArgumentError
from .summary_table import LayerSummary, Shape, Summary


def is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # never imported just to recognise an object
    return torch is not None and isinstance(obj, torch.nn.Module)


def torch_inputs(
    input_size: Any, sample_input: Any, module: Any, dtype: str | None = None
) -> list[Any] | None:
    """The tensors to run: from ``sample_input`` or zeros of ``input_size``, on the module's device."""
    import torch

    device = next((t.device for t in module.parameters()), None) or next(
        (t.device for t in module.buffers()), torch.device("cpu")
    )
    if sample_input is not None:
        items = (
            list(sample_input)
            if isinstance(sample_input, (tuple, list))
            and sample_input
            and hasattr(sample_input[0], "shape")
            else [sample_input]
        )
        return [
            torch.as_tensor(x).to(device)
            if device.type != "meta"
            else torch.empty(
                tuple(torch.as_tensor(x).shape), dtype=torch.as_tensor(x).dtype, device="meta"
            )
            for x in items
        ]
    if input_size is None:
        return None
    sizes = (
        input_size
        if isinstance(input_size, (list, tuple))
        and input_size
        and isinstance(input_size[0], (list, tuple))
        else [input_size]
    )
    out = []
    for size in sizes:
        if not isinstance(size, (list, tuple)) or not all(type(d) is int and d > 0 for d in size):
            raise ArgumentError(
                f"input_size must be a shape of positive integers with the batch dimension, "
                f"e.g. (1, 64), not {size!r}"
            )
        if math.prod(size) > 2**31 and device.type != "meta":
            raise ArgumentError(f"input_size {tuple(size)} is too large to run on {device.type}")
        torch_dtype = (
            getattr(torch, dtype)
            if dtype and isinstance(getattr(torch, dtype, None), torch.dtype)
            else torch.float32
        )
        out.append(torch.zeros(tuple(size), dtype=torch_dtype, device=device))
    return out


def torch_summary(
    module: Any, inputs: list[Any] | None, name: str | None = None, notes: list[str] | None = None
) -> Summary:
    """Count a module's parameters and buffers per layer; run ``inputs`` through it for shapes."""
    notes = list(notes or [])
    shapes = _output_shapes(module, inputs) if inputs is not None else {}
    if inputs is None:
        notes.append(
            "output shapes need input_size= or sample_input= (or a signature saved with the model)"
        )
    seen: set[int] = set()
    rows: list[LayerSummary] = []
    total = trainable = buffers = nbytes = 0
    for mod_name, m in module.named_modules():
        own = [p for p in m.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        own_buffers = [b for b in m.buffers(recurse=False) if id(b) not in seen]
        seen.update(id(b) for b in own_buffers)
        params = sum(p.numel() for p in own)
        train = sum(p.numel() for p in own if p.requires_grad)
        buf = sum(b.numel() for b in own_buffers)
        total, trainable, buffers = total + params, trainable + train, buffers + buf
        nbytes += sum(t.numel() * t.element_size() for t in own + own_buffers)
        if mod_name or params or buf:
            rows.append(
                LayerSummary(
                    mod_name or "(root)",
                    type(m).__name__,
                    mod_name.count(".") + 1 if mod_name else 1,
                    shapes.get(mod_name) if mod_name else None,
                    params,
                    train,
                    buf,
                )
            )
    in_shapes: list[Shape] | None = (
        [[int(d) for d in t.shape] for t in inputs] if inputs is not None else None
    )
    return Summary(
        name or type(module).__name__,
        "torch",
        rows,
        total,
        trainable,
        buffers,
        in_shapes,
        notes,
        nbytes,
    )


def _output_shapes(module: Any, inputs: list[Any]) -> dict[str, Shape]:
    import torch

    shapes: dict[str, Shape] = {}
    names = {id(m): n for n, m in module.named_modules()}

    def hook(m: Any, _args: Any, output: Any) -> None:
        n = names.get(id(m))
        if n is not None and n not in shapes:  # a module called twice keeps its first shape
            first = _first_tensor(output)
            if first is not None:
                shapes[n] = [int(d) for d in first.shape]

    modes = [(m, m.training) for m in module.modules()]
    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            if not _on_meta(module, inputs):
                shapes.clear()
                module(*inputs)  # data-dependent forward code: a real pass where the module lives
    except Exception as e:  # the user's forward: any error means the input did not fit
        shown = ", ".join("x".join(map(str, t.shape)) for t in inputs)
        msg = (
            f"{type(module).__name__}'s forward pass failed on an input of shape {shown}: "
            f"{type(e).__name__}: {str(e).splitlines()[0].rstrip('.') if str(e) else ''}. Check input_size= "
            f"(it includes the batch dimension, e.g. (1, 64))"
        )
        raise ArgumentError(msg) from None
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return shapes


def _on_meta(module: Any, inputs: list[Any]) -> bool:
    """Run the forward with meta stand-ins for every weight and input: shapes without memory or
    arithmetic, whatever the module's size or device. False when the forward needs real values."""
    import torch

    if all(t.is_meta for t in inputs):
        return (
            False  # already on meta (a module built from a file): the plain call is the meta pass
        )
    stand_in = {n: torch.empty_like(t, device="meta") for n, t in module.named_parameters()}
    stand_in.update({n: torch.empty_like(t, device="meta") for n, t in module.named_buffers()})
    meta_inputs = [torch.empty_like(t, device="meta") for t in inputs]
    try:
        torch.func.functional_call(module, stand_in, tuple(meta_inputs))
    except Exception:  # noqa: BLE001 - .item(), data-dependent branches, ops without a meta kernel
        return False
    return True


def _first_tensor(value: Any, depth: int = 0) -> Any:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    if depth < 4 and isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v, depth + 1)
            if t is not None:
                return t
    if depth < 4 and isinstance(value, dict):
        for v in value.values():
            t = _first_tensor(v, depth + 1)
            if t is not None:
                return t
    return None

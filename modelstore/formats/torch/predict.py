"""``ms.predict`` for torch modules: eval mode, ``torch.inference_mode()``, numpy out.

A hot path (serving calls it per request): a module in eval mode runs as it is, with no
walk over its submodules to switch modes; the first parameter (dtype, device, embedding or
not) is found by a walk that stops at the first submodule holding one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ArgumentError, UnsupportedModelError
from ..base import PredictRequest, attached, labels_from_scores
from ..shapes import expected_shapes, fit_hint, runtime_message

if TYPE_CHECKING:
    import torch


#: torch float dtypes numpy casts to exactly as torch would (half goes through float in torch).
_NUMPY_OF: dict[Any, Any] = {}


def _as_tensor(x: Any, like: torch.Tensor | None, takes_ids: bool) -> torch.Tensor:
    import numpy as np
    import torch

    if not _NUMPY_OF:
        # dtype objects, not types: comparing a dtype with np.float32 converts the type anew
        _NUMPY_OF.update({torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)})
    if type(x) is np.ndarray and x.flags.c_contiguous and x.dtype.kind in "biuf":
        want = _NUMPY_OF.get(like.dtype) if like is not None and x.dtype.kind == "f" else None
        if want is not None:  # floats into a float32/float64 model: the common case
            # numpy casts a small array ~4x faster than Tensor.to
            return torch.from_numpy(x if x.dtype == want else x.astype(want))
        x = torch.from_numpy(x)  # no copy, no checks to repeat
    elif not isinstance(x, torch.Tensor):
        try:
            arr = np.asarray(x)
        except ValueError as e:  # ragged lists
            raise ArgumentError(f"predict inputs must be rectangular: {e}") from None
        if arr.dtype.kind not in "biuf":
            raise ArgumentError(
                f"predict inputs must be numbers, got {arr.dtype} ({type(x).__name__})"
            )
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if like is not None and x.dtype != like.dtype and like.is_floating_point():
        # floats follow the model's dtype; integers too, unless the model starts with an embedding
        if x.is_floating_point() or (not takes_ids and x.dtype != torch.bool):
            x = x.to(like.dtype)
    out: torch.Tensor = x
    return out


def _first_and_ids(module: Any) -> tuple[Any, bool]:
    """The module's first parameter (``next(module.parameters())``) and whether the submodule
    holding it is an embedding (the model takes integer ids). A depth-first walk over
    ``_parameters`` and ``_modules`` in registration order (``modules()``'s order) that stops at
    the first submodule with a parameter: about a microsecond, and nothing remembered that a
    change of the module could make stale. Past a depth of 64 (a pathological or cyclic tree)
    it falls back to ``modules()``, which remembers what it has seen."""
    import torch

    found = _first_param(module, 0)
    if found is _TOO_DEEP:
        for m in module.modules():
            for p in m._parameters.values():
                if p is not None:
                    return p, isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
        return None, False
    if found is None:
        return None, False
    p, m = found
    return p, isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))


_TOO_DEEP = object()


def _first_param(module: Any, depth: int) -> Any:
    if depth > 64:
        return _TOO_DEEP
    for p in module._parameters.values():
        if p is not None:
            return p, module
    for child in module._modules.values():
        if child is not None:
            found = _first_param(child, depth + 1)
            if found is not None:
                return found
    return None


def _eval_for_predict(module: Any) -> list[tuple[Any, bool]]:
    """Switch ``module`` and its submodules to eval mode; their previous modes, to restore."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    return modes


def predict(module: Any, inputs: Any, request: PredictRequest) -> Any:
    """Run ``module`` in eval mode under ``torch.inference_mode()``; numpy out."""
    import torch

    if inputs is None:
        raise ArgumentError("predict needs inputs (an array, list or tensor), got None")
    if (
        request.device is None
        and request.batch_size is None
        and request.output == "raw"
        and not module.training
        and not isinstance(inputs, tuple)
    ):
        return _predict_one(module, inputs)  # the common call (serving): one batch, as it is
    if request.device is not None:
        from .common import check_device

        check_device(request.device, Path("<model>"))
        module.to(request.device)
    first, takes_ids = _first_and_ids(module)
    device = first.device if first is not None else torch.device(request.device or "cpu")
    many = isinstance(inputs, tuple) and all(hasattr(i, "shape") for i in inputs)
    xs = [_as_tensor(i, first, takes_ids) for i in (inputs if many else (inputs,))]
    on_device = all(x.device == device for x in xs)
    n = xs[0].shape[0] if xs[0].dim() else 1
    step = request.batch_size or n or 1
    # A module in eval mode (what ms.load returns) runs as it is: no walk over every
    # submodule per call. One in training mode is switched to eval for the call and each
    # submodule's own mode is put back afterwards.
    modes = _eval_for_predict(module) if module.training else None
    outs = []
    try:
        with torch.inference_mode():
            for s in range(0, max(n, 1), step):
                if step >= n:  # one batch: no slicing
                    chunk = xs if on_device else [x.to(device) for x in xs]
                else:
                    chunk = [x[s : s + step].to(device) if x.dim() else x.to(device) for x in xs]
                try:
                    y = module(*chunk)
                except (RuntimeError, ValueError, IndexError, TypeError) as e:
                    raise _misfit(module, chunk, xs, e) from None
                _check_tensor(y)
                if request.output in ("proba", "label"):
                    if y.dim() and y.shape[-1] == 1:  # one logit: a binary classifier
                        p = torch.sigmoid(y.float())
                        y = torch.cat([1 - p, p], dim=-1)
                    else:
                        y = torch.softmax(y.float(), dim=-1)
                if y.requires_grad:  # a parameter returned as it is
                    y = y.detach()
                outs.append(y if y.device.type == "cpu" else y.cpu())
    finally:
        if modes is not None:
            for m, mode in modes:
                m.training = mode
    y = torch.cat(outs) if len(outs) > 1 else outs[0]
    if y.dtype in (torch.bfloat16, torch.float16):
        y = y.float()
    arr = y.numpy()
    if request.output == "label":
        return labels_from_scores(arr, request.labels)
    return arr


_PLAIN = PredictRequest()
#: numpy's array type, numpy's and torch's float32 (the common call's types, read once)
_COMMON: list[Any] = []


def _common() -> list[Any]:
    import numpy as np
    import torch

    _COMMON[:] = [np.ndarray, np.dtype(np.float32), torch.float32]
    return _COMMON


def predict_raw(module: Any, inputs: Any) -> Any:
    """``predict`` with the plain request: raw outputs, one batch, the module's device."""
    if not module.training and not isinstance(inputs, tuple):
        return _predict_one(module, inputs)
    return predict(module, inputs, _PLAIN)


def _predict_one(module: Any, inputs: Any) -> Any:
    """``predict`` for one input, one batch, raw output, a module in eval mode: what the
    general loop does for that case, without its lists and slicing."""
    import torch

    first, takes_ids = _first_and_ids(module)
    common = _COMMON or _common()
    if (
        type(inputs) is common[0]
        and inputs.dtype is common[1]
        and first is not None
        and first.dtype is common[2]
        and first.is_cpu
        and inputs.flags.c_contiguous
    ):  # float32 numpy into a float32 module on the CPU: as it is, no copy
        x = torch.from_numpy(inputs)
    else:
        x = _as_tensor(inputs, first, takes_ids)
        if first is not None and not (x.is_cpu and first.is_cpu) and x.device != first.device:
            x = x.to(first.device)
    with torch.inference_mode():
        try:
            y = module(x)
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            raise _misfit(module, [x], [x], e) from None
        if type(y) is not torch.Tensor:
            _check_tensor(y)  # a subclass passes; anything else is refused
        if y.requires_grad:  # a parameter returned as it is
            y = y.detach()
    if not y.is_cpu:
        y = y.cpu()
    if y.dtype is torch.float16 or y.dtype is torch.bfloat16:
        y = y.float()
    return y.numpy()


def _misfit(module: Any, chunk: list[Any], xs: list[Any], e: Exception) -> ArgumentError:
    """The error for inputs the module refused, with the shapes it would take if known."""
    shapes = ", ".join(str(tuple(c.shape)) for c in chunk)
    msg = f"the inputs (shape {shapes}) do not fit the model: {runtime_message(e)}"
    hint = fit_hint([tuple(x.shape) for x in xs], expected_shapes(attached(module)))
    return ArgumentError(msg + hint)


def _check_tensor(y: Any) -> None:
    import torch

    if not isinstance(y, torch.Tensor):
        msg = f"predict expects the model to return a tensor, got {type(y).__name__}"
        raise UnsupportedModelError(msg)

"""PyTorch helpers shared by the ``torch`` and ``safetensors`` backends.

Only imported by those backends' methods, never at ``import modelstore``; torch itself is
imported inside each function.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ... import _warn
from ...errors import (
    ArchitectureMismatchError,
    ArchitectureMismatchWarning,
    ArgumentError,
    UnsupportedModelError,
)
from ..base import LoadRequest
from . import dtype as _dtype
from .kinds import contains_tensor as contains_tensor
from .kinds import is_module as is_module
from .kinds import is_state_dict as is_state_dict
from .kinds import is_tensor as is_tensor
from .kinds import training_state_hint as training_state_hint

_SHOW = 20


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def describe(obj: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "framework": "torch",
        "framework_version": torch.__version__.split("+")[0],
    }
    if is_module(obj):
        out["model_class"] = class_path(type(obj))
    return out


def state_dict_of(obj: Any) -> dict[str, Any]:
    return dict(obj.state_dict()) if is_module(obj) else dict(obj)


# -- building a module from weights -------------------------------------------------------


def import_class(path_str: str, where: Path) -> type:
    """Import a recorded ``module:Qualname``; only called when the caller passed trust=True."""
    module_name, _, qual = path_str.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        msg = (
            f"{where}: the file records the class {path_str}, which cannot be imported here ({e}). "
            f"Pass the class yourself: ms.load(path, model=YourClass)"
        )
        raise ArchitectureMismatchError(msg) from None
    if not isinstance(obj, type):
        raise ArchitectureMismatchError(f"{where}: the recorded {path_str} is not a class")
    return obj


def construct(cls: type, config: dict[str, Any], where: Path, *, on_meta: bool) -> Any:
    """``cls(**config)``, on the meta device (no memory, no random init) when ``on_meta``."""
    import torch

    try:
        if on_meta:
            with torch.device("meta"):
                module = cls(**config)
        else:
            module = cls(**config)
    except TypeError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in config.items())
        msg = (
            f"{where}: could not build {cls.__qualname__}({shown}): {e}. The file was saved with "
            f"config={config!r}; pass a class that accepts it, or an instance: model=Net(...)"
        )
        raise ArchitectureMismatchError(msg) from None
    if not is_module(module):
        raise UnsupportedModelError(
            f"{where}: model={cls.__qualname__} does not build a torch.nn.Module"
        )
    return module


def _tie_groups(module: Any) -> list[list[str]]:
    """Names that refer to one and the same parameter or buffer object (tied weights)."""
    by_id: dict[int, list[str]] = defaultdict(list)
    for name, p in module.named_parameters(remove_duplicate=False):
        by_id[id(p)].append(name)
    for name, b in module.named_buffers(remove_duplicate=False):
        by_id[id(b)].append(name)
    return [names for names in by_id.values() if len(names) > 1]


def fill_tied(sd: dict[str, Any], groups: list[list[str]], recorded: dict[str, str] | None) -> None:
    """Add the keys a tie-aware writer left out, pointing at the tensor they share."""
    for alias, canonical in (recorded or {}).items():
        if alias not in sd and canonical in sd:
            sd[alias] = sd[canonical]
    for names in groups:
        present = [n for n in names if n in sd]
        if present:
            for n in names:
                sd.setdefault(n, sd[present[0]])


def _retie(module: Any, groups: list[list[str]]) -> None:
    for names in groups:
        first = (
            module.get_parameter(names[0])
            if _is_param(module, names[0])
            else module.get_buffer(names[0])
        )
        for other in names[1:]:
            owner_name, _, leaf = other.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            setattr(owner, leaf, first)


def _is_param(module: Any, name: str) -> bool:
    try:
        module.get_parameter(name)
        return True
    except AttributeError:
        return False


def mismatch(module: Any, sd: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    shaped += [
        f"{k}: file {str(sd[k].dtype).replace('torch.', '')} vs model {str(expected[k].dtype).replace('torch.', '')}"
        for k in expected
        if k in sd
        and tuple(sd[k].shape) == tuple(expected[k].shape)
        and sd[k].is_floating_point() != expected[k].is_floating_point()
    ]
    return missing, unexpected, shaped


def _listing(label: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return f"{label} {len(keys)}: {', '.join(keys[:_SHOW])}{more}"


def mismatch_message(
    where: Path,
    cls_name: str,
    recorded: str | None,
    missing: list[str],
    unexpected: list[str],
    shaped: list[str],
) -> str:
    parts = [
        _listing(lbl, ks)
        for lbl, ks in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
        if ks
    ]
    origin = f" The file was saved from {recorded}." if recorded else ""
    return (
        f"{where}: the weights do not fit {cls_name}: {'; '.join(parts)}.{origin} Pass the "
        f"class the file was saved from (with its config), or strict=False to load what matches"
    )


def build_module(sd: dict[str, Any], request: LoadRequest, where: Path) -> Any:
    """Turn loaded tensors into what ``load`` returns: a filled module in eval mode, or the
    state dict itself when no model was given (and trust does not allow importing one)."""
    return build_from_parts(sd, lambda: [sd], request, where)


def build_from_parts(
    layout: dict[str, Any],
    parts: Callable[[], Iterable[dict[str, Any]]],
    request: LoadRequest,
    where: Path,
) -> Any:
    """:func:`build_module` for weights that arrive in parts (the shards of a checkpoint).

    ``layout`` maps every stored name to a tensor of its shape and dtype (meta tensors do),
    so missing, unexpected and mis-shaped keys are reported for the whole checkpoint before
    any weights are read. ``parts()`` yields the real tensors part by part; each part is read
    when reached and assigned before the next. It may be called a second time when the
    module must be rebuilt for real.
    """
    meta = request.meta or {}
    check_device(request.device, where)
    dtype = getattr(request.options, "dtype", None)
    tied = meta.get("tied")
    target = request.model
    recorded = meta.get("model_class")
    if target is None and request.trust is True and recorded:
        target = import_class(recorded, where)
    if target is None:
        sd: dict[str, Any] = {}
        for part in parts():
            sd.update(part)
        fill_tied(sd, [], tied)
        return _to_device(_dtype.for_load(sd, meta, dtype, where), request.device)
    config = dict(request.config if request.config is not None else (meta.get("config") or {}))
    built_here = isinstance(target, type)
    module = construct(target, config, where, on_meta=True) if built_here else target
    if not is_module(module):
        msg = f"{where}: model= must be a torch.nn.Module class or instance, not {type(target).__name__}"
        raise UnsupportedModelError(msg)
    groups = _tie_groups(module)
    plan = dict(layout)
    fill_tied(plan, groups, tied)
    missing, unexpected, shaped = mismatch(module, plan)
    skip: set[str] = set()
    if missing or unexpected or shaped:
        msg = mismatch_message(
            where, type(module).__qualname__, recorded, missing, unexpected, shaped
        )
        if request.strict:
            raise ArchitectureMismatchError(msg, missing, unexpected, shaped)
        _warn.warn(
            msg.replace(
                "or strict=False to load what matches", "skipped keys were left as initialised"
            ),
            ArchitectureMismatchWarning,
        )
        bad = {s.split(":", 1)[0] for s in shaped}
        skip = set(unexpected) | bad
        if built_here and (missing or bad):
            # keys the file lacks need real initial values: build the module for real
            module = construct(target, config, where, on_meta=False)
            built_here = False
    if built_here and _unfilled(module, set(plan) - skip):
        # e.g. non-persistent buffers, which no state dict carries: build for real and copy
        module = construct(target, config, where, on_meta=False)
        built_here = False
    _fill_parts(module, parts, groups, tied, skip, assign=built_here)
    if built_here and _has_meta(module):
        # meta tensors no state dict names (plain tensor attributes): build for real and copy
        module = construct(target, config, where, on_meta=False)
        _fill_parts(module, parts, groups, tied, skip, assign=False)
    if request.device is not None:
        module.to(request.device)
    _dtype.cast_module(module, dtype)
    module.eval()
    return module


def _fill_parts(
    module: Any,
    parts: Callable[[], Iterable[dict[str, Any]]],
    groups: list[list[str]],
    tied: dict[str, str] | None,
    skip: set[str],
    *,
    assign: bool,
) -> None:
    expected = module.state_dict(keep_vars=True) if assign else None  # the dtypes to keep
    for part in parts():
        chunk = dict(part)
        fill_tied(chunk, groups, tied)
        for k in skip:
            chunk.pop(k, None)
        _fill(module, chunk, assign=assign, groups=[], expected=expected)
    if assign:
        _retie(module, groups)


def _unfilled(module: Any, names: set[str]) -> bool:
    """Whether some parameter or buffer of ``module`` (non-persistent buffers included) is
    not among ``names``, so a module built on the meta device would keep a meta tensor."""
    return any(n not in names for n, _ in module.named_parameters(remove_duplicate=False)) or any(
        n not in names for n, _ in module.named_buffers(remove_duplicate=False)
    )


def _fill(
    module: Any,
    sd: dict[str, Any],
    *,
    assign: bool,
    groups: list[list[str]],
    expected: dict[str, Any] | None = None,
) -> None:
    if assign:
        if expected is None:
            expected = module.state_dict(keep_vars=True)
        for k, t in list(sd.items()):
            want = expected.get(k)
            if (
                want is not None
                and t.dtype != want.dtype
                and t.is_floating_point()
                and want.is_floating_point()
            ):
                sd[k] = t.to(want.dtype)
    module.load_state_dict(sd, strict=False, assign=assign)
    if assign:
        _retie(module, groups)


def check_device(device: str | None, where: Path) -> None:
    """Refuse a device torch cannot use, before any weights move."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ArgumentError(f"{where}: device={device!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"{where}: device={device!r} but CUDA is not available here; use device='cpu'"
        raise ArgumentError(msg)
    try:
        torch.empty(0, device=dev)
    except Exception as e:  # mps/xpu/cuda:7 ...: whatever torch raises for an unusable device
        raise ArgumentError(f"{where}: device={device!r} cannot be used here ({e})") from None


def _has_meta(module: Any) -> bool:
    return any(t.is_meta for t in module.parameters()) or any(t.is_meta for t in module.buffers())


def _to_device(sd: dict[str, Any], device: str | None) -> dict[str, Any]:
    if device is None:
        return sd
    return {k: v.to(device) for k, v in sd.items()}

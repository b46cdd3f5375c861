"""``dtype=`` for torch weights: cast floating-point tensors on save; restore or cast on load.

``save(model, path, dtype="float16")`` casts every floating-point tensor (integer and bool
buffers stay as they are; each shared tensor is cast once, so tied weights stay tied) and
records what they were in the metadata::

    meta["cast"] = {"to": "float16", "from": "float32"}              # one original dtype
    meta["cast"] = {"to": "float16", "from": {"fc.weight": "float32",  # several
                                              "emb.weight": "bfloat16"}}

``load`` gives back what was saved: a module passed as ``model=`` keeps its own parameter
dtypes, and a state dict comes back in the recorded original dtypes. ``load(...,
dtype="float16")`` gives that dtype instead. Only backends that declare ``casts`` take it.

torch is imported inside the functions that need it, never at ``import modelstore``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ArgumentError, FormatError

#: What ``dtype=`` accepts: the floating-point dtypes every safetensors reader knows.
TARGETS = ("float16", "bfloat16", "float32", "float64")
_ALIASES = {
    "half": "float16",
    "fp16": "float16",
    "f16": "float16",
    "bf16": "bfloat16",
    "float": "float32",
    "fp32": "float32",
    "f32": "float32",
    "double": "float64",
    "fp64": "float64",
    "f64": "float64",
}


def dtype_name(value: Any) -> str:
    """The canonical name (``"float16"``, ...) of ``dtype=``: a name, an alias (``"fp16"``,
    ``"half"``, ``"bf16"``) or a ``torch.dtype``; anything else is an ArgumentError."""
    if isinstance(value, str):
        text = value
    elif (
        type(value).__name__ == "dtype"
    ):  # torch.dtype / numpy.dtype, recognised without importing either
        text = str(value)
    else:
        raise ArgumentError(f"dtype= must be one of {', '.join(TARGETS)}, not {value!r}")
    name = text.strip().lower().removeprefix("torch.")
    name = _ALIASES.get(name, name)
    if name not in TARGETS:
        raise ArgumentError(
            f"dtype={value!r} is not a floating-point dtype modelstore casts to; "
            f"use one of {', '.join(TARGETS)}"
        )
    return name


@dataclass(frozen=True)
class SaveOptions:
    """``dtype``: cast floating-point tensors to this dtype before writing (recorded, so
    ``load`` gives back the original dtypes)."""

    dtype: Any = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))


@dataclass(frozen=True)
class LoadOptions:
    """``dtype``: the floating-point dtype to return (default: the dtypes saved before a
    ``save(dtype=)``, or a ``model=``'s own)."""

    dtype: Any = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))


def cast_for_save(model: Any, name: str, meta: dict[str, Any], where: Path) -> Any:
    """What to write instead of ``model`` for ``save(..., dtype=)``: a state dict whose
    floating-point tensors are cast. Records ``meta["cast"]``; ``model`` is left untouched."""
    from . import kinds as _torch

    if _torch.is_module(model):
        sd = dict(model.state_dict())
        if not sd:
            return model  # nothing to cast
    elif _torch.is_state_dict(model):
        sd = dict(model)
    else:
        msg = (
            f"{where}: dtype= casts a torch module or a flat dict of tensors, not a "
            f"{type(model).__name__} (a training checkpoint keeps its own dtypes); cast the "
            f"tensors yourself before saving"
        )
        raise ArgumentError(msg)
    cast, origin = _cast(sd, name)
    kinds = set(origin.values())
    if origin:
        meta["cast"] = {"to": name, "from": kinds.pop() if len(kinds) == 1 else origin}
    return cast


def _cast(sd: dict[str, Any], name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Floating-point tensors of ``sd`` cast to ``name``, each shared tensor once (so ties
    stay detectable), and the original dtype of each cast tensor."""
    import torch

    to = getattr(torch, name)
    done: dict[tuple[Any, ...], Any] = {}
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, t in sd.items():
        if not t.is_floating_point():
            out[key] = t
            continue
        t = t.detach()
        origin[key] = str(t.dtype).replace("torch.", "")
        ident = (
            (
                t.untyped_storage().data_ptr(),
                t.storage_offset(),
                tuple(t.shape),
                tuple(t.stride()),
                t.dtype,
                t.device,
            )
            if t.device.type != "meta"
            else (id(t),)
        )
        if ident not in done:
            done[ident] = t.to(to)
        out[key] = done[ident]
    return out, origin


def _floating(name: Any) -> Any:
    """The torch floating-point dtype called ``name``, or None (the name comes from a file:
    only a real floating dtype is accepted, never any other attribute of torch)."""
    import torch

    if not isinstance(name, str) or name.startswith("_"):
        return None
    found = getattr(torch, name, None)
    return found if isinstance(found, torch.dtype) and found.is_floating_point else None


def recorded_from(meta: dict[str, Any] | None, where: Path) -> str | dict[str, str] | None:
    """The validated ``from`` of ``meta["cast"]`` (it comes from the file: untrusted)."""
    cast = (meta or {}).get("cast")
    if cast is None:
        return None
    frm = cast.get("from") if isinstance(cast, dict) else None
    if isinstance(frm, str):
        return frm
    if isinstance(frm, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in frm.items()
    ):
        return frm
    raise FormatError(f"{where}: the modelstore metadata has a malformed 'cast' entry")


def for_load(
    sd: dict[str, Any], meta: dict[str, Any] | None, dtype: str | None, where: Path
) -> dict[str, Any]:
    """The state dict ``load`` returns: floating tensors cast to ``dtype`` if given, else
    back to the dtypes recorded before a ``save(..., dtype=)``. Tensors already right are
    returned as they are (zero-copy); tensors that share one object stay shared."""
    target = dtype if dtype is not None else recorded_from(meta, where)
    if target is None:
        return sd
    done: dict[tuple[int, str], Any] = {}
    out: dict[str, Any] = {}
    for key, t in sd.items():
        want = target if isinstance(target, str) else target.get(key)
        to = _floating(want) if want is not None else None
        if to is None or not t.is_floating_point() or t.dtype == to:
            out[key] = t
            continue
        ident = (id(t), str(to))
        if ident not in done:
            done[ident] = t.to(to)
        out[key] = done[ident]
    return out


def cast_module(module: Any, dtype: str | None) -> Any:
    """``module`` with its floating-point parameters and buffers in ``dtype`` (if given)."""
    if dtype is not None:
        module.to(_floating(dtype))
    return module


def for_load_object(obj: Any, meta: dict[str, Any] | None, dtype: str | None, where: Path) -> Any:
    """Apply :func:`for_load` to what a ``.pt`` load returned: a state dict is restored or
    cast; a module is cast; a nested checkpoint only refuses an explicit ``dtype=``."""
    from . import kinds as _torch

    if _torch.is_module(obj):
        return cast_module(obj, dtype)
    if _torch.is_state_dict(obj):
        return for_load(obj, meta, dtype, where)
    if dtype is not None:
        msg = (
            f"{where}: dtype= casts a state dict or a module, but the file holds a "
            f"{type(obj).__name__} (a training checkpoint); load it without dtype= and cast what you need"
        )
        raise ArgumentError(msg)
    return obj

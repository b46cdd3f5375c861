"""Dynamically quantized torch modules (``torch.ao.quantization.quantize_dynamic``).

What their state dict holds (torch 2.x): for each quantized ``Linear``, ``PREFIX.scale`` and
``PREFIX.zero_point`` (plain tensors), ``PREFIX._packed_params.dtype`` (a ``torch.dtype``:
``qint8`` or ``float16``) and ``PREFIX._packed_params._packed_params``, a tuple of the
quantized weight (a ``qint8`` tensor with its qscheme, scale(s) and zero point(s)) and the
float bias. ``torch.save`` writes those with ``torch._utils._rebuild_qtensor``, the
``QInt8Storage`` and the ``per_tensor_affine``/``per_channel_affine`` scheme objects: names
already on the torch allow-list (``security/allowlist.py``) and on torch's own ``weights_only``
list, so a ``.pt`` of one loads through the same gate as any state dict, with nothing added.

Quantized ``LSTM``/``GRU`` cells are different: their state dict holds TorchScript objects
(``torch.classes.rnn.CellParamsBase``) that only a code-running unpickler rebuilds, so saving
one is refused with what to do instead. safetensors holds plain tensors only, so a quantized
module is refused there too (with the same advice).

Loading: ``load(path, model=Net)`` builds ``Net(**config)``, quantizes the submodules the
state dict says are quantized (their names and dtypes come from the file, each checked: a
submodule of the model, a ``torch.nn.Linear``, a dtype dynamic quantization produces), then
loads the state dict, so the caller need not repeat the ``quantize_dynamic`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ArchitectureMismatchError, UnsupportedModelError
from .kinds import is_module

_PACKED = "._packed_params._packed_params"
_DTYPE = "._packed_params.dtype"
#: dtypes ``quantize_dynamic`` gives a Linear's packed weight.
_DTYPES = ("qint8", "float16")

ADVICE = (
    "save the float model instead (ms.save(model, 'model.safetensors')) and quantize after "
    "loading, or export the float model to ONNX and quantize that: "
    "ms.export_onnx(model, 'model.onnx', sample_input=x); ms.quantize('model.onnx', 'model.int8.onnx')"
)


def quantized_modules(module: Any) -> dict[str, str]:
    """Submodule name -> class (``torch.ao.nn.quantized...``) of every quantized submodule."""
    found = {}
    for name, sub in module.named_modules():
        cls = type(sub)
        if cls.__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")) and (
            "PackedParam" not in cls.__name__  # the weight holder inside each layer
        ):
            found[name] = f"{cls.__module__}.{cls.__qualname__}"
    return found


def is_quantized(obj: Any) -> bool:
    """A module with quantized submodules, or a state dict holding packed quantized weights."""
    if is_module(obj):
        return bool(quantized_modules(obj))
    return isinstance(obj, dict) and bool(packed(obj))


def packed(sd: dict[str, Any]) -> dict[str, str]:
    """Submodule name -> dtype name of each packed quantized Linear a state dict holds."""
    out = {}
    for key, value in sd.items():
        if isinstance(key, str) and ("." + key).endswith(_DTYPE):
            out[key[: -len(_DTYPE)].rstrip(".")] = str(value).replace("torch.", "")
    return out


def refuse_unsavable(obj: Any, target: Path, fmt: str) -> None:
    """Refuse what a file of format ``fmt`` cannot hold safely: any quantized module in
    safetensors, and quantized modules holding TorchScript objects anywhere."""
    if not is_quantized(obj):
        return
    if fmt == "safetensors":
        msg = (
            f"{target}: safetensors holds plain tensors, and this dynamically quantized model "
            f"holds packed int8 weights; save it as .pt (ms.save(qmodel, 'model.pt'), loaded "
            f"with model=YourClass, which is quantized again the same way), or {ADVICE}"
        )
        raise UnsupportedModelError(msg)
    sd = obj.state_dict() if is_module(obj) else obj
    scripted = sorted(
        k for k, v in sd.items() if type(v).__name__ == "ScriptObject" or _has_script(v)
    )
    if scripted:
        kinds = sorted(
            {c.rsplit(".", 1)[-1] for c in quantized_modules(obj).values() if "rnn" in c}
            if is_module(obj)
            else set()
        )
        what = f"quantized {', '.join(kinds)} layers" if kinds else "this quantized model"
        msg = (
            f"{target}: {what} keep TorchScript objects in the state dict ({scripted[0]}"
            f"{' ...' if len(scripted) > 1 else ''}), which only a code-running unpickler can "
            f"rebuild, so modelstore will not write them; {ADVICE}"
        )
        raise UnsupportedModelError(msg)


def _has_script(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and any(
        type(v).__name__ == "ScriptObject" for v in value
    )


def describe(module: Any) -> dict[str, Any] | None:
    """What the metadata records about a quantized module (for ``inspect``; the load reads
    the state dict itself)."""
    if not is_module(module):
        return None
    found = quantized_modules(module)
    if not found:
        return None
    dtypes = packed(module.state_dict())
    return {
        "method": "torch.ao.quantization.quantize_dynamic",
        "modules": {n: {"class": c, "dtype": dtypes.get(n)} for n, c in found.items()},
    }


def build(sd: dict[str, Any], target: Any, config: dict[str, Any], where: Path) -> Any:
    """The module ``target`` (a class or an instance) with the quantized state dict ``sd``
    loaded: float ``Linear`` submodules the file holds quantized are quantized first."""
    import torch

    from .common import construct

    module = construct(target, config, where, on_meta=False) if isinstance(target, type) else target
    if not is_module(module):
        msg = f"{where}: model= must be a torch.nn.Module class or instance, not {type(target).__name__}"
        raise UnsupportedModelError(msg)
    wanted = packed(sd)
    have = dict(module.named_modules())
    for name, dtype in sorted(wanted.items()):
        sub = have.get(name)
        if sub is None or type(sub).__module__.startswith("torch.ao.nn.quantized"):
            continue  # already quantized, or reported as unexpected keys by the load
        if type(sub) is not torch.nn.Linear:
            msg = (
                f"{where}: the file holds {name} dynamically quantized, but the model's {name} "
                f"is a {type(sub).__qualname__}, not a torch.nn.Linear"
            )
            raise ArchitectureMismatchError(msg)
        if dtype not in _DTYPES:
            msg = (
                f"{where}: the file's {name} is packed as {dtype!r}; dynamic quantization of a "
                f"Linear gives {' or '.join(_DTYPES)}"
            )
            raise ArchitectureMismatchError(msg)
        module = _swap(module, name, sub, getattr(torch, dtype))
    return module


def _swap(module: Any, name: str, linear: Any, dtype: Any) -> Any:
    """Replace the float ``Linear`` at ``name`` by an empty dynamically quantized one (what
    ``quantize_dynamic`` puts there; the state dict then fills its packed weight); returns
    the root module (the new one when the root itself is that Linear)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    quantized = DynamicLinear(  # type: ignore[no-untyped-call]
        linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=dtype
    )
    if not name:
        return quantized
    parent_name, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, leaf, quantized)
    return module


def load_into(module: Any, sd: dict[str, Any], strict: bool, where: Path) -> list[str]:
    """``module.load_state_dict(sd)``, mismatches raised (strict) or returned as text.

    Quantized modules read their state by layout version (torch keeps it in the state
    dict's ``_metadata``); a state dict that lost it is read with the module's own."""
    from collections import OrderedDict

    if getattr(sd, "_metadata", None) is None:
        versions = getattr(module.state_dict(), "_metadata", None)
        sd = OrderedDict(sd)
        sd._metadata = versions  # type: ignore[attr-defined]
    try:
        result = module.load_state_dict(sd, strict=False)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        msg = (
            f"{where}: the quantized weights do not fit {type(module).__qualname__} ({first}); "
            f"pass the class the file was saved from, with its config"
        )
        raise ArchitectureMismatchError(msg) from None
    problems = []
    shaped = _misshaped(module)
    if shaped:  # packing takes any shape: the first forward would fail (or worse)
        msg = (
            f"{where}: the quantized weights do not fit {type(module).__qualname__}: mis-shaped "
            f"{len(shaped)}: {', '.join(shaped[:20])}. Pass the class the file was saved from, "
            f"with its config"
        )
        raise ArchitectureMismatchError(msg, [], [], shaped)
    if result.missing_keys:
        problems.append(
            f"missing {len(result.missing_keys)}: {', '.join(result.missing_keys[:20])}"
        )
    if result.unexpected_keys:
        problems.append(
            f"unexpected {len(result.unexpected_keys)}: {', '.join(result.unexpected_keys[:20])}"
        )
    if problems and strict:
        msg = (
            f"{where}: the quantized weights do not fit {type(module).__qualname__}: "
            f"{'; '.join(problems)}. Pass the class the file was saved from, or strict=False"
        )
        raise ArchitectureMismatchError(
            msg, list(result.missing_keys), list(result.unexpected_keys), []
        )
    return problems


def _misshaped(module: Any) -> list[str]:
    """Quantized Linears whose loaded weight or bias disagrees with their in/out features."""
    out = []
    for name, sub in module.named_modules():
        if not callable(getattr(sub, "_weight_bias", None)) or not hasattr(sub, "in_features"):
            continue
        weight, bias = sub._weight_bias()
        want = (sub.out_features, sub.in_features)
        if tuple(weight.shape) != want:
            out.append(f"{name or '<root>'}: file {tuple(weight.shape)} vs model {want}")
        elif bias is not None and tuple(bias.shape) != (sub.out_features,):
            out.append(
                f"{name or '<root>'} bias: file {tuple(bias.shape)} vs model ({sub.out_features},)"
            )
    return out

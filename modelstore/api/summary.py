"""``ms.summary``: a per-layer table of a model (the torchinfo / Keras ``model.summary()`` view).

For torch modules the output shapes come from a real forward pass with hooks on the meta
device (weights and inputs replaced by meta stand-ins: no memory, no arithmetic), or where the
module lives when its forward needs real values. Parameters and buffers are counted apart (BatchNorm's running statistics are buffers,
not parameters), and so are trainable and frozen parameters. Keras models report what Keras
reports; ONNX files are read without their external data and shapes come from ONNX's shape
inference. Nothing runs code from a file unless the caller passes ``trust=True`` (to import a
recorded class).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import (
    ArchitectureMismatchError,
    ArgumentError,
    UnsafeModelError,
    UnsupportedModelError,
)
from .summary_keras import build_keras, keras_summary, onnx_summary
from .summary_table import LayerSummary, Summary
from .summary_torch import is_torch_module, torch_inputs, torch_summary

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")  # nn.BatchNorm*'s buffers


def summary(
    model_or_path: Any,
    *,
    input_size: Any = None,
    sample_input: Any = None,
    model: Any = None,
    trust: bool = False,
) -> Summary:
    """A per-layer table of a model: name, type, output shape, parameters, trainable or frozen.

    Without ``input_size`` or ``sample_input`` the signature recorded at save time is used,
    with a batch of 1; without any, output shapes stay empty.

    Parameters
    ----------
    model_or_path : a torch module, a Keras model, an ONNX ``ModelProto``, or a model file
        (safetensors, torch ``.pt``/``.pth``, ``.keras``/``.h5``, ``.onnx``).
    input_size : the input's shape with the batch dimension, e.g. ``(1, 64)`` (a list of
        shapes for several inputs); a float32 input of zeros is run through the model.
    sample_input : an example input instead (array or tensor, or a tuple of them).
    model : for a torch weights file, the class to build (on the meta device, from the
        recorded ``config``) or an instance: types and output shapes then show.
    trust : for a torch weights file, import the class the file records (runs its module's
        import code; only for files you trust). Without ``model=`` or ``trust``, the layers come
        from the stored tensor names.

    Returns
    -------
    Summary

    Raises
    ------
    ArgumentError, UnsupportedModelError, ArchitectureMismatchError, FormatError, ModelNotFoundError

    Examples
    --------
    >>> print(ms.summary(net, input_size=(1, 64)))
    >>> ms.summary("digits.safetensors", model=Net).total_params
    """
    if input_size is not None and sample_input is not None:
        raise ArgumentError("give input_size or sample_input, not both")
    if trust is not True and trust is not False:
        raise ArgumentError(f"trust must be True or False, not {trust!r}")
    if isinstance(model_or_path, (str, os.PathLike)):
        return _file_summary(Path(model_or_path), input_size, sample_input, model, trust)
    if model is not None:
        raise ArgumentError(
            "model= is for a weights file; pass the module itself as the first argument"
        )
    if is_torch_module(model_or_path):
        return torch_summary(model_or_path, torch_inputs(input_size, sample_input, model_or_path))
    if _is_keras_model(model_or_path):
        if not model_or_path.built and (input_size is not None or sample_input is not None):
            build_keras(model_or_path, input_size, sample_input)
        return keras_summary(model_or_path, type(model_or_path).__name__)
    own_path = getattr(model_or_path, "path", None)
    if type(model_or_path).__module__.startswith("modelstore.") and isinstance(
        own_path, (str, Path)
    ):
        return _file_summary(
            Path(own_path), input_size, sample_input, None, False
        )  # a loaded ONNX model
    if type(model_or_path).__module__.startswith("onnx") and hasattr(model_or_path, "graph"):
        return onnx_summary(model_or_path, "onnx model")
    msg = (
        f"summary() does not know a {type(model_or_path).__module__}.{type(model_or_path).__qualname__}; "
        f"pass a torch module, a Keras model, an ONNX model or a model file's path"
    )
    raise UnsupportedModelError(msg)


def _is_keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


# -- files --------------------------------------------------------------------------------


def _file_summary(p: Path, input_size: Any, sample_input: Any, model: Any, trust: bool) -> Summary:
    from .inspect import inspect, recorded_metadata
    from .load import load

    info = inspect(p)
    if info.format == "onnx":
        import onnx

        from ..formats.onnx.backend import external_data_problems
        from ..pipeline.read import reading

        with open(p, "rb") as f:  # one read: the graph checked is the graph summarised
            data = f.read()
        with reading(p, "read the graph of"):
            proto = onnx.load_model_from_string(data)
        if external_data_problems(proto, p):
            raise UnsafeModelError(
                f"{p}: the scan did not call it safe (see ms.scan); not reading its graph"
            )
        return onnx_summary(proto, p.name)
    if info.format == "keras":
        return keras_summary(load(p), p.name)
    if info.framework != "torch" and info.format not in ("torch", "safetensors"):
        raise UnsupportedModelError(
            f"{p}: summary() reads torch, safetensors, Keras and ONNX files, "
            f"not {info.format}; try ms.inspect(path) or ms.stats(path)"
        )
    meta = recorded_metadata(p)
    cls = model
    if cls is None and trust and meta.get("model_class"):
        cls = _import_class(str(meta["model_class"]), p)
    if cls is None:
        return _tensor_summary(info, p, meta)
    module = _build_meta(cls, dict(meta.get("config") or {}), p)
    _check_layout(module, info, p)
    if input_size is None and sample_input is None and info.signature:
        input_size, dtype = _from_signature(info.signature)
    else:
        dtype = None
    return torch_summary(
        module,
        torch_inputs(input_size, sample_input, module, dtype),
        type(module).__name__,
        [
            f"built from {p.name} on the meta device (no weights read); trainable/frozen "
            f"as the class builds it (files do not record requires_grad)"
        ],
    )


def _import_class(path: str, where: Path) -> type:
    module_name, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ArchitectureMismatchError(
            f"{where}: the file records the class {path}, which cannot be imported "
            f"here ({e}); pass it yourself: ms.summary(path, model=Net)"
        ) from None
    if not isinstance(obj, type):
        raise ArchitectureMismatchError(f"{where}: the recorded {path} is not a class")
    return obj


def _build_meta(cls: Any, config: dict[str, Any], where: Path) -> Any:
    import torch

    if is_torch_module(cls):
        return cls  # an instance given as model=
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise ArgumentError(f"model= must be a torch.nn.Module class or instance, not {cls!r:.100}")
    try:
        with torch.device("meta"):
            return cls(**config)
    except TypeError as e:
        raise ArchitectureMismatchError(
            f"{where}: could not build {cls.__qualname__}(**{config!r}): {e}; the file "
            f"was saved with that config; pass a class that accepts it, or an instance: "
            f"model={cls.__qualname__}(...)"
        ) from None


def _check_layout(module: Any, info: Any, where: Path) -> None:
    stored = {t.name: tuple(t.shape) for t in info.tensors}
    built = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(built) - set(stored))
    unexpected = sorted(set(stored) - set(built))
    shaped = sorted(k for k in set(built) & set(stored) if built[k] != stored[k])
    if stored and (missing or unexpected or shaped):
        msg = (
            f"{where}: {type(module).__name__} does not match the stored weights: missing {missing[:10]}, "
            f"unexpected {unexpected[:10]}, mis-shaped {shaped[:10]}"
        )
        raise ArchitectureMismatchError(msg)


def _from_signature(signature: dict[str, Any]) -> tuple[list[list[int]] | None, str | None]:
    inputs = signature.get("inputs") or []
    sizes = []
    for item in inputs:
        shape = item.get("shape") if isinstance(item, dict) else None
        if not isinstance(shape, list) or not all(
            d is None or (type(d) is int and d > 0) for d in shape
        ):
            return None, None
        sizes.append([1 if d is None else d for d in shape])
    dtype = inputs[0].get("dtype") if inputs and isinstance(inputs[0], dict) else None
    return (sizes or None), (dtype if isinstance(dtype, str) else None)


def _tensor_summary(info: Any, p: Path, meta: dict[str, Any]) -> Summary:
    """Layers from stored tensor names (``fc1.weight`` -> layer ``fc1``), without any class."""
    groups: dict[str, list[int]] = {}
    for t in info.tensors:
        layer, _, leaf = t.name.rpartition(".")
        row = groups.setdefault(layer, [0, 0])
        row[1 if leaf in _BUFFER_SUFFIXES else 0] += t.numel
    rows = [
        LayerSummary(name or "(root)", "?", 1, None, params, None, buf)
        for name, (params, buf) in groups.items()
    ]
    total = sum(r.params for r in rows)
    buffers = sum(r.buffers for r in rows)
    recorded = meta.get("model_class")
    hint = (
        f"pass model={str(recorded).rpartition(':')[2]} (or trust=True to import the recorded {recorded})"
        if recorded
        else "pass model=YourClass"
    )
    notes = [f"layers from the stored tensor names; {hint} for types and output shapes"]
    if buffers:
        notes.append(
            "buffers recognised by name (BatchNorm's running_mean, running_var, num_batches_tracked)"
        )
    return Summary(
        p.name,
        info.framework or info.format,
        rows,
        total,
        None,
        buffers,
        None,
        notes,
        sum(t.nbytes for t in info.tensors),
    )

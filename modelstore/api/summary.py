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

import dataclasses
import importlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._info import printable
from ..errors import (
    ArchitectureMismatchError,
    ArgumentError,
    UnsafeModelError,
    UnsupportedModelError,
)

Shape = list[int | None]
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")  # nn.BatchNorm*'s buffers


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its name, type, output shape and the parameters it owns itself.

    ``params`` and ``trainable`` count the layer's own parameters (not its children's), so the
    column adds up to the total; ``buffers`` counts its own buffer values.
    """

    name: str
    type: str
    depth: int
    output_shape: Shape | None
    params: int
    trainable: int | None
    buffers: int = 0


@dataclass(frozen=True)
class Summary:
    """A model's layers with totals; ``str()`` is a table, ``to_dict()`` JSON, and notebooks
    show ``_repr_html_``.

    ``trainable_params`` is None where the format does not record it (ONNX).
    """

    name: str
    framework: str
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int | None
    buffers: int
    input_shapes: list[Shape] | None = None
    notes: list[str] = field(default_factory=list)
    size_bytes: int | None = None  # parameters and buffers as stored (None where unknown)

    @property
    def frozen_params(self) -> int | None:
        return None if self.trainable_params is None else self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "frozen_params": self.frozen_params}

    def _rows(self) -> list[list[str]]:
        rows = [["layer", "type", "output shape", "params", "trainable"]]
        for r in self.layers:
            shape = (
                ""
                if r.output_shape is None
                else "x".join("?" if d is None else str(d) for d in r.output_shape)
            )
            rows.append(
                [
                    "  " * (r.depth - 1) + printable(r.name),
                    printable(r.type),
                    shape,
                    f"{r.params:,}" if r.params else "-",
                    ""
                    if r.trainable is None or not r.params
                    else (
                        "yes"
                        if r.trainable == r.params
                        else "no"
                        if r.trainable == 0
                        else f"{r.trainable:,}"
                    ),
                ]
            )
        return rows

    def __str__(self) -> str:
        rows = self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {3}
        lines = [f"{self.name} ({self.framework})"]
        if self.input_shapes:
            lines[0] += "  input " + ", ".join(
                "x".join("?" if d is None else str(d) for d in s) for s in self.input_shapes
            )
        lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        for i, r in enumerate(rows):
            cells = [
                c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))
            ]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append(lines[1])
        lines.append(lines[1])
        lines.append(f"total params: {self.total_params:,}")
        if self.trainable_params is not None:
            lines.append(f"trainable params: {self.trainable_params:,}")
            lines.append(f"frozen params: {self.frozen_params:,}")
        lines.append(f"buffers (not params): {self.buffers:,}")
        if self.size_bytes is not None:
            lines.append(f"weights size: {_human(self.size_bytes)} (params and buffers)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        rows = self._rows()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
        )
        totals = f"total params {self.total_params:,}"
        if self.trainable_params is not None:
            totals += f", trainable {self.trainable_params:,}, frozen {self.frozen_params:,}"
        totals += f"; buffers {self.buffers:,}"
        notes = "".join(f"<br><i>{html.escape(n)}</i>" for n in self.notes)
        return (
            f"<p><b>{html.escape(self.name)}</b> ({html.escape(self.framework)})</p>"
            f"<table><tr>{head}</tr>{body}</table><p>{totals}{notes}</p>"
        )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def summary(
    model_or_path: Any,
    *,
    input_size: Any = None,
    sample_input: Any = None,
    model: Any = None,
    trust: bool = False,
) -> Summary:
    """A per-layer table of a model: name, type, output shape, parameters, trainable or frozen.

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

    Without ``input_size`` or ``sample_input`` the signature recorded at save time is used
    (batch of 1); without any, output shapes stay empty.

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
    if _is_torch_module(model_or_path):
        return torch_summary(model_or_path, _inputs(input_size, sample_input, model_or_path))
    if _is_keras_model(model_or_path):
        if not model_or_path.built and (input_size is not None or sample_input is not None):
            _build_keras(model_or_path, input_size, sample_input)
        return _keras_summary(model_or_path, type(model_or_path).__name__)
    own_path = getattr(model_or_path, "path", None)
    if type(model_or_path).__module__.startswith("modelstore.") and isinstance(
        own_path, (str, Path)
    ):
        return _file_summary(
            Path(own_path), input_size, sample_input, None, False
        )  # a loaded ONNX model
    if type(model_or_path).__module__.startswith("onnx") and hasattr(model_or_path, "graph"):
        return _onnx_summary(model_or_path, "onnx model")
    msg = (
        f"summary() does not know a {type(model_or_path).__module__}.{type(model_or_path).__qualname__}; "
        f"pass a torch module, a Keras model, an ONNX model or a model file's path"
    )
    raise UnsupportedModelError(msg)


# -- torch --------------------------------------------------------------------------------


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # never imported just to recognise an object
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _inputs(
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
        return _onnx_summary(proto, p.name)
    if info.format == "keras":
        return _keras_summary(load(p), p.name)
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
        _inputs(input_size, sample_input, module, dtype),
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

    if _is_torch_module(cls):
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


# -- Keras --------------------------------------------------------------------------------


def _build_keras(model: Any, input_size: Any, sample_input: Any) -> None:
    """Build an unbuilt Keras model the way its users do: call it once (or ``build``)."""
    import numpy as np

    try:
        if sample_input is not None:
            model(np.asarray(sample_input))
        else:
            model.build((None, *tuple(input_size)[1:]))
    except Exception as e:  # the user's model rejected the shape
        msg = (
            f"could not build {type(model).__name__} for input "
            f"{tuple(np.shape(sample_input)) if sample_input is not None else tuple(input_size)}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )
        raise ArgumentError(msg) from None


def _keras_summary(model: Any, name: str) -> Summary:
    rows = []
    for layer in model.layers:
        try:
            shape: Shape | None = [None if d is None else int(d) for d in layer.output.shape]
        except (AttributeError, ValueError, TypeError):
            shape = None  # a layer never called on a symbolic input has no output yet
        params = int(layer.count_params()) if layer.built else 0
        train = sum(math.prod(int(d) for d in w.shape) for w in layer.trainable_weights)
        rows.append(LayerSummary(layer.name, type(layer).__name__, 1, shape, params, int(train)))
    total = int(model.count_params()) if model.built else 0
    trainable = sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights)
    notes = [
        "as Keras counts them: non-trainable weights (e.g. BatchNorm moving statistics) are frozen params"
    ]
    if not model.built:
        notes.append(
            "the model is not built yet: call it once or build(input_shape) for shapes and counts"
        )
    try:
        ins: list[Shape] | None = [
            [None if d is None else int(d) for d in t.shape] for t in model.inputs
        ]
    except (AttributeError, ValueError, TypeError):
        ins = None
    return Summary(name, "keras", rows, total, int(trainable), 0, ins, notes)


# -- ONNX ---------------------------------------------------------------------------------


def _onnx_summary(proto: Any, name: str) -> Summary:
    import onnx

    sizes = {t.name: math.prod(t.dims) for t in proto.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - shape inference is a nicety; a graph it cannot follow still lists
        inferred = proto
    shapes: dict[str, Shape] = {}
    for vi in (
        list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    ):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    used: set[str] = set()
    rows = []
    for i, node in enumerate(proto.graph.node):
        own = [x for x in node.input if x in sizes and x not in used]
        used.update(own)
        out = node.output[0] if node.output else ""
        rows.append(
            LayerSummary(
                node.name or f"{node.op_type}_{i}",
                node.op_type,
                1,
                shapes.get(out),
                sum(sizes[x] for x in own),
                None,
            )
        )
    inits = set(sizes)
    ins = [shapes.get(vi.name, []) for vi in proto.graph.input if vi.name not in inits]
    notes = ["ONNX records no trainable/frozen split; shapes from ONNX shape inference"]
    return Summary(name, "onnx", rows, sum(sizes.values()), None, 0, ins or None, notes)

"""Keras and ONNX summaries: what Keras reports, and ONNX graphs with shapes from shape inference."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ArgumentError
from .summary_table import LayerSummary, Shape, Summary


def build_keras(model: Any, input_size: Any, sample_input: Any) -> None:
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


def keras_summary(model: Any, name: str) -> Summary:
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


def onnx_summary(proto: Any, name: str) -> Summary:
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

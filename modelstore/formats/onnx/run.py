"""Running a loaded ONNX model: execution providers for a device, batched runs, ZipMap
outputs as arrays, probabilities and labels, and onnxruntime's errors as modelstore's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ArgumentError
from ..base import PredictRequest, labels_from_scores
from ..shapes import expected_shapes, fit_hint, runtime_message
from .classes import is_zipmap, map_labels, zipmap_to_array


def predict(model: Any, inputs: Any, request: PredictRequest) -> Any:
    """``ms.predict`` on an :class:`OnnxModel`: batches, ZipMap outputs, probabilities, labels."""

    if request.device not in (None, "cpu") and request.device.split(":")[0] != "cuda":
        raise ArgumentError(f"device={request.device!r}: load the model with that device instead")
    if inputs is None:
        raise ArgumentError("predict needs inputs, got None")
    feed = model.feed(inputs)
    n = len(next(iter(feed.values())))
    step = request.batch_size or n or 1
    try:
        if step >= n:
            outs = model.session.run(None, feed)
        else:
            parts = [
                model.session.run(None, {k: v[s : s + step] for k, v in feed.items()})
                for s in range(0, n, step)
            ]
            outs = [_join([p[i] for p in parts]) for i in range(len(parts[0]))]
    except Exception as e:  # onnxruntime's InvalidArgument / Fail for wrong shapes or types
        given = [tuple(v.shape) for v in feed.values()]
        expected = expected_shapes(model.meta) or [list(i.shape) for i in model.inputs]
        msg = (
            f"{model.path}: the inputs (shape {', '.join(map(str, given))}) do not fit the model: "
        )
        raise ArgumentError(msg + runtime_message(e) + fit_hint(given, expected)) from None
    if request.output == "raw":
        return outs[0]
    classes = getattr(model, "classes", None)
    outs = [zipmap_to_array(o, classes, model.path) if is_zipmap(o) else o for o in outs]
    proba = _probabilities(model, outs)
    if request.output == "proba":
        return proba
    labels = request.labels or model.labels
    first = outs[0]
    if len(outs) > 1 and getattr(first, "ndim", 0) == 1:  # classifier exports give labels directly
        return map_labels(first, classes, labels)
    return labels_from_scores(proba, labels)


def _join(parts: list[Any]) -> Any:
    import numpy as np

    if all(isinstance(p, list) for p in parts):  # ZipMap outputs: lists of dicts
        return [row for p in parts for row in p]
    return np.concatenate(parts)


def _probabilities(model: Any, outs: list[Any]) -> Any:
    import numpy as np

    names = [o.name.lower() for o in model.outputs]
    for i, name in enumerate(names):
        if "prob" in name and i < len(outs):
            return outs[i]
    out = np.asarray(outs[0], dtype=np.float64)
    if out.ndim and (out.min() >= 0) and np.allclose(out.sum(axis=-1), 1, atol=1e-4):
        return outs[0]  # already probabilities (a softmax at the end)
    e = np.exp(out - out.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def providers_for(device: str | None, ort: Any, path: Path) -> list[str]:
    available = ort.get_available_providers()
    if device is None or device == "cpu":
        return ["CPUExecutionProvider"]
    if device.split(":")[0] == "cuda":
        if "CUDAExecutionProvider" not in available:
            msg = (
                f"{path}: device={device!r} needs onnxruntime's CUDAExecutionProvider, which this "
                f"onnxruntime lacks (it has {available}); install onnxruntime-gpu or use device='cpu'"
            )
            raise ArgumentError(msg)
        index = device.split(":")[1] if ":" in device else "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]  # type: ignore[list-item]
    raise ArgumentError(
        f"{path}: device={device!r} is not supported for ONNX (use 'cpu' or 'cuda')"
    )

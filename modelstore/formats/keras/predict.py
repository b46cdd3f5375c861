"""``ms.predict`` for Keras models: numpy in and out, one ``predict_on_batch`` per batch.

Imported only when a Keras model is predicted; Keras itself is never imported here (the model
object brings it)."""

from __future__ import annotations

from typing import Any

from ...errors import ArgumentError
from ..base import PredictRequest, labels_from_scores


def predict(model: Any, inputs: Any, request: PredictRequest) -> Any:
    import numpy as np

    if request.device not in (None, "cpu"):
        raise ArgumentError(f"device={request.device!r}: Keras places models itself; use device=None")
    if inputs is None:
        raise ArgumentError("predict needs inputs (an array or list), got None")
    try:
        if isinstance(inputs, dict):
            x: Any = inputs
        elif isinstance(inputs, tuple) and all(hasattr(i, "shape") for i in inputs):
            x = [np.asarray(i) for i in inputs]  # several model inputs, in order
        else:
            x = np.asarray(inputs)
    except ValueError as e:
        raise ArgumentError(f"predict inputs must be rectangular: {e}") from None
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise ArgumentError(f"predict inputs must be numbers, got {x.dtype}")
        if x.dtype == np.float64:
            x = x.astype(np.float32)
    try:
        out = run_batches(model, x, request.batch_size)
    except Exception as e:  # TensorFlow raises its own error types for bad shapes
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ArgumentError(f"the inputs do not fit the model: {first}") from None
    if request.output in ("proba", "label"):
        out = to_probabilities(out, _last_activation(model))
    if request.output == "label":
        return labels_from_scores(out, request.labels)
    return out


#: Without ``batch_size=``, inputs up to this many rows run as one batch; larger ones in
#: batches of this many (Keras' own ``model.predict`` would use 32).
ONE_BATCH = 1024


def _rows(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, dict):
        return {k: v[start:stop] for k, v in x.items()}
    if isinstance(x, list):
        return [v[start:stop] for v in x]
    return x[start:stop]


def _count(x: Any) -> int:
    first = next(iter(x.values()), None) if isinstance(x, dict) else (x[0] if isinstance(x, list) and x else x)
    shape = getattr(first, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 1
    return len(first) if first is not None else 0


def run_batches(model: Any, x: Any, batch_size: int | None) -> Any:
    """``model.predict_on_batch`` per batch (one call when the input fits one batch), not
    ``model.predict``, which builds a tf.data pipeline on every call (~100x slower for a batch)."""
    import numpy as np

    n = _count(x)
    step = batch_size or (n if n <= ONE_BATCH else ONE_BATCH)
    if n <= step:
        return np.asarray(model.predict_on_batch(x))
    parts = [model.predict_on_batch(_rows(x, s, s + step)) for s in range(0, n, step)]
    if isinstance(parts[0], (list, tuple)):  # several outputs: join each across the batches
        return np.asarray([np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0]))])
    return np.concatenate([np.asarray(p) for p in parts])


def to_probabilities(out: Any, activation: str | None) -> Any:
    """Class probabilities from raw outputs: one column is a binary (sigmoid) output and
    becomes [1 - p, p]; several columns get a softmax unless the model ends in one."""
    import numpy as np

    if out.ndim >= 1 and out.shape[-1] == 1:
        p = out if activation == "sigmoid" else 1 / (1 + np.exp(-out))
        return np.concatenate([1 - p, p], axis=-1)
    if activation in ("softmax", "sigmoid"):
        return out
    exp = np.exp(out - out.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _last_activation(model: Any) -> str | None:
    try:
        act = model.layers[-1].get_config().get("activation")
    except (AttributeError, IndexError, NotImplementedError):
        return None
    return act if isinstance(act, str) else None

"""``ms.predict`` on Keras models, including several named inputs and outputs.

Inputs: one array; a dict by input name (checked against the model's names before Keras
sees it, so a wrong key is an error that lists the names and their order); or a tuple/list
with one array per input, in the model's order. Outputs keep the model's structure: a model
built with a dict of outputs gives a dict of arrays, one built with a list gives a list, a
single output one array. ``output="proba"``/``"label"`` apply to each output, with that
output's own final activation.
"""

from __future__ import annotations

from typing import Any

from ...errors import ArgumentError
from ..base import PredictRequest, labels_from_scores


def input_names(model: Any) -> list[str]:
    """The model's input names in the order it takes them ([] when Keras does not say)."""
    try:
        tensors = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        return []
    # Keras keys a dict of inputs by input *layer* name, which differs from the tensor's
    # name when the Input was not named ("input_layer_1" vs "keras_tensor_4")
    layers = [
        layer for layer in getattr(model, "layers", []) if type(layer).__name__ == "InputLayer"
    ]
    names = []
    for t in tensors:
        owner = next((layer for layer in layers if getattr(layer, "output", None) is t), None)
        names.append(str(owner.name if owner is not None else t.name))
    return names


def _takes_dict(model: Any) -> bool:
    """Whether the model was built from a dict of inputs (Keras then wants one back)."""
    try:
        return isinstance(model.input, dict)
    except (AttributeError, TypeError, ValueError):
        return False


def _expects(names: list[str]) -> str:
    return f"the model takes {len(names)} inputs, in this order: {names}"


def _array(value: Any, name: str) -> Any:
    import numpy as np

    try:
        x = np.asarray(value)
    except ValueError as e:
        raise ArgumentError(f"predict input {name!r} must be rectangular: {e}") from None
    if x.dtype.kind not in "biuf":
        raise ArgumentError(f"predict input {name!r} must be numbers, got {x.dtype}")
    return x.astype(np.float32) if x.dtype == np.float64 else x


def one_array(model: Any, inputs: Any) -> Any:
    """``inputs`` as Keras takes them when they are the common call, one numpy array of
    numbers for a one-input model (no names to look up), else None."""
    import numpy as np

    if type(inputs) is not np.ndarray or inputs.dtype.kind not in "biuf":
        return None
    try:
        if len(model.inputs) != 1:
            return None
    except (AttributeError, TypeError, ValueError):  # a subclassed model not built
        return None
    dtype = inputs.dtype  # float64 -> float32 (compared by its fields: comparing a dtype
    # with np.float64 converts the type on every call, measurably slow on a hot path)
    return inputs.astype(np.float32) if dtype.kind == "f" and dtype.itemsize == 8 else inputs


def prepare(model: Any, inputs: Any) -> Any:
    """Inputs as Keras takes them, checked against the model's input names."""
    one = one_array(model, inputs)
    if one is not None:
        return one
    if inputs is None:
        raise ArgumentError(
            "predict needs inputs (an array, a dict by input name, or a list), got None"
        )
    names = input_names(model)
    if isinstance(inputs, dict):
        keys = [str(k) for k in inputs]
        if names and sorted(keys) != sorted(names):
            missing = [n for n in names if n not in keys]
            unknown = [k for k in keys if k not in names]
            detail = "; ".join(
                p
                for p in (
                    f"missing {missing}" if missing else "",
                    f"unknown {unknown}" if unknown else "",
                )
                if p
            )
            raise ArgumentError(f"predict inputs by name: {detail}; {_expects(names)}")
        arrays = {str(k): _array(v, str(k)) for k, v in inputs.items()}
        # a model built from a list takes a list: the dict's entries in the model's order
        return arrays if _takes_dict(model) or not names else [arrays[n] for n in names]
    several = len(names) > 1
    if isinstance(inputs, (tuple, list)) and (
        several
        or (inputs and all(hasattr(i, "shape") for i in inputs) and isinstance(inputs, tuple))
    ):
        if names and len(inputs) != len(names):
            raise ArgumentError(
                f"predict got {len(inputs)} inputs; {_expects(names)} (or pass a dict by name)"
            )
        if several and _takes_dict(model):  # a model built from a dict of inputs takes a dict
            return {n: _array(v, n) for n, v in zip(names, inputs)}
        return [_array(v, names[i] if names else f"input_{i}") for i, v in enumerate(inputs)]
    if several:
        raise ArgumentError(
            f"predict got one array; {_expects(names)}: pass a dict by name or a list in that order"
        )
    return _array(inputs, names[0] if names else "inputs")


def output_activations(model: Any) -> list[str | None]:
    """The final activation of each output, in ``model.outputs`` order."""
    acts: list[str | None] = []
    for t in getattr(model, "outputs", None) or []:
        layer = getattr(getattr(t, "_keras_history", None), "operation", None)
        try:
            act = layer.get_config().get("activation") if layer is not None else None
        except Exception:  # as in last_activation
            act = None
        acts.append(act if isinstance(act, str) else None)
    return acts


def finish(model: Any, out: Any, request: PredictRequest, last_activation: str | None) -> Any:
    """The model's outputs (dict / list / array as built) as numpy, then proba or labels."""
    import numpy as np

    if request.output == "raw" and not isinstance(out, (dict, list, tuple)):
        return np.asarray(out)
    if isinstance(out, dict):
        names = list(getattr(model, "output_names", None) or out)
        keys = [k for k in names if k in out] + [k for k in out if k not in names]
        acts = dict(zip(names, output_activations(model))) if request.output != "raw" else {}
        return {k: _convert(np.asarray(out[k]), request, acts.get(k)) for k in keys}
    if isinstance(out, (list, tuple)):
        acts_list = output_activations(model) if request.output != "raw" else []
        return [
            _convert(np.asarray(o), request, acts_list[i] if i < len(acts_list) else None)
            for i, o in enumerate(out)
        ]
    return _convert(np.asarray(out), request, last_activation, several=False)


def _convert(
    out: Any, request: PredictRequest, activation: str | None, several: bool = True
) -> Any:
    if request.output == "raw":
        return out
    proba = to_probabilities(out, activation)
    if request.output == "proba":
        return proba
    labels = request.labels
    if several and labels and len(labels) != proba.shape[-1]:
        labels = None  # names saved for one output of several: the others give indices
    return labels_from_scores(proba, labels)


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


def last_activation(model: Any) -> str | None:
    try:
        act = model.layers[-1].get_config().get("activation")
    except Exception:  # get_config of custom layers may raise anything (OSError for a lambda)
        return None
    return act if isinstance(act, str) else None


def first_reason(e: Exception) -> str:
    """The line of a Keras/TensorFlow error that says what went wrong (Keras puts a generic
    "Exception encountered when calling ..." line first)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [
        ln
        for ln in lines
        if not ln.startswith(("Exception encountered", "Arguments received", "•"))
    ]
    return (useful or lines or [type(e).__name__])[0][:500]


#: Without ``batch_size=``, inputs up to this many rows run as one batch; larger ones in
#: batches of this many (Keras' own ``model.predict`` would use 32).
ONE_BATCH = 1024


def _rows(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, dict):
        return {k: v[start:stop] for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [v[start:stop] for v in x]
    return x[start:stop]


def _count(x: Any) -> int:
    first = (
        next(iter(x.values()), None)
        if isinstance(x, dict)
        else (x[0] if isinstance(x, (list, tuple)) and x else x)
    )
    shape = getattr(first, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 1
    return len(first) if first is not None else 0


def run_batches(model: Any, x: Any, batch_size: int | None) -> Any:
    """``model.predict_on_batch`` per batch (one call when the input fits one batch), not
    ``model.predict``, which builds a tf.data pipeline on every call (~100x slower for a
    batch). Several outputs (a list or a dict) are joined output by output."""
    import numpy as np

    n = _count(x)
    step = batch_size or (n if n <= ONE_BATCH else ONE_BATCH)
    if n <= step:
        return model.predict_on_batch(x)
    parts = [model.predict_on_batch(_rows(x, s, s + step)) for s in range(0, n, step)]
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0]))]
    return np.concatenate([np.asarray(p) for p in parts])

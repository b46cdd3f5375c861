"""What every backend shares about inputs and outputs: type checks without importing a
framework, input signatures from a sample, labels from scores, feature matrices."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import ArgumentError, UnsupportedModelError


def is_instance_of(obj: Any, module: str, qualname: str) -> bool:
    """``isinstance(obj, module.qualname)`` without importing ``module``: if it was never
    imported, ``obj`` cannot be an instance of a class it defines."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: Any = mod
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(obj, cls)


def describe_inputs(sample: Any) -> dict[str, Any] | None:
    """An input signature from a sample (anything with ``shape`` and ``dtype``), batch
    dimension recorded as None. Duck-typed so it imports no framework."""
    if sample is None:
        return None
    samples = (
        sample
        if isinstance(sample, (list, tuple)) and sample and hasattr(sample[0], "shape")
        else [sample]
    )
    inputs = []
    for i, s in enumerate(samples):
        shape = getattr(s, "shape", None)
        dtype = getattr(s, "dtype", None)
        if shape is None:
            return None
        dims: list[int | None] = [int(d) for d in shape]
        if dims:
            dims[0] = None
        inputs.append(
            {"name": f"input_{i}", "shape": dims, "dtype": str(dtype).replace("torch.", "")}
        )
    return {"inputs": inputs}


def labels_from_scores(scores: Any, labels: list[Any] | None) -> list[Any]:
    """Arg-max over the last axis, mapped through ``labels`` when there are any."""
    import numpy as np

    idx = np.asarray(scores).argmax(axis=-1)
    flat = idx.reshape(-1).tolist()
    if labels:
        if max(flat, default=0) >= len(labels):
            msg = f"the model predicts class {max(flat)} but only {len(labels)} labels were saved"
            raise UnsupportedModelError(msg)
        return [labels[i] for i in flat]
    return [int(i) for i in flat]


def feature_matrix(inputs: Any) -> Any:
    """``inputs`` as a 2-D numeric numpy array (rows x features), or ArgumentError."""
    import numpy as np

    if inputs is None:
        raise ArgumentError("predict needs inputs, got None")
    try:
        x = np.asarray(inputs)
    except ValueError as e:
        raise ArgumentError(f"predict inputs must be rectangular: {e}") from None
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise ArgumentError(
            f"predict inputs must be a 2-D array of numbers (rows x features), got "
            f"{x.dtype} with shape {x.shape}"
        )
    return x

"""``ms.predict``: the backend that runs a model of this type, the labels the model carries.

Which backend runs a type is cached per process (a hot path), bounded, and forgotten when
the backend table changes (``register``, ``refresh_backends``). Labels come from the model
object itself (``formats.base.attached``), never from a process-wide table.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import ArgumentError
from ..formats.base import Backend, PredictRequest, attached
from ..pipeline.registry import REGISTRY

OUTPUTS = ("raw", "proba", "label")
#: Model types whose backend is remembered (a process sees few): bounded all the same; the
#: oldest entry goes first.
CACHE_SIZE = 256

_PREDICTORS: OrderedDict[type, tuple[int, Backend]] = OrderedDict()
#: What runs the plain request (raw outputs, one batch) for each type, for the same tables.
_RAW_CALLS: OrderedDict[type, tuple[int, Callable[[Any, Any], Any]]] = OrderedDict()
_LOCK = threading.Lock()


def predict(
    model_or_path: Any,
    inputs: Any,
    *,
    batch_size: int | None = None,
    device: str | None = None,
    output: str = "raw",
) -> Any:
    """Run a model on ``inputs`` and return numpy (or a list of labels).

    Parameters
    ----------
    model_or_path : a loaded model (torch module, ...) or a path to load safely first.
    inputs : numpy array, list or tensor; a tuple of arrays for several inputs.
    batch_size : split the inputs into chunks of this many rows.
    device : run on this device (moves a torch module there).
    output : ``"raw"`` model outputs, ``"proba"`` probabilities (softmax), or ``"label"``
        the arg-max mapped through the saved labels (indices if none were saved).

    Examples
    --------
    >>> ms.predict(net, x[:5], output="label")
    ['3', '7', '1', '0', '9']
    """
    if output == "raw" and batch_size is None and device is None:
        # the common call (serving: every µs counts): what runs it is remembered per type
        hit = _RAW_CALLS.get(type(model_or_path))  # (read without the lock: one dict lookup)
        if hit is not None and hit[0] == REGISTRY.generation:
            return hit[1](model_or_path, inputs)
        raw = _raw_call(model_or_path)
        if raw is not None:  # labels are for "label" only
            return raw(model_or_path, inputs)
    if output not in OUTPUTS:
        raise ArgumentError(f"output must be one of {OUTPUTS}, not {output!r}")
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        from .load import load

        model = load(model_or_path)
    labels = attached(model).get("labels")
    if labels is not None and not isinstance(labels, list):
        labels = None
    request = PredictRequest(batch_size=batch_size, device=device, output=output, labels=labels)
    return predictor(type(model), model).predict(model, inputs, request)


def predictor(cls: type, model: Any) -> Backend:
    """The backend that runs ``cls`` (cached per type; a table change starts afresh)."""
    generation = REGISTRY.generation
    hit = _PREDICTORS.get(cls)  # a hit is read without the lock (one dict lookup, atomic)
    if hit is not None and hit[0] == generation:
        return hit[1]
    backend = REGISTRY.for_object(model, action="predict")
    _remember(_PREDICTORS, cls, (generation, backend))
    return backend


def _remember(cache: OrderedDict[type, Any], cls: type, entry: Any) -> None:
    """Keep ``entry`` for ``cls``, the oldest entry going first past :data:`CACHE_SIZE`."""
    with _LOCK:
        cache[cls] = entry
        cache.move_to_end(cls)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


def _raw_call(model: Any) -> Callable[[Any, Any], Any] | None:
    """What runs ``model`` for the plain request, remembered for its type (None for a path).

    modelstore's own wrapper classes offer a lean path (``__modelstore_predict__``: ONNX
    serving), looked up on the class, never on the instance, whose __dict__ a loaded file may
    have filled; any other type gets its backend's ``predict_raw``."""
    cls = type(model)
    if isinstance(model, (str, os.PathLike)):
        return None
    generation = REGISTRY.generation
    call = _fast_path(cls) or predictor(cls, model).predict_raw
    _remember(_RAW_CALLS, cls, (generation, call))
    return call


def _fast_path(cls: type) -> Any:
    fast = cls.__dict__.get("__modelstore_predict__")
    if fast is None or not cls.__module__.startswith("modelstore."):
        return None
    return fast

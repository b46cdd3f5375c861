"""Shared plumbing of batch scoring on engines (``modelstore.spark``, ``modelstore.dask``).

The plan is made once on the driver (:func:`plan`): the model reference is resolved to one
path or URI, the file's sha256 is recorded, and the options are checked. What travels to the
executors is that :class:`Plan` alone, plain strings and numbers (plus whatever the caller put
in ``load_options``, such as a ``model=Net`` class, pickled by reference): never a loaded model.
Each executor process loads the model through :func:`modelstore.load` with the recorded pin
and the driver's trust policy (:func:`model_for`), so the trust gate runs where the bytes are
read and a file swapped after planning is refused. Loaded models are kept in a small
per-process cache, so a model is loaded once per process, not once per batch.

Only the public API is used here: ``modelstore.load``, ``modelstore.predict``,
``modelstore.inspect``, ``modelstore.Store`` and the errors.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArgumentError, IntegrityError, ModelNotFoundError

OUTPUTS = ("raw", "proba", "label")
CACHE_SIZE = 4  # models kept per process; the oldest is dropped first

# -- the plan: made on the driver, shipped to the executors ------------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything an executor needs to load and run the model: no model object."""

    path: str  # a local path or an fsspec URI
    sha256: str  # the pin recorded on the driver
    output: str
    trust: bool | tuple[str, ...]
    batch_size: int | None
    signed_by: Any = None
    load_options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return (
            self.path,
            self.sha256,
            self.trust,
            _freeze(self.signed_by),
            _freeze(self.load_options),
        )

    def load_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.load_options)
        kwargs["trust"] = list(self.trust) if isinstance(self.trust, tuple) else self.trust
        kwargs["sha256"] = self.sha256
        if self.signed_by is not None:
            kwargs["signed_by"] = self.signed_by
        return kwargs


def plan(
    model_ref: Any,
    *,
    output: str,
    trust: Any,
    signed_by: Any,
    sha256: str | None,
    batch_size: int | None,
    load_options: dict[str, Any],
) -> Plan:
    """Resolve ``model_ref`` once and record what the executors must load (driver side)."""
    if output not in OUTPUTS:
        raise ArgumentError(f"output must be one of {OUTPUTS}, not {output!r}")
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    if not (
        trust is True
        or trust is False
        or (isinstance(trust, (list, tuple, set)) and all(isinstance(t, str) for t in trust))
    ):
        raise ArgumentError("trust must be True, False or a list of 'module.Name' strings")
    path, pin, store_options = _resolve(model_ref, load_options.get("storage_options"))
    if store_options and "storage_options" not in load_options:
        load_options["storage_options"] = store_options
    if sha256 is not None and not isinstance(sha256, str):
        raise ArgumentError(f"sha256 must be a hex string, not {type(sha256).__name__}")
    if pin is not None and "://" in path:
        # a remote store's manifest already names the digest: executors check it on their copy,
        # the driver need not download the whole file to learn it again
        actual = pin.lower()
    else:
        actual = digest_of(path, load_options.get("storage_options"))
    for want, where in ((pin, "the store's manifest"), (sha256, "the sha256= pin")):
        if want is not None and want.lower() != actual:
            msg = (
                f"{path}: its sha256 is {actual}, but {where} says {want.lower()}: the file changed "
                "or the pin is wrong; refusing to plan a job on it"
            )
            raise IntegrityError(msg)
    trust_value = trust if isinstance(trust, bool) else tuple(sorted(trust))
    return Plan(
        path=path,
        sha256=actual,
        output=output,
        trust=trust_value,
        batch_size=batch_size,
        signed_by=signed_by,
        load_options=dict(load_options),
    )


def _resolve(model_ref: Any, storage_options: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    """(path or URI, the sha256 a store recorded or None, the store's storage options)."""
    if isinstance(model_ref, tuple) and len(model_ref) == 2 and isinstance(model_ref[1], str):
        import modelstore

        store, ref = model_ref
        if not isinstance(store, modelstore.Store):
            raise ArgumentError(
                f"a store reference is (Store, 'name@version'), not ({type(store).__name__}, ...)"
            )
        version = store.info(ref)  # an alias is resolved once: the path below is this version's
        # a remote store's files need its storage options on the executors too
        options = (
            storage_options if storage_options is not None else getattr(store, "_options", None)
        )
        return store.path(f"{version.name}@{version.version}"), version.sha256 or None, options
    if isinstance(model_ref, (str, os.PathLike)):
        text = os.fspath(model_ref)
        if "://" in text:
            return text, None, None
        p = Path(text).expanduser().resolve()
        if not p.exists():
            raise ModelNotFoundError(
                2,
                f"{text}: no such model file; check the path (relative paths are "
                "resolved on the driver, from its working directory)",
                text,
            )
        return str(p), None, None
    msg = (
        f"model_ref must be a path, an fsspec URI or a (Store, 'name@version') pair, "
        f"not {type(model_ref).__name__}"
    )
    raise ArgumentError(msg)


def digest_of(path: str, storage_options: dict[str, Any] | None) -> str:
    """The sha256 that ``modelstore.load(path, sha256=...)`` checks: the file's own, or a
    sharded checkpoint's index."""
    if "://" not in path:
        p = Path(path)
        if p.is_dir() or p.name.endswith(".index.json"):
            import modelstore

            return modelstore.inspect(p).sha256
        with open(p, "rb") as f:
            return _hash_stream(f)
    import fsspec

    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        return _hash_stream(f)


def _hash_stream(f: Any) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _freeze(value: Any) -> Any:
    """A hashable stand-in for option values (dicts and lists of plain values, classes)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return (type(value).__qualname__, id(value))
    return value


# -- the executor side --------------------------------------------------------------------------

_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_LOCK = threading.Lock()
_LOADS = [0]  # how many loads this process made (tests and benchmarks read it)


def model_for(job: Plan) -> Any:
    """The model of ``job``, loaded at most once per process through ``modelstore.load`` with the
    driver's pin and trust policy; a file that changed since planning is refused there."""
    key = job.key()
    with _LOCK:  # one load at a time: threads of a Dask worker share the cache
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        import modelstore

        model = modelstore.load(job.path, **job.load_kwargs())
        _LOADS[0] += 1
        remember(job, model)
        return model


def remember(job: Plan, model: Any) -> None:
    """Keep ``model`` (loaded through ``job``'s pinned load) for later batches in this process."""
    if isinstance(model, dict):  # a weights file without model=: tensors, nothing to run
        msg = (
            f"{job.path}: loads as a state dict (weights only), which cannot predict: pass "
            "model=YourClass (importable on the executors), or trust=True to build the class "
            "recorded in the file"
        )
        raise ArgumentError(msg)
    _CACHE[job.key()] = model
    _CACHE.move_to_end(job.key())
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)


def load_count() -> int:
    """How many models this process loaded through :func:`model_for`."""
    return _LOADS[0]


def features(columns: list[Any]) -> Any:
    """One 2-D numpy array from a batch: several scalar columns side by side, or one column
    of arrays (Spark's ``array<...>``, a Dask column of lists) stacked row by row."""
    import numpy as np

    if len(columns) == 1:
        values = columns[0].to_numpy()
        if values.dtype == object:
            try:
                if not len(values):
                    return np.empty((0, 0))
                # Spark hands each row of an array column over as a numpy array already
                return np.stack(
                    values if isinstance(values[0], np.ndarray) else [np.asarray(v) for v in values]
                )
            except ValueError as e:
                raise ArgumentError(f"the array column's rows differ in length: {e}") from None
        return values.reshape(-1, 1)
    return np.column_stack([c.to_numpy() for c in columns])


def run(job: Plan, x: Any, shape: str) -> Any:
    """Predict one batch; returns a 1-D array (``shape="scalar"``) or a list of 1-D arrays."""
    import numpy as np

    import modelstore

    model = model_for(job)
    y = modelstore.predict(model, x, output=job.output, batch_size=job.batch_size)
    if job.output == "label":
        return np.asarray([str(v) for v in y], dtype=object)
    y = np.asarray(y)
    if shape == "scalar":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            msg = (
                f"{job.path}: the model gives {y.shape[1:]} values per row, not one: declare an "
                "array result type (result_type='array<float>' on Spark, meta=object on Dask)"
            )
            raise ArgumentError(msg)
        return y
    return list(y.reshape(len(y), -1))


# -- what the result looks like, decided on the driver -------------------------------------------


def result_kind(model: Any, output: str) -> tuple[str, str]:
    """(``"scalar"`` or ``"array"``, numpy dtype kind name) the predictions of ``model`` take:
    labels are strings, probabilities float64 arrays; raw outputs follow the model."""
    if output == "label":
        return "scalar", "str"
    if output == "proba":
        return "array", "float64"
    session = getattr(model, "session", None)
    if session is not None and hasattr(session, "get_outputs"):  # ONNX through onnxruntime
        out = session.get_outputs()[0]
        dtype = _ONNX_TYPES.get(out.type, "float32")
        shape = out.shape or []
        one = len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1)
        return ("scalar" if one else "array"), dtype
    if hasattr(model, "predict") and hasattr(model, "get_params"):  # scikit-learn
        classes = getattr(model, "classes_", None)
        if classes is not None and getattr(classes, "ndim", 1) == 1:
            kind = getattr(getattr(classes, "dtype", None), "kind", "O")
            return "scalar", {"i": "int64", "u": "int64", "f": "float64", "b": "bool"}.get(
                kind, "str"
            )
        outputs = getattr(model, "n_outputs_", 1)
        return ("array" if outputs > 1 else "scalar"), "float64"
    return "array", "float32"  # torch and Keras: a vector of float32 per row


_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "str",
    "tensor(bool)": "bool",
}

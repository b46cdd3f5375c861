"""Export: the object's own backend writes the graph (``export_onnx``), the target backend
(an ``exports_to`` backend: ONNX) checks and completes it, all inside one atomic write under
the target's writer lock (so concurrent exports to one target never delete each other's
external data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ArgumentError, ModelstoreError, UnsupportedModelError
from ..formats.base import Backend, attach, attached
from ..storage.files import atomic_paths, check_target, writer_lock
from ..storage.hashing import sha256_of
from . import metadata
from .registry import REGISTRY


def numeric_sample(target: Path, sample: Any) -> Any:
    """The sample as something exporters accept: tensors and arrays pass, lists become arrays;
    anything that is not numbers is an ArgumentError."""
    if sample is None:
        raise ArgumentError(f"{target}: export needs sample_input=, an example batch of inputs")
    if hasattr(sample, "shape") and hasattr(sample, "dtype"):
        return sample
    import numpy as np

    try:
        arr = np.asarray(sample)
    except ValueError as e:
        raise ArgumentError(f"{target}: sample_input is not rectangular ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise ArgumentError(f"{target}: sample_input must be numbers, got {arr.dtype}")
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


def export(
    model: Any,
    target: Path,
    into: Backend,
    *,
    sample_input: Any,
    opset: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    labels: Any = None,
    metadata_: Any = None,
    source: Path | None = None,
    overwrite: bool = True,
) -> Path:
    """Export ``model`` to ``target`` in ``into``'s format; returns ``target``."""
    sample = numeric_sample(target, sample_input)
    check_target(target, overwrite)
    source_backend = REGISTRY.for_object(model)
    into.require(target, f"{into.name} export")
    if labels is None:
        labels = attached(model).get("labels")
    meta = metadata.build(
        source_backend,
        model,
        config=None,
        metadata=metadata_,
        labels=labels,
        sample_input=sample_input,
    )
    meta["onnx_source"] = {
        "source_format": source_backend.name,
        "source_sha256": sha256_of(source) if source is not None else None,
    }
    extra: list[Path] = []
    with writer_lock(target):
        try:
            with atomic_paths(target) as (tmp,):
                try:
                    exported = source_backend.export_onnx(model, tmp, sample, opset, dynamic_batch)
                except ModelstoreError as e:  # name the target, not the temporary file
                    if e.args and isinstance(e.args[0], str) and str(tmp) in e.args[0]:
                        e.args = (e.args[0].replace(str(tmp), str(target)), *e.args[1:])
                    raise
                except Warning:
                    raise
                except Exception as e:  # exporters raise their own types for unsupported graphs
                    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                    msg = (
                        f"{target}: {source_backend.name} could not export this model "
                        f"({type(e).__name__}: {first[:300]}); check sample_input's shape and dtype"
                    )
                    raise UnsupportedModelError(msg) from None
                checks = (
                    {"dynamic_batch": dynamic_batch, "rtol": rtol, "atol": atol} if check else None
                )
                extra = into.finish_export(tmp, target, exported, sample, meta, checks)
        except BaseException:
            for data in extra:
                data.unlink(missing_ok=True)
            raise
        into.after_commit(target)
    attach(model, meta)
    return target

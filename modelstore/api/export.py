"""``ms.export``: a torch module as a ``torch.export`` archive (``.pt2``), checked for parity."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._info import ModelInfo
from ..errors import ArgumentError, ModelstoreError, UnsupportedModelError
from ..formats.base import attach, is_instance_of
from ..pipeline import locate
from ..pipeline import metadata as meta_step
from ..pipeline.export import numeric_sample
from ..pipeline.registry import REGISTRY
from ..storage.files import PathLike, check_target
from .inspect import info_of
from .save import _write_with_sidecar


def export(
    model: Any,
    path: PathLike,
    *,
    sample_input: Any,
    dynamic_batch: bool = True,
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    labels: list[Any] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> ModelInfo:
    """Export a torch module with ``torch.export`` and write it as a ``.pt2`` archive.

    Parameters
    ----------
    model : a ``torch.nn.Module`` (put in eval mode for the export and put back after).
    path : the ``.pt2`` file to write (atomically, with a ``PATH.modelstore.json`` sidecar).
    sample_input : an example batch (a tensor, array or tuple of them); it fixes the input
        shapes and dtypes and drives the check.
    dynamic_batch : let the first dimension vary (``torch.export.Dim.AUTO``: kept static when
        the model specialises on it).
    check : load the written archive back through modelstore's checks, run it and the module
        on the sample (and on batches of 1 and 7 when the batch is dynamic), and raise
        ExportMismatchError beyond ``rtol``/``atol`` (the file is then not written).
    labels, metadata : recorded in the sidecar, as for :func:`save`.

    Returns
    -------
    ModelInfo of the archive; its metadata records the check's measured differences.

    Examples
    --------
    >>> ms.export(net, "digits.pt2", sample_input=x[:8])
    >>> program = ms.load("digits.pt2")        # a torch.export.ExportedProgram
    >>> ms.predict("digits.pt2", x)
    """
    path, uri = locate.split(path)
    if uri is not None:
        raise ArgumentError(f"{uri}: export writes a local .pt2; upload it with ms.Store")
    target = Path(os.fspath(path))
    backend = REGISTRY.get("pt2")
    backend.require(target, "torch.export")
    check_target(target, overwrite)
    if not is_instance_of(model, "torch.nn.modules.module", "Module"):
        raise UnsupportedModelError(
            f"{target}: ms.export takes a torch.nn.Module, got {type(model).__qualname__}"
        )
    args = _args(target, sample_input)
    program = _export(target, model, args, dynamic_batch)
    from ..formats.torch.pt2 import ExportCheck

    samples = [args]
    if dynamic_batch and _batch_dynamic(program):
        samples += [_rows(args, n) for n in (1, 7)]
    meta = meta_step.build(
        backend, model, config=None, metadata=metadata, labels=labels, sample_input=args
    )
    options = ExportCheck(program, tuple(samples), rtol, atol, check)
    _write_with_sidecar(backend, model, target, meta, options)
    attach(model, meta)
    return info_of(target, backend)


def _args(target: Path, sample: Any) -> tuple[Any, ...]:
    import torch

    items = sample if isinstance(sample, tuple) else (sample,)
    out = []
    for item in items:
        value = numeric_sample(target, item)
        out.append(value if isinstance(value, torch.Tensor) else torch.as_tensor(value))
    return tuple(out)


def _export(target: Path, model: Any, args: tuple[Any, ...], dynamic_batch: bool) -> Any:
    import torch

    shapes = None
    if dynamic_batch:
        shapes = tuple({0: torch.export.Dim.AUTO} if a.dim() else None for a in args)
    training = model.training
    model.eval()
    try:
        return torch.export.export(model, args, dynamic_shapes=shapes)
    except ModelstoreError:
        raise
    except Exception as e:  # torch raises many types for graphs it cannot capture
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise UnsupportedModelError(
            f"{target}: torch.export could not export this model ({type(e).__name__}: "
            f"{first[:300]}); check sample_input's shape and dtype, or pass dynamic_batch=False"
        ) from None
    finally:
        model.train(training)


def _batch_dynamic(program: Any) -> bool:
    """Whether the program's first input kept a symbolic first dimension."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            return val is not None and val.dim() > 0 and not isinstance(val.shape[0], int)
    return False


def _rows(args: tuple[Any, ...], n: int) -> tuple[Any, ...]:
    import torch

    def take(a: Any) -> Any:
        if not a.dim() or a.shape[0] == 0:
            return a
        return a[torch.arange(n) % a.shape[0]]

    return tuple(take(a) for a in args)


__all__ = ["export"]

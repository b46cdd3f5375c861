"""``ms.export_onnx`` and ``ms.convert``: load through the same gate, then save or export."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _progress
from .._info import ModelInfo
from ..pipeline import choose, locate
from ..pipeline.export import export
from ..pipeline.read import renamed
from ..pipeline.registry import REGISTRY
from ..storage import remote
from ..storage.files import PathLike, check_target
from .inspect import info_of, recorded_metadata
from .load import load
from .save import save


def export_onnx(
    model: Any,
    path: PathLike,
    *,
    sample_input: Any,
    opset: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    storage_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> ModelInfo:
    """Export a PyTorch, scikit-learn or Keras model to ONNX and verify it with onnxruntime.

    Parameters
    ----------
    model : a torch module, a scikit-learn estimator or pipeline, or a Keras model.
    path : the ``.onnx`` file to write (atomically).
    sample_input : an example batch; it fixes input shapes and dtypes and drives the check.
    opset : ONNX opset to target (the exporter's default if None).
    dynamic_batch : make the first dimension dynamic.
    check : run the original and onnxruntime on the sample and on generated batches of 1, 7
        and the sample's size, and raise ExportMismatchError beyond ``rtol``/``atol``.
    progress : a progress bar on stderr (needs tqdm): None (default) on a terminal once the
        export takes over 0.5 s, True always, False never (``MODELSTORE_PROGRESS=0/1``).

    Returns
    -------
    ModelInfo of the ONNX file; its metadata records exporter, versions, opset, tolerances
    and the measured differences.

    Examples
    --------
    >>> ms.export_onnx(net, "digits.onnx", sample_input=x[:8])
    >>> ms.predict("digits.onnx", x)          # onnxruntime only: no torch needed
    """
    _progress.wanted(progress)
    path, uri = locate.split(path)
    if uri is not None:
        with locate.staged(uri, True, storage_options) as (staged, publish):
            info = export_onnx(
                model,
                staged,
                sample_input=sample_input,
                opset=opset,
                dynamic_batch=dynamic_batch,
                check=check,
                rtol=rtol,
                atol=atol,
                progress=progress,
            )
            out: ModelInfo = publish(info)
        return out
    target = Path(os.fspath(path))
    onnx = REGISTRY.get("onnx")
    with _progress.progress_bar(f"exporting {target.name}", 1, progress=progress) as bar:
        bar.step("export and check" if check else "export")
        export(
            model,
            target,
            onnx,
            sample_input=sample_input,
            opset=opset,
            dynamic_batch=dynamic_batch,
            check=check,
            rtol=rtol,
            atol=atol,
        )
    return info_of(target, onnx)


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    model: Any = None,
    sample_input: Any = None,
    trust: bool | list[str] = False,
    overwrite: bool = True,
    storage_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> ModelInfo:
    """Load ``src`` (through the same trust gate) and save it as ``dst``'s format.

    Metadata recorded with ``src`` (config, labels, your metadata) carries over; converting to
    an export format (``.onnx``) needs ``sample_input`` and records ``src``'s sha256.
    ``overwrite=False`` refuses an existing ``dst`` (local or remote) before anything is read.
    ``progress``: a bar on stderr over the load and the write (see :func:`save`).

    Examples
    --------
    >>> ms.convert("weights.pth", "weights.safetensors")
    >>> ms.convert("digits.safetensors", "digits.onnx", model=Net, sample_input=x[:8])
    >>> ms.convert("s3://models/weights.pth", "s3://models/weights.safetensors")
    """
    _progress.wanted(progress)
    size = (
        Path(os.fspath(src)).stat().st_size
        if locate.split(src)[1] is None and Path(os.fspath(src)).is_file()
        else None
    )
    with _progress.progress_bar(
        f"converting {Path(os.fspath(src)).name}", 2, progress=progress, size=size
    ) as bar:
        return convert_steps(
            src,
            dst,
            model=model,
            sample_input=sample_input,
            trust=trust,
            overwrite=overwrite,
            storage_options=storage_options,
            step=lambda what: bar.step(what) if what != "done" else None,
        )


def convert_steps(
    src: PathLike,
    dst: PathLike,
    *,
    model: Any = None,
    sample_input: Any = None,
    trust: bool | list[str] = False,
    overwrite: bool = True,
    storage_options: dict[str, Any] | None = None,
    step: Callable[[str], None] | None = None,
) -> ModelInfo:
    """:func:`convert`, calling ``step("load")``, ``step("write")`` and ``step("done")`` as
    each step starts (the CLI's progress lines)."""
    step = step or (lambda _: None)
    src, src_uri = locate.split(src)
    if src_uri is not None:
        with (
            locate.fetched(src_uri, storage_options) as (local, shown),
            renamed(local.parent, remote.parent_uri(shown)),
        ):
            return convert_steps(
                local,
                dst,
                model=model,
                sample_input=sample_input,
                trust=trust,
                overwrite=overwrite,
                storage_options=storage_options,
                step=step,
            )
    dst, dst_uri = locate.split(dst)
    if dst_uri is not None:
        with locate.staged(dst_uri, overwrite, storage_options) as (staged, publish):
            info = convert_steps(
                src, staged, model=model, sample_input=sample_input, trust=trust, step=step
            )
            out: ModelInfo = publish(info)
        return out
    dst_path = Path(os.fspath(dst))
    check_target(dst_path, overwrite)  # before the (possibly long) load
    step("load")
    meta = recorded_metadata(src)
    obj = load(src, model=model, trust=trust, progress=False)
    step("write")
    backend = choose.for_save(obj, dst_path, None)
    if backend.exports_to:
        export(
            obj,
            dst_path,
            backend,
            sample_input=sample_input,
            labels=meta.get("labels"),
            metadata_=meta.get("metadata"),
            source=choose.model_file(src),
            overwrite=overwrite,
        )
        info = info_of(dst_path, backend)
    else:
        info = save(
            obj,
            dst_path,
            config=meta.get("config"),
            metadata=meta.get("metadata"),
            labels=meta.get("labels"),
            sample_input=sample_input,
            overwrite=overwrite,
            progress=False,
        )
    step("done")
    return info

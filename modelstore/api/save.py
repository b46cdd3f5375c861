"""``ms.save``: locate -> choose -> options -> metadata -> backend write (atomic)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import _progress
from .._info import ModelInfo
from ..errors import ArgumentError, ModelstoreError
from ..formats.base import Backend, attach
from ..pipeline import choose, locate
from ..pipeline import metadata as meta_step
from ..pipeline import options as typed
from ..pipeline.export import export
from ..storage.files import PathLike, atomic_paths, check_target, write_json, writer_lock
from ..storage.hashing import PendingDigest, file_checksum, remember_sha256
from ..storage.sidecar import (
    SIDECAR_KEEP,
    SIDECAR_VERSION,
    choose_version,
    read_sidecar,
    sidecar_path,
    sidecar_versions,
)
from .inspect import info_of


def save(
    model: Any,
    path: PathLike,
    *,
    format: str | None = None,
    config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    labels: list[Any] | None = None,
    sample_input: Any = None,
    overwrite: bool = True,
    storage_options: dict[str, Any] | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ModelInfo:
    """Save ``model`` to ``path`` atomically, with metadata and a payload checksum.

    Parameters
    ----------
    model : a supported model object (``torch.nn.Module``, a dict of tensors, a checkpoint
        dict, a scikit-learn estimator, a Keras model)
    path : target file; its suffix picks the format unless ``format=`` is given. A torch
        module saved to a path without a known suffix is written as safetensors. A ``.onnx``
        path exports the model (needs ``sample_input``), like :func:`export_onnx`.
    format : backend name (see :func:`backends`) to override the suffix.
    config : constructor keyword arguments, so ``load(path, model=Net)`` can build ``Net(**config)``.
    metadata : your own JSON-serialisable metadata, shown by :func:`inspect`.
    labels : class names, used by ``predict(..., output="label")``.
    sample_input : an example input; its shapes and dtypes are recorded as the signature.
    overwrite : if False, refuse to replace an existing file.
    storage_options : passed to fsspec when ``path`` is a URI (``s3://bucket/key``): the
        model is written locally, then uploaded payload first and metadata last.
    progress : a progress bar on stderr (needs tqdm): None (default) on a terminal once the
        save takes over 0.5 s, True always, False never (``MODELSTORE_PROGRESS=0/1``).
    **options : the backend's typed save options; unknown names are refused with the valid
        ones. torch weights: ``dtype=`` (cast floating-point tensors to ``"float16"``,
        ``"bfloat16"``, ``"float32"`` or ``"float64"``; ``load`` restores the original
        dtypes); safetensors also ``max_shard_size=`` (``"2GB"`` = 10**9 bytes, ``"1.5GiB"``,
        or an int: Hugging Face style shards plus an index; ``path`` is a folder,
        ``NAME.safetensors`` or ``NAME.safetensors.index.json``). scikit-learn:
        ``compress=``, ``protocol=``.

    Returns
    -------
    ModelInfo of the written model.

    Raises
    ------
    UnsupportedModelError, ModelExistsError, StorageError, ArgumentError

    Examples
    --------
    >>> import modelstore as ms
    >>> info = ms.save(net, "digits.safetensors", config={"hidden": 32}, labels=list("0123456789"))
    >>> net = ms.load("digits.safetensors", model=Net)
    """
    _progress.wanted(progress)
    path, uri = locate.split(path)
    if uri is not None:
        with (
            locate.staged(uri, overwrite, storage_options) as (staged, publish),
            _progress.progress_bar(f"saving {uri.rsplit('/', 1)[-1]}", 2, progress=progress) as bar,
        ):
            bar.step("write")
            info = save(
                model,
                staged,
                format=format,
                config=config,
                metadata=metadata,
                labels=labels,
                sample_input=sample_input,
                progress=False,
                **options,
            )
            bar.step("upload")
            out: ModelInfo = publish(info)
        return out
    target = Path(os.fspath(path))
    with _progress.progress_bar(f"saving {target.name}", 1, progress=progress) as bar:
        bar.step("write")
        return _save_local(
            model, target, format, config, metadata, labels, sample_input, overwrite, options
        )


def _save_local(
    model: Any,
    target: Path,
    format: str | None,
    config: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    labels: list[Any] | None,
    sample_input: Any,
    overwrite: bool,
    options: dict[str, Any],
) -> ModelInfo:
    backend = choose.for_save(model, target, format)
    if backend.exports_to:
        if options or config is not None:
            given = sorted(options) + (["config"] if config is not None else [])
            raise ArgumentError(
                f"{target}: saving as {backend.name} exports the model; it takes "
                f"sample_input=, labels= and metadata=, not {', '.join(given)}"
            )
        export(
            model,
            target,
            backend,
            sample_input=sample_input,
            labels=labels,
            metadata_=metadata,
            overwrite=overwrite,
        )
        return info_of(target, backend)
    opts = typed.parse(backend, "save", options, target)
    backend.require(target, f"saving a {backend.name} file")
    meta = meta_step.build(
        backend, model, config=config, metadata=metadata, labels=labels, sample_input=sample_input
    )
    main = backend.write_files(model, target, meta, opts, overwrite)
    if main is None:  # one file, written atomically here
        main = target
        check_target(target, overwrite)
        digest = _write(backend, model, target, meta, opts)
        if digest:
            remember_sha256(target, digest)
    attach(model, meta)
    return info_of(main, backend)


def _write(
    backend: Backend, model: Any, target: Path, meta: dict[str, Any], opts: Any
) -> str | PendingDigest | None:
    if backend.embeds_metadata:
        with atomic_paths(target) as (tmp,):
            return backend.write(model, tmp, meta, opts, target)
    return _write_with_sidecar(backend, model, target, meta, opts)


def _write_with_sidecar(
    backend: Backend, model: Any, target: Path, meta: dict[str, Any], opts: Any
) -> str | PendingDigest | None:
    """Payload plus sidecar, crash- and race-safe: writers of one target take turns; the
    sidecar (new entry + the entry it replaces) is renamed before the payload, so whichever
    payload a reader or a crash finds, the sidecar describes it."""
    side = sidecar_path(target)
    with writer_lock(target), atomic_paths(side, target) as (side_tmp, tmp):
        digest = backend.write(model, tmp, meta, opts, target)
        if "checksum" not in meta:  # a backend may have computed it while writing
            meta["checksum"] = file_checksum(tmp)
        meta["payload_size"] = tmp.stat().st_size
        try:
            previous = sidecar_versions(read_sidecar(target)) if target.exists() else []
            # one entry describes the file; several (a crash left both) need the payload's checksum
            checksum = file_checksum(target) if len(previous) > 1 else None
            current = choose_version(target, previous, checksum) if previous else None
        except (ModelstoreError, OSError):
            current = (
                None  # an unreadable (or hostile: a link out) old sidecar is replaced, not followed
            )
        keep = [meta] + ([current] if current is not None else [])
        write_json(side_tmp, {"sidecar_version": SIDECAR_VERSION, "versions": keep[:SIDECAR_KEEP]})
    return digest

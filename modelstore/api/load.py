"""``ms.load``: locate -> choose -> options -> metadata -> verify -> gate -> backend.

Local files, folders, sharded checkpoints and URIs take the same steps: a URI is fetched
into a private folder first, a pin makes a private copy first, and then the one local
pipeline runs on what was fetched or copied.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import _progress
from ..errors import ArgumentError, IntegrityError
from ..formats.base import Backend, LoadRequest, attach, one_pass
from ..pipeline import choose, gate, locate, metadata
from ..pipeline import options as typed
from ..pipeline import verify as verify_step
from ..pipeline.read import consistently, one_file, reading, renamed
from ..storage import remote
from ..storage.files import PathLike
from ..storage.hashing import file_checksum
from ..storage.sidecar import sidecar_path


def load(
    path: PathLike,
    *,
    model: Any = None,
    config: dict[str, Any] | None = None,
    format: str | None = None,
    device: str | None = None,
    trust: bool | list[str] = False,
    strict: bool = True,
    verify: bool = True,
    sha256: str | None = None,
    storage_options: dict[str, Any] | None = None,
    signed_by: Any = None,
    signature: PathLike | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Any:
    """Load a model file without running code from it unless ``trust`` allows.

    Parameters
    ----------
    path : the model file (any supported format; foreign files without metadata load too),
        a sharded safetensors checkpoint (its folder or its ``*.safetensors.index.json``),
        or a URI (``s3://...``).
    model : for weights files, a class (built as ``model(**config)`` on the meta device, no
        random init) or an instance to fill. Without it, weights come back as a state dict.
    config : constructor keyword arguments for ``model=`` (a class), for files that record
        none (a plain ``safetensors`` or ``torch.save`` file); wins over a recorded config.
    format : backend name, to override the suffix.
    device : where the weights go (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    trust : False (default) refuses anything outside the allow-lists; a list of
        ``"module.Name"`` globals allows those; True allows everything (runs code from the file).
    strict : False loads the keys that match and warns about the rest.
    verify : check the recorded payload checksum first (default True).
    sha256 : a pin; refuse the file unless its sha256 is exactly this (for shards: the
        index's, and every shard must match the sha256 the index records).
    storage_options : passed to fsspec when ``path`` is a URI; the model's files are copied
        to a private temporary folder and loaded from there.
    signed_by : a public key, certificate(s) or :class:`modelstore.SigningPolicy`: refuse the
        model (SignatureError) unless its OpenSSF signature, made by that signer, covers exactly
        its files; the check runs over a private copy, which is what gets loaded. Never skipped
        by ``verify=False``. See docs/signing.md.
    signature : the signature bundle (default ``FILE.sig`` beside the file, ``FOLDER/model.sig``;
        for a URI, ``URI.sig``).
    progress : a progress bar on stderr (needs tqdm): None (default) on a terminal once the
        load takes over 0.5 s (at once for files over 50 MB), True always, False never; the
        environment variable ``MODELSTORE_PROGRESS=0/1`` sets the default.
    **options : the backend's typed load options; unknown names are refused with the valid
        ones. torch weights: ``dtype=`` (the floating-point dtype to return; by default a
        ``model=`` keeps its own dtypes and a state dict comes back in the dtypes saved before
        ``save(dtype=)``). ONNX: ``providers=``.

    Returns
    -------
    A model in eval mode, or the state dict / checkpoint when no model was given.

    Raises
    ------
    UnsafeModelError, IntegrityError, FormatError, ArchitectureMismatchError,
    MissingDependencyError, ModelNotFoundError, ArgumentError

    Examples
    --------
    >>> net = ms.load("digits.safetensors", model=Net)
    >>> sd = ms.load("weights.pth")                      # a plain state dict
    >>> ckpt = ms.load("ckpt.pt")                        # {"model": ..., "optimizer": ..., "epoch": 3}
    """
    trust = gate.checked_trust(trust)
    if config is not None and not isinstance(config, dict):
        raise ArgumentError(
            f"config= must be a dict of constructor keyword arguments, not {type(config).__name__}"
        )
    if config is not None and not isinstance(model, type):
        raise ArgumentError(
            "config= gives the constructor arguments of model=: pass the class as model="
        )
    _progress.wanted(progress)  # checked before anything is read
    args = dict(
        model=model,
        config=config,
        format=format,
        device=device,
        trust=trust,
        strict=strict,
        verify=verify,
        sha256=sha256,
        options=options,
        progress=progress,
    )
    if signed_by is not None or signature is not None:  # verify a private copy, load that copy
        return _load_signed(path, signed_by, signature, storage_options, args)
    path, uri = locate.split(path)
    if uri is not None:
        return _load_remote(uri, storage_options, args)
    return _load_local(path, None, **args)


def _load_signed(
    path: Any,
    signed_by: Any,
    signature: Any,
    storage_options: dict[str, Any] | None,
    args: dict[str, Any],
    shown: str | None = None,
) -> Any:
    """Verify a private copy of the model against its signature, then run the local pipeline
    on that copy; every byte of it was just hashed against the signed manifest, so that pass
    serves as the checksum too (a pin, ``sha256=``, is still compared)."""
    from ..errors import ArgumentError, ModelNotFoundError, SignatureError
    from ..pipeline import signature as step

    if signed_by is None:
        raise ArgumentError(
            "signature= needs signed_by=, the key or certificate that must have signed it"
        )
    local, uri = locate.split(path)
    if uri is not None:
        with step.fetched_with_signature(uri, signature, storage_options, args["format"]) as (
            fetched,
            sig,
            shown,
        ):
            with renamed(fetched.parent, remote.parent_uri(shown)):
                return _load_signed(fetched, signed_by, sig, None, args, shown)
    with (
        step.verified(local, signed_by=signed_by, signature=signature) as v,
        renamed(v.copy_root, str(v.model.root)),
    ):
        try:
            return _load_local(v.load_path, shown or os.fspath(local), **{**args, "verify": False})
        except ModelNotFoundError as e:  # a shard or external data file the signature left out
            raise SignatureError(
                f"{path}: the load needs a file the signature does not cover ({e})"
            ) from None


def _load_local(
    path: Any,
    shown: str | None,
    *,
    model: Any,
    config: dict[str, Any] | None,
    format: str | None,
    device: str | None,
    trust: bool | list[str],
    strict: bool,
    verify: bool,
    sha256: str | None,
    options: dict[str, Any],
    progress: bool | None = None,
) -> Any:
    p = choose.model_file(path)
    backend = choose.for_file(p, format)
    opts = typed.parse(backend, "load", options, shown or p)
    backend.require(p, f"loading a {backend.name} file")
    request = LoadRequest(
        model=model,
        device=device,
        trust=trust,
        strict=strict,
        options=opts,
        verify=verify,
        config=config,
    )
    name = shown or str(p)
    size = p.stat().st_size if p.is_file() else None
    with _progress.progress_bar(
        f"loading {Path(name).name}", len(STEPS), progress=progress, size=size
    ) as bar:
        if sha256 is not None:
            files = locate.companion_names(p, backend)
            bar.step("sha256")
            with (
                verify_step.pinned_copy(p, sha256, files) as copy,
                renamed(copy.parent, str(p.parent)),
            ):
                request.pinned = True
                return consistently(
                    copy, lambda: _load_once(copy, backend, request, name, bar.step)
                )
        return consistently(p, lambda: _load_once(p, backend, request, name, bar.step))


#: The steps of one load a progress bar counts.
STEPS = ("checksum", "scan", "load")


def _load_once(
    p: Path, backend: Backend, request: LoadRequest, name: str, step: Any = lambda _: None
) -> Any:
    """One pass of metadata -> verify -> gate -> backend over one file (held open)."""
    with (
        one_file(p, backend.single_file(p)) as f,
        one_pass(),
    ):  # every step reads the same file, parsed once
        step("checksum")
        computed = None
        if request.verify and not backend.embeds_metadata and sidecar_path(p).is_file():
            computed = file_checksum(f)
        meta, where = metadata.read(p, backend, computed, data=f)
        if request.verify:
            meta = verify_step.checksum(f, backend, meta, computed, where, shown=name, named=p)
        step("scan")
        with reading(f, "scan"):
            gate.gate(backend, f, request.trust)
        request.meta = meta
        step("load")
        with reading(f, "load"):
            obj = backend.load(f, request)
    gate.warn_unpickled(backend, name, request.trust, p, obj)
    attach(obj, meta)
    return obj


def _load_remote(uri: str, storage_options: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
    """Fetch, then load through the same pipeline; retry when a save replaced the remote
    model between our reads (payload and metadata then disagree)."""
    for attempt in range(3):
        before = remote.identity(uri, storage_options)
        with locate.fetched(uri, storage_options, kwargs.get("format")) as (local, shown):
            try:
                with renamed(local.parent, remote.parent_uri(shown)):
                    return _load_local(local, shown, **kwargs)
            except IntegrityError:
                if attempt == 2 or remote.identity(uri, storage_options) == before:
                    raise
        import random  # only on a retry: not part of `import modelstore`

        time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover

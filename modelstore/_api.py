"""The front door: pick a backend, apply the one trust gate, write atomically, keep metadata.

No framework is known here. Each backend declares its ``risk``; every load of a backend that
is not ``safe`` is scanned and gated here, so no backend can forget the gate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import __version__, _remote
from ._info import Finding, ModelInfo, ScanReport
from ._io import (
    PathLike,
    SIDECAR_KEEP,
    SIDECAR_VERSION,
    atomic_paths,
    check_checksum,
    choose_version,
    sidecar_versions,
    writer_lock,
    check_pin,
    check_target,
    existing_file,
    file_checksum,
    read_head,
    read_sidecar,
    remember_sha256,
    sha256_of,
    sidecar_path,
    sidecar_problem,
    write_json,
)
from ._registry import REGISTRY
from .backends._base import Backend, LoadRequest, PredictRequest
from .errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    ModelstoreError,
    PickleWarning,
    UnsupportedModelError,
)
from .security import enforce, unreadable

METADATA_VERSION = 1
OUTPUTS = ("raw", "proba", "label")

# metadata of models this process loaded or saved, for predict(output="label")
_KNOWN: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
# which backend runs a model of each type (predict is a hot path)
_PREDICTORS: dict[type, Backend] = {}


# -- choosing a backend ---------------------------------------------------------------------


def backend_for_file(path: Path, fmt: str | None) -> Backend:
    """``format=`` wins; else the suffix, checked against the file's first bytes; else sniffing."""
    head = read_head(path)
    if fmt is not None:
        return REGISTRY.get(fmt)
    candidates = REGISTRY.for_suffix(path)
    for name in candidates:
        backend = REGISTRY.get(name)
        if backend.accepts(path, head):
            return backend
    sniffed = REGISTRY.sniff(path, head)
    if candidates:
        claimed = candidates[0]
        if sniffed:
            msg = (
                f"{path}: the suffix says {claimed} but the content is {sniffed}; rename the file "
                f"or pass format={sniffed!r}"
            )
        else:
            msg = f"{path}: not a valid {claimed} file (its first bytes are {head[:16]!r}); the file is corrupt or of another kind"
        raise FormatError(msg)
    if sniffed is None:
        msg = f"{path}: unrecognised model file (first bytes {head[:16]!r}); pass format= with one of {REGISTRY.names()}"
        raise FormatError(msg)
    return REGISTRY.get(sniffed)


def backend_for_save(model: Any, path: Path, fmt: str | None) -> Backend:
    if fmt is not None:
        backend = REGISTRY.get(fmt)
    else:
        candidates = [REGISTRY.get(n) for n in REGISTRY.for_suffix(path)]
        able = [b for b in candidates if b.can_save(model)]
        if candidates and not able:
            names = "/".join(b.name for b in candidates)
            msg = f"{path}: a {type(model).__qualname__} cannot be saved as {names}; {candidates[0].save_hint(model)}"
            raise UnsupportedModelError(msg)
        backend = able[0] if able else REGISTRY.for_object(model)
    if not backend.can_save(model):
        raise UnsupportedModelError(f"{path}: the {backend.name} backend cannot save a {type(model).__qualname__}")
    return backend


# -- metadata ------------------------------------------------------------------------------


def _check_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)  # what we write must read back through jsonsafe
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{what} must be JSON-serialisable ({e})") from None
    return value


def build_meta(backend: Backend, model: Any, *, config: Any, metadata: Any, labels: Any,
               sample_input: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "modelstore": {"version": __version__, "metadata_version": METADATA_VERSION},
        "format": backend.name,
    }
    meta.update(backend.describe(model))
    if config is not None:
        if not isinstance(config, dict):
            raise ArgumentError("config must be a dict of constructor keyword arguments")
        meta["config"] = _check_json(dict(config), "config")
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
            raise ArgumentError(f"labels must be a list of class names, not {type(labels).__name__}")
        meta["labels"] = _check_json(list(labels), "labels")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ArgumentError("metadata must be a dict")
        meta["metadata"] = _check_json(dict(metadata), "metadata")
    sig = backend.signature(sample_input)
    if sig is not None:
        meta["signature"] = sig
    return meta


def _remember(obj: Any, meta: dict[str, Any] | None) -> None:
    if meta:
        try:
            _KNOWN[obj] = meta
        except TypeError:  # not weak-referenceable (a dict of tensors): nothing to remember
            pass


_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "config": dict, "metadata": dict, "labels": list, "signature": dict, "tied": dict,
    "model_class": str, "checksum": str, "framework": str, "framework_version": (str, type(None)),
    "format": str, "modelstore": dict, "cast": dict,
}


def _meta_of(path: Path, backend: Backend, checksum: str | None = None,
             data: Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """Read modelstore's metadata for ``path`` and check every field's type: it comes from
    the file, so it is as untrusted as the rest of it. For sidecar formats ``checksum`` (the
    payload's, if already computed) picks the entry that describes the payload on disk;
    ``data`` is where the payload is read (the same file as ``path``, held open)."""
    data = data or path
    with _reading(path, "read the metadata of"):
        if backend.embeds_metadata:
            meta, where = backend.read_meta(data), "its header"
        else:
            versions = sidecar_versions(read_sidecar(path))
            if checksum is None and len(versions) > 1:
                checksum = file_checksum(data)  # several entries: the payload decides
            meta, where = choose_version(path, versions, checksum), f"the sidecar {sidecar_path(path).name}"
    check_meta(path, meta, where)
    return meta, where


def check_meta(path: Path | str, meta: dict[str, Any] | None, where: str) -> None:
    """FormatError unless every field of ``meta`` (read from ``where``) has its type."""
    for key, kind in _META_TYPES.items():
        if meta is not None and key in meta and not isinstance(meta[key], kind):
            msg = f"{path}: the modelstore metadata in {where} has a malformed {key!r} ({type(meta[key]).__name__})"
            raise FormatError(msg)
    sig = (meta or {}).get("signature")
    if sig is not None and not isinstance(sig.get("inputs"), list):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'signature'")
    tied = (meta or {}).get("tied") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
        raise FormatError(f"{path}: the modelstore metadata in {where} has a malformed 'tied' map")


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn anything a framework raises on a bad file into a ModelstoreError naming it."""
    try:
        yield
    except (ModelstoreError, Warning):  # warnings raised as errors are the caller's choice
        raise
    except MemoryError:
        raise IntegrityError(f"{path}: the file declares sizes too large to {what} it; it is damaged") from None
    except Exception as e:
        msg = f"{path}: could not {what} the file ({type(e).__name__}: {e}); it is damaged or not what its name says"
        raise FormatError(msg) from e


# -- public calls --------------------------------------------------------------------------


def save(model: Any, path: PathLike, *, format: str | None = None, config: dict[str, Any] | None = None,
         metadata: dict[str, Any] | None = None, labels: list[Any] | None = None,
         sample_input: Any = None, overwrite: bool = True,
         storage_options: dict[str, Any] | None = None, **options: Any) -> ModelInfo:
    """Save ``model`` to ``path`` atomically, with metadata and a payload checksum.

    Parameters
    ----------
    model : a supported model object (``torch.nn.Module``, a dict of tensors, a checkpoint dict)
    path : target file; its suffix picks the format unless ``format=`` is given. A torch
        module saved to a path without a known suffix is written as safetensors.
    format : backend name (see :func:`backends`) to override the suffix.
    config : constructor keyword arguments, so ``load(path, model=Net)`` can build ``Net(**config)``.
    metadata : your own JSON-serialisable metadata, shown by :func:`inspect`.
    labels : class names, used by ``predict(..., output="label")``.
    sample_input : an example input; its shapes and dtypes are recorded as the signature.
    overwrite : if False, refuse to replace an existing file.
    max_shard_size : (torch weights) write Hugging Face style shards of at most this size
        (``"2GB"`` = 10**9 bytes, ``"1.5GiB"`` = 2**30, or an int) plus an index: ``path`` is
        a folder (``model-00001-of-0000N.safetensors``, ``model.safetensors.index.json``),
        ``NAME.safetensors`` or ``NAME.safetensors.index.json`` (``NAME-00001-of-...``).
    dtype : (torch weights) cast floating-point tensors to ``"float16"``, ``"bfloat16"``,
        ``"float32"`` or ``"float64"`` before writing; ``load`` restores the original dtypes.
    storage_options : passed to fsspec when ``path`` is a URI (``s3://bucket/key``): the
        model is written locally, then uploaded payload first and metadata last.

    Returns
    -------
    ModelInfo of the written file.

    Raises
    ------
    UnsupportedModelError, ModelExistsError, StorageError, ArgumentError

    Examples
    --------
    >>> import modelstore as ms
    >>> info = ms.save(net, "digits.safetensors", config={"hidden": 32}, labels=list("0123456789"))
    >>> net = ms.load("digits.safetensors", model=Net)
    """
    path, uri = _remote.split(path)
    if uri is not None:
        with _remote.staged(uri, overwrite, storage_options) as staged:
            info = save(model, staged, format=format, config=config, metadata=metadata,
                        labels=labels, sample_input=sample_input, **options)
        return _relocated(info, staged, uri)
    target = Path(os.fspath(path))
    if options.get("max_shard_size") is not None:  # a folder of safetensors shards and an index
        from ._shards import save_sharded

        return save_sharded(model, target, format=format, config=config, metadata=metadata, labels=labels,
                            sample_input=sample_input, overwrite=overwrite, **options)
    options.pop("max_shard_size", None)
    check_target(target, overwrite)
    if format == "onnx" or (format is None and target.suffix.lower() == ".onnx"):
        if options or config is not None:
            raise ArgumentError(f"{target}: ONNX export takes sample_input=, labels= and metadata=")
        return _export(model, target, sample_input=sample_input, labels=labels, metadata=metadata)
    backend = backend_for_save(model, target, format)
    backend.require(target, f"saving a {backend.name} file")
    dtype = options.pop("dtype", None)
    meta = build_meta(backend, model, config=config, metadata=metadata, labels=labels,
                      sample_input=sample_input)
    payload = model
    if dtype is not None:  # cast floating-point tensors; meta["cast"] records what they were
        from ._dtype import cast_for_save

        payload = cast_for_save(backend, model, dtype, meta, target)
    if backend.embeds_metadata:
        with atomic_paths(target) as (tmp,):
            digest = backend.write(payload, tmp, meta, options, target)
    else:
        digest = _save_with_sidecar(backend, payload, target, meta, options)
    if digest:
        remember_sha256(target, digest)
    _remember(model, meta)
    return _inspect(target, backend)


def _save_with_sidecar(backend: Backend, model: Any, target: Path, meta: dict[str, Any],
                       options: dict[str, Any]) -> str | None:
    """Payload plus sidecar, crash- and race-safe: writers of one target take turns; the
    sidecar (new entry + the entry it replaces) is renamed before the payload, so whichever
    payload a reader or a crash finds, the sidecar describes it."""
    side = sidecar_path(target)
    with writer_lock(target), atomic_paths(side, target) as (side_tmp, tmp):
        digest = backend.write(model, tmp, meta, options, target)
        meta["checksum"] = file_checksum(tmp)
        meta["payload_size"] = tmp.stat().st_size
        try:
            previous = sidecar_versions(read_sidecar(target)) if target.exists() else []
            # one entry describes the file; several (a crash left both) need the payload's checksum
            checksum = file_checksum(target) if len(previous) > 1 else None
            current = choose_version(target, previous, checksum) if previous else None
        except (ModelstoreError, OSError):
            current = None  # an unreadable (or hostile: a link out) old sidecar is replaced, not followed
        keep = [meta] + ([current] if current is not None else [])
        write_json(side_tmp, {"sidecar_version": SIDECAR_VERSION, "versions": keep[:SIDECAR_KEEP]})
    return digest


def load(path: PathLike, *, model: Any = None, format: str | None = None, device: str | None = None,
         trust: bool | list[str] = False, strict: bool = True, verify: bool = True,
         sha256: str | None = None, storage_options: dict[str, Any] | None = None,
         **options: Any) -> Any:
    """Load a model file without running code from it unless ``trust`` allows.

    Parameters
    ----------
    path : the model file (any supported format; foreign files without metadata load too),
        or a sharded safetensors checkpoint: its folder or its ``*.safetensors.index.json``.
    model : for weights files, a class (built as ``model(**config)`` on the meta device, no
        random init) or an instance to fill. Without it, weights come back as a state dict.
    format : backend name, to override the suffix.
    device : where the weights go (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    trust : False (default) refuses anything outside the allow-lists; a list of
        ``"module.Name"`` globals allows those; True allows everything (runs code from the file).
    strict : False loads the keys that match and warns about the rest.
    verify : check the recorded payload checksum first (default True).
    sha256 : a pin; refuse the file unless its sha256 is exactly this (for shards: the
        index's, and every shard must match the sha256 the index records).
    dtype : (torch weights) the floating-point dtype to return; by default a ``model=`` keeps
        its own dtypes and a state dict comes back in the dtypes saved before ``save(dtype=)``.
    storage_options : passed to fsspec when ``path`` is a URI; the file (with its sidecar,
        shards or external data) is copied to a private temporary folder and loaded from there.

    Returns
    -------
    A model in eval mode, or the state dict / checkpoint when no model was given.

    Raises
    ------
    UnsafeModelError, IntegrityError, FormatError, ArchitectureMismatchError,
    MissingDependencyError, ModelNotFoundError

    Examples
    --------
    >>> net = ms.load("digits.safetensors", model=Net)
    >>> sd = ms.load("weights.pth")                      # a plain state dict
    >>> ckpt = ms.load("ckpt.pt")                        # {"model": ..., "optimizer": ..., "epoch": 3}
    """
    path, uri = _remote.split(path)
    if uri is not None:
        return _load_remote(uri, storage_options, dict(
            model=model, format=format, device=device, trust=trust, strict=strict,
            verify=verify, sha256=sha256, **options))
    from ._shards import index_for

    shard_index = index_for(path)
    if shard_index is not None:  # a sharded checkpoint: a folder or its *.safetensors.index.json
        from ._shards import load_sharded

        return load_sharded(shard_index, model=model, format=format, device=device, trust=trust,
                            strict=strict, verify=verify, sha256=sha256, **options)
    p = existing_file(path)
    trust_arg = checked_trust(trust)
    if sha256 is not None:
        return _load_pinned(p, sha256, dict(model=model, format=format, device=device, trust=trust_arg,
                                            strict=strict, verify=verify, **options))
    backend = backend_for_file(p, format)
    backend.require(p, f"loading a {backend.name} file")
    from ._dtype import take_load_dtype

    take_load_dtype(backend, options, p)
    return read_consistently(p, lambda: _load_once(p, backend, model, device, trust_arg, strict, verify, options))


def checked_trust(trust: Any) -> bool | list[str]:
    if not (trust is True or trust is False or (isinstance(trust, (list, tuple, set)) and
                                                 all(isinstance(t, str) for t in trust))):
        raise ArgumentError("trust must be True, False or a list of 'module.Name' strings")
    return trust if isinstance(trust, bool) else list(trust)


_READ_ATTEMPTS = 8


def read_consistently(p: Path, once: Callable[[], tuple[Any, dict[str, Any] | None]],
                      retry_on: tuple[type[Exception], ...] = (IntegrityError,)) -> Any:
    """Run ``once`` (verify, scan, load) until ``p`` did not change under it: a save may
    replace the file (or a shard index) while we read, and every step must see the same one."""
    for attempt in range(_READ_ATTEMPTS):
        before = _identity(p)
        try:
            obj, meta = once()
        except retry_on:
            if _identity(p) == before or attempt + 1 == _READ_ATTEMPTS:
                raise
        else:
            if _identity(p) == before:
                _remember(obj, meta)
                return obj
        time.sleep(random.uniform(0, 0.005 * 2**attempt))  # let the writer finish its renames
    raise IntegrityError(f"{p}: the file kept changing while it was read ({_READ_ATTEMPTS} tries); try again")


def _load_pinned(p: Path, pin: str, kwargs: dict[str, Any]) -> Any:
    """A pinned load deserialises exactly the bytes that were pinned: the file and its
    companions are copied into a private folder, the file hashed as it is copied, the pin
    compared with that hash, and the copy is what gets loaded. A file rewritten after the
    check (in place, mtime restored) can no longer be read in its place, memory-mapped
    formats included."""
    import shutil

    from ._io import copy_hashing
    from .security.confine import open_confined

    if not isinstance(pin, str):
        check_pin(p, pin)  # raises the ArgumentError for a pin that is not a hex string
    with _remote._scratch("pin") as folder:
        copy = folder / p.name
        digest = copy_hashing(p, copy)
        check_pin(p, pin, actual=digest)
        for extra in _remote.companions(p):
            if extra == p:
                continue
            rel = extra.relative_to(p.parent)
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            with open_confined(p.parent, rel.as_posix(), what="the companion file", source=p, main=p) as src, \
                    open(folder / rel, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        with _as_uri(copy, str(p)):
            return load(copy, **kwargs)


def _load_remote(uri: str, storage_options: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
    """Fetch, then load through the same gate; retry when a save replaced the remote file
    between our reads (payload and metadata then disagree)."""
    for attempt in range(3):
        before = _remote.identity(uri, storage_options)
        with _remote.fetched(uri, storage_options) as local:
            try:
                with _as_uri(local, uri):
                    return load(local, **kwargs)
            except IntegrityError:
                if attempt == 2 or _remote.identity(uri, storage_options) == before:
                    raise
        time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _as_uri(local: Path, uri: str) -> Iterator[None]:
    """Errors and warnings about a fetched copy name the URI the caller gave, not our
    temporary folder."""
    def fix(text: str) -> str:
        return text.replace(str(local), uri)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except ModelstoreError as e:
            if isinstance(e, OSError):
                e.strerror = fix(e.strerror or "")
                e.filename = uri
            else:
                e.args = tuple(fix(a) if isinstance(a, str) else a for a in e.args)
            raise
        finally:
            pending = list(caught)
    for w in pending:  # re-issued outside the block, so the caller's filters apply
        warnings.warn(fix(str(w.message)), w.category, stacklevel=4)


def _relocated(info: ModelInfo, local: Path, uri: str) -> ModelInfo:
    """``info`` of a staged copy, with the path it now has remotely."""
    rel = Path(info.path).relative_to(local.parent).as_posix()
    return dataclasses.replace(info, path=_remote.join(_remote.parent_uri(uri), rel))


def _identity(p: Path) -> tuple[int, int, int]:
    try:
        st = p.stat()
    except OSError:  # replaced or removed this instant: differs from any real identity
        return (-1, -1, -1)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _load_once(p: Path, backend: Backend, model: Any, device: str | None, trust: bool | list[str],
               strict: bool, verify: bool, options: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    with _one_file(p, backend) as f:  # every step below reads the same file, even if p is replaced
        computed = None
        if verify and not backend.embeds_metadata and sidecar_path(p).is_file():
            computed = file_checksum(f)
        meta, where = _meta_of(p, backend, computed, data=f)
        with _reading(f, "verify"):
            if verify and meta and meta.get("checksum"):
                if backend.embeds_metadata:
                    backend.verify(f, meta)
                else:
                    check_checksum(f, str(meta["checksum"]), computed or file_checksum(f), where)
        with _reading(f, "scan"):
            _gate(backend, f, trust)
        request = LoadRequest(model=model, device=device, trust=trust, strict=strict, meta=meta,
                              options=dict(options))
        with _reading(f, "load"):
            obj = backend.load(f, request)
        _warn_unpickled(backend, f, trust)
    return obj, meta


@contextlib.contextmanager
def _one_file(p: Path, backend: Backend) -> Iterator[Path]:
    """A path that reaches the file ``p`` names *now*, for backends that read only that file:
    ``/proc/self/fd/N`` of a descriptor held open (Linux), so the checksum, the scan and the
    load all read one file even if a save (or an attacker) renames another over ``p`` in the
    middle; messages still name ``p``. Elsewhere, ``p`` itself (a change is then caught by
    ``read_consistently``)."""
    if not backend.reads_one_file or not os.path.isdir("/proc/self/fd"):
        yield p
        return
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fd_path = Path(f"/proc/self/fd/{fd}")
        with _as_uri(fd_path, str(p)):
            yield fd_path
    finally:
        os.close(fd)


def _gate(backend: Backend, path: Path, trust: bool | list[str]) -> None:
    """The one trust gate: scan before anything deserialises, refuse what is not allowed."""
    if backend.risk == "safe":
        return
    # a pickle backend whose loader is the restricted unpickler checks while it reads (one
    # pass); every other non-safe backend is scanned before anything is deserialised
    if trust is not True and not (backend.risk == "pickle" and getattr(backend, "checks_while_loading", False)):
        enforce(backend.scan(path), trust)


def _warn_unpickled(backend: Backend, path: Path, trust: bool | list[str]) -> None:
    if backend.risk == "pickle":
        what = "with trust=True: any code in it ran" if trust is True else (
            "through modelstore's allow-list (plain data, tensors, numpy, scipy, scikit-learn)")
        warnings.warn(f"{path}: unpickled {what}; prefer safetensors for weights you share",
                      PickleWarning, stacklevel=4)


def predict(model_or_path: Any, inputs: Any, *, batch_size: int | None = None,
            device: str | None = None, output: str = "raw") -> Any:
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
        # modelstore's own wrapper classes offer a lean path for the common call (ONNX serving:
        # every µs counts); looked up on the class, never on the instance, whose __dict__ a
        # loaded file may have filled
        fast = _fast_path(type(model_or_path))
        if fast is not None:
            return fast(model_or_path, inputs)
    if output not in OUTPUTS:
        raise ArgumentError(f"output must be one of {OUTPUTS}, not {output!r}")
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
        raise ArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        model = load(model_or_path)
    backend = _PREDICTORS.get(type(model)) or REGISTRY.for_object(model, action="predict")
    _PREDICTORS[type(model)] = backend
    meta = _KNOWN.get(model) if _weakrefable(model) else None
    labels = (meta or {}).get("labels")
    request = PredictRequest(batch_size=batch_size, device=device, output=output, labels=labels)
    return backend.predict(model, inputs, request)


def _fast_path(cls: type) -> Any:
    if not cls.__module__.startswith("modelstore."):
        return None
    return cls.__dict__.get("__modelstore_predict__")


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def inspect(path: PathLike, *, storage_options: dict[str, Any] | None = None) -> ModelInfo:
    """Describe a model file from its headers and opcodes; never runs code from it.

    A remote ``.safetensors`` (``s3://...``) is described from its header alone, read with
    two range requests; other remote files are copied to a temporary folder first.

    Examples
    --------
    >>> info = ms.inspect("digits.safetensors")
    >>> info.num_params, info.labels, [t.shape for t in info.tensors]
    """
    path, uri = _remote.split(path)
    if uri is not None:
        return _inspect_remote(uri, storage_options)
    from ._shards import index_for, inspect_sharded

    shard_index = index_for(path)
    if shard_index is not None:
        return inspect_sharded(shard_index)
    p = existing_file(path)
    return _inspect(p, backend_for_file(p, None))


def _inspect(p: Path, backend: Backend) -> ModelInfo:
    with _reading(p, "inspect"):
        found = backend.inspect(p)
    meta = _meta_of(p, backend)[0] or {}
    return _model_info(str(p), backend.name, found, meta, p.stat().st_size, sha256_of(p))


def _inspect_remote(uri: str, storage_options: dict[str, Any] | None) -> ModelInfo:
    from .backends import safetensors_

    if uri.lower().endswith(".safetensors"):
        # the header alone, with range requests: never the tensors (a 10 GB file costs ~2 reads)
        header = _remote.safetensors_header(uri, storage_options)
        found = safetensors_.inspection_of(header)
        meta = header.modelstore_meta() or {}
        check_meta(uri, meta, "its header")  # the same validation as a local inspect
        # sha256 needs every byte: left empty for a header-only look (ms.Store records it)
        return _model_info(uri, "safetensors", found, meta, header.file_size, "")
    with _remote.fetched(uri, storage_options) as local, _as_uri(local, uri):
        info = inspect(local)
    return _relocated(info, local, uri)


def _model_info(path: str, fmt: str, found: Any, meta: dict[str, Any], size: int, sha: str) -> ModelInfo:
    user = dict(found.extra_metadata)
    user.update(meta.get("metadata") or {})
    return ModelInfo(
        path=path,
        format=fmt,
        framework=meta.get("framework") or found.framework,
        size_bytes=size,
        sha256=sha,
        tensors=found.tensors,
        num_params=found.num_params if found.num_params is not None else sum(t.numel for t in found.tensors),
        metadata=user,
        labels=meta.get("labels") or found.labels,
        signature=meta.get("signature"),
        executes_code=found.executes_code,
        globals=found.globals,
    )


def recorded_metadata(path: PathLike) -> dict[str, Any]:
    """Everything modelstore recorded for ``path`` (class, config, versions, checksum)."""
    path, uri = _remote.split(path)
    if uri is not None:
        with _remote.fetched(uri) as local, _as_uri(local, uri):
            return recorded_metadata(local)
    from ._shards import index_for, recorded_meta

    shard_index = index_for(path)
    if shard_index is not None:
        return recorded_meta(shard_index)
    p = existing_file(path)
    meta, _ = _meta_of(p, backend_for_file(p, None))
    return meta or {}


def scan(path: PathLike, *, storage_options: dict[str, Any] | None = None) -> ScanReport:
    """A security verdict (``safe`` / ``unsafe`` / ``unknown``) for any supported file.

    Examples
    --------
    >>> report = ms.scan("downloaded.pt")
    >>> report.verdict, report.untrusted
    """
    path, uri = _remote.split(path)
    if uri is not None:
        if uri.lower().endswith(".safetensors"):  # the header alone decides: range requests
            from .backends import safetensors_

            return safetensors_.scan_header(uri, lambda: _remote.safetensors_header(uri, storage_options))
        with _remote.fetched(uri, storage_options) as fetched_path, _as_uri(fetched_path, uri):
            report = scan(fetched_path)
        return dataclasses.replace(report, path=uri)
    from ._shards import scan_if_sharded

    sharded = scan_if_sharded(path)
    if sharded is not None:
        return sharded
    try:
        p = existing_file(path)
        backend = backend_for_file(p, None)
    except FormatError as e:
        if not Path(os.fspath(path)).is_file():
            raise
        return ScanReport(os.fspath(path), "unknown", "unknown", [Finding("file", "warning", str(e))])
    try:
        with _reading(p, "scan"):
            report = backend.scan(p)
    except FormatError as e:
        return unreadable(p, backend.name, "damaged", str(e))
    problem = None if backend.embeds_metadata else sidecar_problem(p)
    if problem:  # load refuses a sidecar that leads outside: scan must not call the model safe
        return dataclasses.replace(report, verdict="unsafe",
                                   findings=[*report.findings, Finding("sidecar", "critical", problem)])
    return report


def export_onnx(model: Any, path: PathLike, *, sample_input: Any, opset: int | None = None,
                dynamic_batch: bool = True, check: bool = True, rtol: float = 1e-3,
                atol: float = 1e-5, storage_options: dict[str, Any] | None = None) -> ModelInfo:
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

    Returns
    -------
    ModelInfo of the ONNX file; its metadata records exporter, versions, opset, tolerances
    and the measured differences.

    Examples
    --------
    >>> ms.export_onnx(net, "digits.onnx", sample_input=x[:8])
    >>> ms.predict("digits.onnx", x)          # onnxruntime only: no torch needed
    """
    path, uri = _remote.split(path)
    if uri is not None:
        with _remote.staged(uri, True, storage_options) as staged:
            info = export_onnx(model, staged, sample_input=sample_input, opset=opset,
                               dynamic_batch=dynamic_batch, check=check, rtol=rtol, atol=atol)
        return _relocated(info, staged, uri)
    return _export(model, Path(os.fspath(path)), sample_input=sample_input, opset=opset,
                   dynamic_batch=dynamic_batch, check=check, rtol=rtol, atol=atol)


def _export(model: Any, target: Path, *, sample_input: Any, opset: int | None = None,
            dynamic_batch: bool = True, check: bool = True, rtol: float = 1e-3, atol: float = 1e-5,
            labels: Any = None, metadata: Any = None, source: Path | None = None) -> ModelInfo:
    if sample_input is None:
        raise ArgumentError(f"{target}: ONNX export needs sample_input=, an example batch of inputs")
    check_target(target, overwrite=True)
    source_backend = REGISTRY.for_object(model)
    onnx_backend = REGISTRY.get("onnx")
    onnx_backend.require(target, "ONNX export")
    known = _KNOWN.get(model) if _weakrefable(model) else None
    if labels is None and known:
        labels = known.get("labels")
    meta = build_meta(source_backend, model, config=None, metadata=metadata, labels=labels,
                      sample_input=sample_input)
    meta["format"] = "onnx"
    from .backends import _onnx_export, onnx_

    sample = _numeric_sample(target, sample_input)
    moved: list[Path] = []
    try:
        with atomic_paths(target) as (tmp,):
            try:
                exported = source_backend.export_onnx(model, tmp, sample, opset, dynamic_batch)
            except (ModelstoreError, Warning):
                raise
            except Exception as e:  # exporters raise their own types for unsupported graphs
                first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                msg = (f"{target}: {source_backend.name} could not export this model "
                       f"({type(e).__name__}: {first[:300]}); check sample_input's shape and dtype")
                raise UnsupportedModelError(msg) from None
            parity = (_onnx_export.check_parity(tmp, exported, sample, dynamic_batch, rtol, atol)
                      if check else None)
            moved = onnx_.rename_external_data(tmp, target)  # unique names: the old pair stays whole
            import onnx
            import onnxruntime

            meta["onnx"] = {
                "exporter": exported.exporter, "exporter_version": exported.exporter_version,
                "opset": exported.opset, "onnx_version": onnx.__version__,
                "onnxruntime_version": onnxruntime.__version__, "parity": parity,
                "source_format": source_backend.name,
                "source_sha256": sha256_of(source) if source is not None else None,
                **exported.extra,
            }
            onnx_.embed_metadata(tmp, meta)
    except BaseException:
        for data in moved:
            data.unlink(missing_ok=True)
        raise
    onnx_.remove_stale_external_data(target)
    _remember(model, meta)
    return _inspect(target, onnx_backend)


def _numeric_sample(target: Path, sample: Any) -> Any:
    """The sample as something exporters accept: tensors and arrays pass, lists become arrays;
    anything that is not numbers is an ArgumentError."""
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


def convert(src: PathLike, dst: PathLike, *, model: Any = None, sample_input: Any = None,
            trust: bool | list[str] = False, storage_options: dict[str, Any] | None = None) -> ModelInfo:
    """Load ``src`` (through the same trust gate) and save it as ``dst``'s format.

    Metadata recorded with ``src`` (config, labels, your metadata) carries over; converting to
    ``.onnx`` needs ``sample_input`` and records ``src``'s sha256 in the ONNX metadata.

    Examples
    --------
    >>> ms.convert("weights.pth", "weights.safetensors")
    >>> ms.convert("digits.safetensors", "digits.onnx", model=Net, sample_input=x[:8])
    >>> ms.convert("s3://models/weights.pth", "s3://models/weights.safetensors")
    """
    src, src_uri = _remote.split(src)
    if src_uri is not None:
        with _remote.fetched(src_uri, storage_options) as local, _as_uri(local, src_uri):
            return convert(local, dst, model=model, sample_input=sample_input, trust=trust,
                           storage_options=storage_options)
    dst, dst_uri = _remote.split(dst)
    if dst_uri is not None:
        with _remote.staged(dst_uri, True, storage_options) as staged:
            info = convert(src, staged, model=model, sample_input=sample_input, trust=trust)
        return _relocated(info, staged, dst_uri)
    meta = recorded_metadata(src)
    obj = load(src, model=model, trust=trust)
    dst_path = Path(os.fspath(dst))
    if dst_path.suffix.lower() == ".onnx":
        return _export(obj, dst_path, sample_input=sample_input, labels=meta.get("labels"),
                       metadata=meta.get("metadata"), source=existing_file(src))
    return save(obj, dst_path, config=meta.get("config"), metadata=meta.get("metadata"),
                labels=meta.get("labels"), sample_input=sample_input)


def register(backend: Any, *, clobber: bool = False) -> None:
    """Add a backend (a :class:`modelstore.backends.Backend` subclass or instance).

    A name already taken raises :class:`RegistryError` unless ``clobber=True``.
    """
    REGISTRY.register(backend, clobber=clobber)


def backends() -> list[str]:
    """Names of every known backend: built-in, registered and installed plugins."""
    return REGISTRY.names()

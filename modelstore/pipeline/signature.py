"""Signature step of the load pipeline: which files a signature must cover, and a verified
private copy of them for the load to read.

The bundle checks and the call into ``model_signing`` live in :mod:`modelstore.security.signing`
(no knowledge of formats); this module knows which files make up a model (the backend's
companions and the sidecar) and where the signature lies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import SignatureError
from ..security import signing as core
from ..security.confine import ConfinementError
from ..security.signing_bundle import MAX_BUNDLE
from ..security.signing_policy import resolve_signer
from ..storage import remote
from ..storage.files import removals_done
from ..storage.sidecar import sidecar_path
from . import choose, locate


@dataclasses.dataclass(frozen=True)
class VerifiedSignature:
    """What a successful check established.

    ``signer`` is ``"key sha256:<hex>"`` (the hash of the public key's PEM, as
    ``model_signing`` records it) or the signing certificate's subject; ``files`` every file the
    signature covers (relative to the model's folder); ``digests`` their signed digests
    (``"sha256:<hex>"``, per file or per file shard).
    """

    path: str
    signature: str
    signer: str
    key_id: str
    files: tuple[str, ...]
    digests: dict[str, str]
    method: str
    hash_type: str

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "files": list(self.files)}


def result(v: core.Verified) -> VerifiedSignature:
    return VerifiedSignature(
        path=str(v.model.path),
        signature=str(v.signature),
        signer=v.signer,
        key_id=v.key_id,
        files=tuple(v.files),
        digests=dict(v.digests),
        method=v.method,
        hash_type=v.hash_type,
    )


def model_files(path: Path, signature: Path | None, *, signing: bool = False) -> core.ModelFiles:
    """The model's own files: a folder's every file (less the signature); for a file, itself
    (or the shard index its name leads to) and its sidecar. ``signing=True`` adds what the file
    names (shards, ONNX external data): a signer reads its own files; a verifier parses
    nothing before the check and takes those names from the verified manifest instead."""
    if path.is_dir():
        removals_done()  # a save that returned leaves no temp name in the folder
        names = [n for n in core.walk(path) if signature is None or path / n != signature]
        return core.ModelFiles(path, path, "", sorted(names), True)
    target = choose.model_file(path)  # ModelNotFoundError if there is none
    root = path.parent
    try:
        if signing:
            found = locate.model_paths(target, choose.for_file(target, None))
        else:
            found = [target]
            side = sidecar_path(target)
            if os.path.lexists(side):
                found.append(side)
    except ConfinementError as e:
        raise SignatureError(f"{path}: {e}") from e
    names = sorted({f.relative_to(root).as_posix() for f in found})
    return core.ModelFiles(path, root, path.name, names, False)


@contextlib.contextmanager
def verified(path: Any, *, signed_by: Any, signature: Any = None) -> Iterator[core.Verified]:
    """Verify the model's signature over a private copy and yield where that copy lies; the
    copy is removed afterwards. What a load must read is ``.load_path``."""
    from ..errors import ModelstoreError, StorageError

    p = Path(os.fspath(path))
    key = resolve_signer(signed_by, p)
    sig = Path(os.fspath(signature)) if signature is not None else core.default_signature(p)
    with remote.scratch("signed") as folder:
        try:
            v = core.verify_copy(model_files(p, sig), signed_by=key, sig=sig, scratch=folder)
        except OSError as e:
            if isinstance(e, ModelstoreError):
                raise
            # the folder changed while it was read, or $TMPDIR is full: say which
            msg = f"{p}: could not copy the model for its signature check ({e.strerror or e}: {e.filename or ''})"
            raise StorageError(e.errno or 5, msg, str(p)) from None
        yield v


@contextlib.contextmanager
def fetched_with_signature(
    uri: str, signature: Any, storage_options: dict[str, Any] | None, fmt: str | None
) -> Iterator[tuple[Path, Path, str]]:
    """A remote model's files in a private folder, and its signature (``URI.sig`` unless
    ``signature`` names another local path or URI): yields ``(local, local signature, shown)``."""
    sig_uri = (
        os.fspath(signature) if signature is not None else uri.rstrip("/") + core.SIGNATURE_SUFFIX
    )
    with (
        locate.fetched(uri, storage_options, fmt) as (local, shown),
        remote.scratch("sig") as sig_dir,
    ):
        yield local, _download_signature(sig_uri, storage_options, sig_dir / "model.sig"), shown


def _download_signature(sig: str, storage_options: dict[str, Any] | None, dest: Path) -> Path:
    local, uri = remote.split(sig)
    if uri is None:
        return Path(os.fspath(local))
    fs, rpath = remote.open_fs(uri, storage_options)
    try:
        with fs.open(rpath, "rb") as f:
            data = f.read(MAX_BUNDLE + 1)
    except FileNotFoundError:
        raise SignatureError(
            f"{uri}: no signature here; sign the model (ms.sign) and upload the bundle beside it, "
            f"or pass signature="
        ) from None
    except OSError as e:
        raise SignatureError(f"{uri}: cannot read the signature ({e})") from None
    dest.write_bytes(data)
    return dest

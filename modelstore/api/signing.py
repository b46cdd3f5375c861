"""``ms.sign`` and ``ms.verify``: OpenSSF model signing of a model and all its companion files.

>>> import modelstore as ms
>>> ms.sign("digits.safetensors", key="team.key")          # writes digits.safetensors.sig
>>> ms.verify("digits.safetensors", signed_by="team.pub")   # VerifiedSignature(...)
>>> net = ms.load("digits.safetensors", model=Net, signed_by="team.pub")

The signing and the bundle format are the ``model-signing`` library's own (install
``modelstore-safe[signing]``); a bundle made here verifies with ``model_signing`` and its CLI, and
one made there verifies here. What modelstore adds: the signature covers exactly the files a
load reads (sidecar, shard index and shards, ONNX external data), the check runs over a private
copy of those bytes and the load reads that copy (:mod:`modelstore.pipeline.signature`), and a
:class:`~modelstore.SigningPolicy` says once which key must have signed what.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, ModelstoreError, SignatureError
from ..pipeline import signature as step
from ..pipeline.signature import VerifiedSignature
from ..security import signing as _core
from ..security.signing_policy import SigningPolicy, resolve_signer

__all__ = ["sign", "verify", "VerifiedSignature", "SigningPolicy"]

PathLike = str | os.PathLike[str]


def sign(
    path: PathLike,
    *,
    key: Any,
    certificate_chain: list[Any] | None = None,
    signature: PathLike | None = None,
    password: str | None = None,
) -> Path:
    """Sign a model and all its companion files in the OpenSSF Model Signing format.

    Parameters
    ----------
    path : the model file (its sidecar, shard index and shards, ONNX external data are signed
        with it) or a model folder (every file in it).
    key : the private key (EC P-256/P-384/P-521): a PEM path, PEM bytes or a ``cryptography``
        private key object.
    certificate_chain : sign with a certificate instead of a bare key: the signing certificate
        first, then the intermediates (PEM paths, bytes or ``x509.Certificate`` objects).
    signature : where to write the bundle; default ``FILE.sig`` beside a file,
        ``FOLDER/model.sig`` inside a folder.
    password : for an encrypted PEM key.

    Returns
    -------
    The path of the signature bundle.

    Examples
    --------
    >>> ms.sign("digits.safetensors", key="team.key")
    PosixPath('digits.safetensors.sig')
    >>> ms.verify("digits.safetensors", signed_by="team.pub").signer
    'key sha256:9f86d0...'
    """
    _core.require_signing()
    from model_signing import hashing, signing

    p = Path(os.fspath(path))
    sig = Path(os.fspath(signature)) if signature is not None else _core.default_signature(p)
    model = step.model_files(p, sig, signing=True)
    files = [model.root / n for n in model.files]
    ignored = [sig] if _inside(sig, model.root) else []

    class _Listed(hashing.Config):  # hash exactly the model's files, not the whole folder
        def hash(self, model_path: Any, *, files_to_hash: Any = None) -> Any:
            return super().hash(model_path, files_to_hash=files)

    ignore = [s.resolve().relative_to(model.root.resolve()) for s in ignored]
    hashing_config = _Listed().set_ignored_paths(paths=ignore, ignore_git_paths=False)  # type: ignore[no-untyped-call]
    with _scratch() as folder:
        key_file = _pem_file(key, folder / "key.pem", private=True)
        config = signing.Config().set_hashing_config(hashing_config)  # type: ignore[no-untyped-call]
        try:
            if certificate_chain:
                chain = [
                    _pem_file(c, folder / f"cert{i}.pem") for i, c in enumerate(certificate_chain)
                ]
                config.use_certificate_signer(
                    private_key=key_file, signing_certificate=chain[0], certificate_chain=chain[1:]
                )
            else:
                config.use_elliptic_key_signer(private_key=key_file, password=password)
        except (ValueError, TypeError) as e:
            raise ArgumentError(f"key: model_signing cannot sign with it ({e})") from None
        tmp = sig.with_name(f".{sig.name}.{os.getpid()}.tmp")
        try:
            config.sign(model.root, tmp)
            os.replace(tmp, sig)
        except OSError as e:
            raise SignatureError(f"{sig}: cannot write the signature ({e.strerror or e})") from None
        except ModelstoreError:
            raise
        except Exception as e:  # model_signing refuses a link or special file, or a file vanished
            raise SignatureError(f"{p}: cannot sign ({type(e).__name__}: {e})") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return sig


def _inside(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _pem_file(value: Any, dest: Path, *, private: bool = False) -> Path:
    """A key or certificate as a file ``model_signing`` can read (a path stays as it is)."""
    if isinstance(value, (str, os.PathLike)):
        return Path(os.fspath(value))
    from cryptography.hazmat.primitives import serialization

    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif private and hasattr(value, "private_bytes"):
        data = value.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    elif not private and hasattr(value, "public_bytes") and hasattr(value, "subject"):
        data = value.public_bytes(serialization.Encoding.PEM)
    else:
        what = "a private key" if private else "a certificate"
        raise ArgumentError(
            f"expected {what} (PEM path, PEM bytes or a cryptography object), "
            f"not {type(value).__name__}"
        )
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return dest


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="modelstore-sign-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verify(
    path: PathLike, *, signed_by: Any, signature: PathLike | None = None
) -> VerifiedSignature:
    """Check that ``signed_by`` signed exactly the model's files as they are now.

    Parameters
    ----------
    path : the model file (with its companions) or folder.
    signed_by : the public key (PEM path, PEM bytes, ``cryptography`` key), the certificate(s)
        the signing certificate must chain to, or a :class:`SigningPolicy`.
    signature : the bundle; default ``FILE.sig`` or ``FOLDER/model.sig``.

    Raises
    ------
    SignatureError : no signature, an invalid one, another signer, a file changed, added,
        renamed or missing since signing. FormatError : a malformed bundle.

    Examples
    --------
    >>> v = ms.verify("digits.safetensors", signed_by="team.pub")
    >>> v.signer, v.files
    ('key sha256:9f86d0...', ('digits.safetensors', 'digits.safetensors.modelstore.json'))
    """
    with step.verified(path, signed_by=signed_by, signature=signature) as v:
        return step.result(v)


# -- the store -----------------------------------------------------------------------------------


def push_signature(target: Path, key: Any) -> Path:
    """Sign the model ``target`` (its files as a push uploads them) into a bundle in a new
    private folder; the caller uploads it as ``ENTRY.sig`` and removes the folder."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="modelstore-push-sig-"))
    try:
        return sign(target, key=key, signature=folder / "model.sig")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def load_from_store(store: Any, ref: str, signed_by: Any, load_kwargs: dict[str, Any]) -> Any:
    """``Store.load(ref, signed_by=)``: pull the version (its files and its ``ENTRY.sig``) into
    a private folder, then load it through ``load(signed_by=)``."""
    from ..pipeline.read import renamed
    from .load import load

    version = store.resolve(ref)
    key = resolve_signer(signed_by, store_name=version.name)
    entry = store.path(ref)
    with _scratch() as folder:
        local = store.pull(f"{version.name}@{version.version}", folder / "v")
        sig = local.with_name(local.name + _core.SIGNATURE_SUFFIX)
        if not sig.is_file():
            raise SignatureError(
                f"{entry}: version {version.version} of {version.name!r} has no signature; "
                f"push it with sign_with=KEY (or load without signed_by)"
            )
        with renamed(local.parent, entry.rsplit("/", 1)[0] if "/" in entry else entry):
            return load(local, signed_by=key, signature=sig, **load_kwargs)

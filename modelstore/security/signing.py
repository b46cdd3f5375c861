"""Check an OpenSSF Model Signing bundle over bytes we hold, and say what the loader may read.

``model_signing`` verifies a signature by hashing the files on disk; a load that then opens
them again would read whatever is there *then*, so a file swapped in between would be loaded
unverified. Here, in this order:

1. the bundle is read once (bounded size, bounded JSON depth) into a private folder, and the
   names its manifest lists are checked like any companion name (no ``..``, nothing absolute);
2. the model's files (the model file, its sidecar, for a folder every file in it) and every
   file the manifest lists are copied into that private folder, each opened through the one
   confinement check (no link leading out, no hard link, no device or FIFO);
3. ``model_signing``'s own public verification runs over the private copy, with the key or
   certificate the *caller* gave;
4. every copied file must be listed in the verified manifest: an ignore-list or hashing
   setting in the bundle cannot hide one (an ignored file is missing from the hashed side, so
   the manifests differ), and a file present but not signed is refused;
5. the caller loads from the private copy, which nothing else can write.

Everything that goes wrong is a :class:`~modelstore.errors.SignatureError` (or a
``FormatError`` for a malformed bundle) naming the file and the reason; nothing from the
model has been parsed by then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, ModelNotFoundError, SignatureError
from .confine import ConfinementError, open_confined
from .signing_bundle import MAX_RESOURCES, Bundle, read_bundle
from .signing_trust import Trust, trust_material

SIGNATURE_SUFFIX = ".sig"
FOLDER_SIGNATURE = "model.sig"
_INSTALL = 'pip install "modelstore-safe[signing]"'


# -- what a signature covers -------------------------------------------------------------------


@dataclass
class ModelFiles:
    """The files that make up a model, relative to ``root``."""

    path: Path  # what the caller named
    root: Path  # the folder the manifest's names are relative to
    main: str  # the name to load inside ``root`` ("" for a folder: load the folder)
    files: list[str]  # what must be signed (sorted)
    folder: bool  # a folder model: every file in it belongs to it


def default_signature(path: Path) -> Path:
    """Where a signature lives unless the caller says: ``FOLDER/model.sig`` for a folder,
    ``FILE.sig`` beside a file (for a sharded ``NAME.safetensors``, beside that name)."""
    return (
        path / FOLDER_SIGNATURE if path.is_dir() else path.with_name(path.name + SIGNATURE_SUFFIX)
    )


def walk(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (relative names); a link or special file anywhere
    is refused: a signed folder holds files, nothing that leads elsewhere."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            rel = full.relative_to(folder).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise SignatureError(
                    f"{folder}: {rel} is a symbolic link; a signed model folder holds "
                    f"only its own files (copy the target in, or remove the link)"
                )
            if stat.S_ISREG(st.st_mode):
                out.append(rel)
                if len(out) > MAX_RESOURCES:
                    raise SignatureError(
                        f"{folder}: holds more than {MAX_RESOURCES} files; that is not one model"
                    )
            elif not stat.S_ISDIR(st.st_mode):
                raise SignatureError(
                    f"{folder}: {rel} is not a regular file; remove it from the model folder"
                )
    return out


# -- verifying over a private copy -------------------------------------------------------------


@dataclass
class Verified:
    """What a signature check established, and where the verified copy lies."""

    model: ModelFiles
    signature: Path
    load_path: Path  # inside the private copy: what the loader must read
    copy_root: Path
    files: list[str]  # every file the signature covers and we copied
    digests: dict[str, str]
    signer: str
    key_id: str
    method: str
    hash_type: str


def require_signing() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("model_signing", "OpenSSL") if find_spec(m) is None]
    if missing:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(f"signature checks need {', '.join(missing)}: {_INSTALL}")


def verify_copy(model: ModelFiles, *, signed_by: Any, sig: Path, scratch: Path) -> Verified:
    """Copy the model's files and what its signature ``sig`` lists into ``scratch``, verify
    the copy with ``model_signing`` against ``signed_by``, and return where to load from.
    ``model`` lists what the load would read (:func:`modelstore.pipeline.signature.model_files`)."""
    require_signing()
    trust = trust_material(signed_by)
    path = model.path
    bundle = read_bundle(sig)
    copy_root = scratch / "model"
    copy_root.mkdir()
    (scratch / "signature.sig").write_bytes(bundle.raw)
    single = bundle.names == ["."]
    if single:  # model_signing signed the one file itself: nothing else may come with it
        extra = [n for n in model.files if n != model.main]
        if model.folder or extra:
            msg = (
                f"{sig}: signs a single file, but {path} also has {', '.join(extra) or 'a folder'}, which "
                f"the signature does not cover; sign the model with ms.sign (it covers the companions)"
            )
            raise SignatureError(msg)
        wanted = [model.main]
    else:
        unsigned = sorted(set(model.files) - set(bundle.names))
        if unsigned:
            kind = "in the signed folder" if model.folder else "that the load would read"
            msg = (
                f"{path}: {', '.join(unsigned[:5])} {kind} {'is' if len(unsigned) == 1 else 'are'} not covered "
                f"by the signature {sig}; files were added or renamed after signing (remove them, or sign again)"
            )
            raise SignatureError(msg)
        wanted = sorted(set(model.files) | set(bundle.names))
    for name in wanted:
        _copy_in(model, name, copy_root / name, sig)
    verify_root = copy_root / model.main if single else copy_root
    signer = _run_model_signing(verify_root, scratch, trust, sig, path, bundle)
    load_path = copy_root / model.main if model.main else copy_root
    return Verified(
        model,
        sig,
        load_path,
        copy_root,
        wanted,
        bundle.digests,
        signer or _who(trust, bundle),
        trust.key_id,
        bundle.method,
        bundle.hash_type,
    )


def _copy_in(model: ModelFiles, name: str, dst: Path, sig: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            open_confined(model.root, name, what="the signed file", source=sig) as src,
            open(dst, "xb") as out,
        ):
            _copy(src, out)
    except ModelNotFoundError:
        msg = (
            f"{model.path}: the signature {sig} lists {name}, which is missing; the model changed "
            f"after it was signed (restore it, or sign again)"
        )
        raise SignatureError(msg) from None
    except ConfinementError as e:
        raise SignatureError(f"{model.path}: {e}") from e


def _copy(src: Any, out: Any) -> None:
    """Copy in the kernel where it can (no trip through Python buffers), else by chunks."""
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src.fileno(), out.fileno(), 64 << 20):
                pass
            return
        except OSError:  # a file system without it: start again the plain way
            src.seek(0)
            out.seek(0)
            out.truncate()
    shutil.copyfileobj(src, out, 8 << 20)


def _run_model_signing(
    verify_root: Path, scratch: Path, trust: Trust, sig: Path, path: Path, bundle: Bundle
) -> str | None:
    """``model_signing``'s public verification over the private copy; its errors become
    SignatureError with the reason in words. The hashing settings are the bundle's, as
    checked by :func:`read_bundle` (method, algorithm, a sane integer shard size), never its
    symlink or git-path switches: the copy holds exactly the files we put there."""
    from model_signing import hashing, verifying

    key_file = scratch / ("trust.pem")
    key_file.write_bytes(trust.pem)
    algorithm = "blake2" if bundle.hash_type == "blake2b" else bundle.hash_type
    hashed = hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)  # type: ignore[no-untyped-call]
    if bundle.method == "shards":
        hashed.use_shard_serialization(hashing_algorithm=algorithm, shard_size=bundle.shard_size)  # type: ignore[arg-type]
    else:
        hashed.use_file_serialization(hashing_algorithm=algorithm)  # type: ignore[arg-type]
    config = verifying.Config().set_hashing_config(hashed)  # type: ignore[no-untyped-call]
    try:
        if trust.kind == "key":
            config.use_elliptic_key_verifier(public_key=key_file)
        else:
            config.use_certificate_verifier(certificate_chain=[key_file])
    except Exception as e:  # an unsupported curve or key type
        raise ArgumentError(f"signed_by: model_signing cannot verify with this key ({e})") from None
    try:
        with _quiet_stdout():
            config.verify(verify_root, scratch / "signature.sig")
    except Exception as e:
        raise SignatureError(f"{path}: {_reason(e)} (signature {sig})") from None
    return None


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """model_signing prints a warning for old-style bundles; a library must not print."""
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    name = type(e).__name__
    if "Key mismatch" in text:
        return "the signature was made with another key than signed_by"
    if name == "InvalidSignature":
        return "the signature is not valid for signed_by's key (another signer, or the bundle was altered)"
    if "Signature mismatch" in text:
        detail = text.split(":", 1)[1].strip()
        if (
            detail.startswith("[") and len(detail) < 20_000
        ):  # model_signing formats a list of findings
            import ast

            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                found = ast.literal_eval(detail)
                if isinstance(found, list):
                    detail = "; ".join(str(x) for x in found)
        return "the files differ from what was signed: " + detail[:600]
    if "X509StoreContextError" in name or "certificate" in text.lower():
        return f"the signing certificate does not chain to signed_by ({text[:300]})"
    return f"the signature does not verify ({name}: {text[:300]})"


def _who(trust: Trust, bundle: Bundle) -> str:
    if bundle.certificate is not None:
        from cryptography import x509

        with contextlib.suppress(ValueError):
            return x509.load_der_x509_certificate(bundle.certificate).subject.rfc4514_string()
    return f"key sha256:{trust.key_id}"

"""An OpenSSF Model Signing bundle read as hostile input, before anything is verified: bounded size
and JSON depth, the names its manifest lists checked like any companion name, the hashing
method and shard size it asks for limited to what we accept."""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, ModelNotFoundError, ModelstoreError, SignatureError
from .confine import ConfinementError, check_name, open_confined
from .jsonsafe import loads

#: A bundle holds a manifest of names and digests and a few certificates: far below this.
MAX_BUNDLE = 32 << 20
#: Files (or file shards) one manifest may list.
MAX_RESOURCES = 100_000


#: The smallest shard size we let a bundle ask us to hash by (a tiny one is a CPU bomb).
MIN_SHARD = 1 << 20


HASHES = {"sha256", "blake2b", "blake2", "blake3"}


@dataclass
class Bundle:
    """The parts of a bundle we read before ``model_signing`` verifies it."""

    raw: bytes
    names: list[str]  # file names the manifest lists ("." for a single signed file)
    method: str
    hash_type: str
    digests: dict[str, str] = field(default_factory=dict)
    certificate: bytes | None = None  # the leaf certificate (DER), for certificate bundles
    shard_size: int = 0


def read_bundle(sig: Path) -> Bundle:
    """Read and pre-check the bundle at ``sig`` (no cryptography yet: structure, sizes,
    names), so a hostile bundle is refused before ``model_signing`` parses it."""
    where = f"{sig}: the signature bundle"
    try:
        with open_confined(sig.parent, sig.name, what="the signature") as f:
            raw = f.read(MAX_BUNDLE + 1)
    except ModelNotFoundError:
        msg = (
            f"{sig}: no signature here; sign the model first (ms.sign or `modelstore sign`) "
            f"or pass signature= with the bundle's path"
        )
        raise SignatureError(msg) from None
    except ConfinementError as e:
        raise SignatureError(f"{sig}: {e}") from e
    if len(raw) > MAX_BUNDLE:
        raise FormatError(
            f"{where} is over {MAX_BUNDLE >> 20} MiB; a real bundle is a few KiB. It is not a signature"
        )
    bundle = loads(raw, where=where, max_bytes=MAX_BUNDLE)
    envelope = _get(bundle, "dsseEnvelope", dict, where)
    payload = _get(envelope, "payload", str, where)
    try:
        statement = loads(
            base64.b64decode(payload, validate=True),
            where=f"{where}'s payload",
            max_bytes=MAX_BUNDLE,
        )
    except (binascii.Error, ValueError) as e:
        if isinstance(e, ModelstoreError):
            raise
        raise FormatError(f"{where}: the payload is not base64 ({e})") from None
    predicate = _get(statement, "predicate", dict, where)
    serialization = _get(predicate, "serialization", dict, where)
    resources = _get(predicate, "resources", list, where)
    method = _get(serialization, "method", str, where)
    hash_type = _get(serialization, "hash_type", str, where)
    if method not in ("files", "shards") or hash_type not in HASHES:
        raise FormatError(f"{where}: unknown serialization {method!r} / {hash_type!r}")
    size = 0
    if method == "shards":
        size = serialization.get("shard_size")
        # protobuf's JSON writes numbers as floats (1048576.0); jsonsafe already refused inf/nan
        if type(size) not in (int, float) or size != int(size) or size < MIN_SHARD:
            raise FormatError(
                f"{where}: shard_size {size!r} is below {MIN_SHARD} bytes; refusing to hash by it"
            )
    if len(resources) > MAX_RESOURCES:
        raise FormatError(
            f"{where}: lists {len(resources)} resources, more than the {MAX_RESOURCES} accepted"
        )
    names: set[str] = set()
    digests: dict[str, str] = {}
    for res in resources:
        if not isinstance(res, dict):
            raise FormatError(f"{where}: a resource is not an object")
        name = _get(res, "name", str, where)
        digest = res.get("digest")
        file_name = name.rsplit(":", 2)[0] if method == "shards" else name
        if file_name != ".":
            try:
                check_name(file_name, what="the signed file", source=sig)
            except ConfinementError as e:
                raise SignatureError(f"{sig}: {e}") from e
        names.add(file_name)
        if isinstance(digest, str):
            algo = res.get("algorithm")
            digests[name] = f"{algo}:{digest}" if isinstance(algo, str) else digest
    if "." in names and len(names) > 1:
        raise FormatError(f"{where}: mixes a single-file entry '.' with named files")
    material = bundle.get("verificationMaterial")
    cert = None
    if isinstance(material, dict):
        chain = material.get("x509CertificateChain")
        if (
            isinstance(chain, dict)
            and isinstance(chain.get("certificates"), list)
            and chain["certificates"]
        ):
            first = chain["certificates"][0]
            if isinstance(first, dict) and isinstance(first.get("rawBytes"), str):
                with contextlib.suppress(binascii.Error, ValueError):
                    cert = base64.b64decode(first["rawBytes"], validate=True)
    return Bundle(raw, sorted(names), method, hash_type, digests, cert, int(size))


def _get(obj: Any, key: str, kind: type, where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise FormatError(
            f"{where}: no {key!r} {kind.__name__} where an OpenSSF model signature has one"
        )
    return value

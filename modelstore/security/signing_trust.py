"""Who must have signed: the caller's ``signed_by`` (a PEM path or bytes, a public key, certificates)
read into the key or certificate material ``model_signing`` verifies against. A private key
is refused."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArgumentError

#: Key and certificate files are small.
MAX_KEY = 1 << 20


@dataclass
class Trust:
    """The caller's key or certificates, as files for ``model_signing``."""

    kind: str  # "key" or "certificate"
    pem: bytes
    key_id: str  # sha256 of the public key's PEM (model_signing's key hint), or of the certs


def trust_material(signed_by: Any) -> Trust:
    """A public key or certificate(s) from a PEM path, PEM bytes or a ``cryptography`` object."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem: bytes
    if isinstance(signed_by, (str, os.PathLike)):
        p = Path(os.fspath(signed_by))
        try:
            with open(p, "rb") as f:
                pem = f.read(MAX_KEY + 1)
        except OSError as e:
            raise ArgumentError(
                f"{p}: cannot read the key or certificate given as signed_by ({e.strerror})"
            ) from None
        if len(pem) > MAX_KEY:
            raise ArgumentError(
                f"{p}: over {MAX_KEY} bytes; signed_by takes a PEM public key or certificate"
            )
    elif isinstance(signed_by, (bytes, bytearray)):
        pem = bytes(signed_by)
    elif isinstance(signed_by, x509.Certificate):
        pem = signed_by.public_bytes(serialization.Encoding.PEM)
    elif (
        isinstance(signed_by, (list, tuple))
        and signed_by
        and all(isinstance(c, x509.Certificate) for c in signed_by)
    ):
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in signed_by)
    elif hasattr(signed_by, "public_bytes") and hasattr(signed_by, "verify"):  # a public key object
        pem = signed_by.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif hasattr(signed_by, "private_bytes"):
        raise ArgumentError(
            "signed_by takes the PUBLIC key (private_key.public_key()), never the private key"
        )
    else:
        raise ArgumentError(
            f"signed_by must be a PEM path, PEM bytes, a public key or certificate(s), "
            f"not {type(signed_by).__name__}"
        )
    if b"PRIVATE KEY" in pem:
        raise ArgumentError(
            "signed_by takes a public key or certificate; this is a private key: keep it secret"
        )
    if b"BEGIN CERTIFICATE" in pem:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as e:
            raise ArgumentError(f"signed_by: the certificate does not parse ({e})") from None
        return Trust(
            "certificate",
            pem,
            hashlib.sha256(
                b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)
            ).hexdigest(),
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise ArgumentError(f"signed_by is not a PEM public key or certificate ({e})") from None
    canonical = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Trust("key", canonical, hashlib.sha256(canonical).hexdigest())

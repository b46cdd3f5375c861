"""``modelstore sign`` and ``modelstore verify`` (and ``signer_arg`` for ``serve --signed-by``).

Exit codes: 0 signed / verified, 1 the signature is refused (missing, invalid, another signer,
files changed), 2 usage error or bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ..errors import ModelstoreError, SignatureError

EXAMPLES = {
    "sign": "examples:\n  modelstore sign digits.safetensors --key team.key\n"
    "  modelstore sign shards/ --key team.key --json\n"
    "  modelstore sign digits.onnx --key release.key --cert release.pem --cert ca.pem",
    "verify": "examples:\n  modelstore verify digits.safetensors --signed-by team.pub\n"
    "  modelstore verify shards/ --signed-by policy.toml --json\n"
    "exit codes: 0 verified, 1 refused (no signature, another signer, files changed), 2 error",
}


def signer_arg(value: str | None) -> Any:
    """``--signed-by``: a PEM public key or certificate, or a policy file (.toml / .json)."""
    if value is None:
        return None
    if value.lower().endswith((".toml", ".json")):
        from ..security.signing_policy import SigningPolicy

        return SigningPolicy.load(value)
    return value


def add_parser(sub: Any, make: Any) -> None:
    """Add ``sign`` and ``verify`` to the CLI."""
    text = "sign a model and its companion files (OpenSSF model signing); writes FILE.sig or FOLDER/model.sig"
    p = make(sub, "sign", text, EXAMPLES["sign"])
    p.add_argument(
        "path", help="the model file (its sidecar, shards, external data come along) or folder"
    )
    p.add_argument(
        "--key", required=True, metavar="KEY.pem", help="the private key (EC P-256/384/521, PEM)"
    )
    p.add_argument(
        "--cert",
        action="append",
        metavar="CERT.pem",
        help="sign with a certificate: the signing certificate, then each intermediate (repeat)",
    )
    p.add_argument("--signature", metavar="FILE.sig", help="where to write the bundle")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_sign)
    text = "check that a model's files are exactly what the given key or certificate signed"
    p = make(sub, "verify", text, EXAMPLES["verify"])
    p.add_argument("path")
    p.add_argument(
        "--signed-by",
        required=True,
        metavar="KEY.pub|CA.pem|POLICY.toml",
        help="the public key, the certificate(s) the signer chains to, or a signing policy",
    )
    p.add_argument(
        "--signature", metavar="FILE.sig", help="the bundle (default FILE.sig or FOLDER/model.sig)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_verify)


def _fail(e: ModelstoreError, args: argparse.Namespace, out: TextIO) -> int:
    code = 1 if isinstance(e, SignatureError) else 2
    if args.json:
        out.write(
            json.dumps(
                {"ok": False, "path": args.path, "error": type(e).__name__, "message": str(e)}
            )
            + "\n"
        )
    else:
        sys.stderr.write(f"modelstore: {'refused' if code == 1 else 'error'}: {e}\n")
    return code


def cmd_sign(args: argparse.Namespace, out: TextIO) -> int:
    from ..api.signing import sign

    try:
        sig = sign(args.path, key=args.key, certificate_chain=args.cert, signature=args.signature)
    except ModelstoreError as e:
        return _fail(e, args, out)
    if args.json:
        out.write(json.dumps({"ok": True, "path": args.path, "signature": str(sig)}) + "\n")
    else:
        out.write(f"signed {args.path}: {sig}\n")
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    from ..api.signing import verify

    try:
        v = verify(args.path, signed_by=signer_arg(args.signed_by), signature=args.signature)
    except ModelstoreError as e:
        return _fail(e, args, out)
    if args.json:
        out.write(json.dumps({"ok": True, **v.to_dict()}) + "\n")
    else:
        out.write(f"verified {args.path}: signed by {v.signer}\n")
        for name in v.files:
            out.write(f"  {name}\n")
    return 0

"""Only load what your team signed: OpenSSF model signing inside the load path.

Makes a key pair (EC P-256), saves a small MLP, signs it, loads it with ``signed_by=``, then
shows what is refused: a tampered weight file, a file signed by someone else, an unsigned
one. Needs ``pip install "modelstore-safe[signing,torch]"``.

    python examples/signed_models.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from torch import nn

import modelstore as ms


class Net(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, hidden), nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A private key (keep it secret) and its public key (share it), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        team_key, team_pub = key_pair(folder, "team")
        other_key, _ = key_pair(folder, "other")

        path = folder / "digits.safetensors"
        ms.save(Net(), path, config={"hidden": 16}, labels=[str(d) for d in range(10)])
        sig = ms.sign(path, key=team_key)
        print(f"signed: {sig.name}")
        v = ms.verify(path, signed_by=team_pub)
        print(f"verified: {', '.join(v.files)} signed by {v.signer[:20]}...")
        net = ms.load(path, model=Net, signed_by=team_pub)
        print(
            f"loaded: {type(net).__name__}, prediction {ms.predict(net, torch.zeros(1, 64), output='label')}"
        )

        data = bytearray(path.read_bytes())
        data[-1] ^= 1  # one bit of one weight
        path.write_bytes(bytes(data))
        try:
            ms.load(path, model=Net, signed_by=team_pub, verify=False)
        except ms.SignatureError as e:
            print(f"refused (tampered): {str(e).split(': ', 1)[1][:70]}...")

        ms.save(Net(), path, config={"hidden": 16})
        ms.sign(path, key=other_key)
        try:
            ms.load(path, model=Net, signed_by=team_pub)
        except ms.SignatureError as e:
            print(f"refused (another signer): {str(e).split(': ', 1)[1][:70]}...")

        sig.unlink()
        try:
            ms.load(path, model=Net, signed_by=team_pub)
        except ms.SignatureError as e:
            print(f"refused (unsigned): {str(e).split(': ', 1)[1][:70]}...")


if __name__ == "__main__":
    main()

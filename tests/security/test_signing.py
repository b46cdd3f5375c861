"""OpenSSF model signing: ms.sign / ms.verify / load(signed_by=), tampering, hostile bundles, interop."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("model_signing")
pytest.importorskip("OpenSSL")
torch = pytest.importorskip("torch")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

import modelstore as ms  # noqa: E402

# -- keys and models ---------------------------------------------------------------------------


class Keys:
    def __init__(self, folder: Path, name: str) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = self.private.public_key()
        self.key = folder / f"{name}.key"
        self.pub = folder / f"{name}.pub"
        self.key.write_bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.pub.write_bytes(
            self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Keys]:
    folder = tmp_path_factory.mktemp("keys")
    return Keys(folder, "team"), Keys(folder, "other")


def _state() -> dict[str, Any]:
    torch.manual_seed(0)
    return {f"layer{i}.weight": torch.randn(16, 16) for i in range(4)}


def pt_model(folder: Path) -> Path:
    """A .pt checkpoint with its sidecar."""
    folder.mkdir(exist_ok=True)
    path = folder / "w.pt"
    ms.save(_state(), path)
    assert (folder / "w.pt.modelstore.json").is_file()
    return path


def sharded_model(folder: Path) -> Path:
    """A folder of safetensors shards and an index."""
    ms.save(_state(), folder, max_shard_size=2048)
    assert len(list(folder.glob("*.safetensors"))) > 1
    return folder


def onnx_model(folder: Path) -> Path:
    """An .onnx graph whose initializer lies in external data beside it."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    folder.mkdir(exist_ok=True)
    (folder / "w.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", "12")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w]
    )
    path = folder / "m.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


def load_pt(path: Path, **kwargs: Any) -> Any:
    """Load a .pt (it unpickles through the allow-list, and says so once per file)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ms.load(path, **kwargs)
    assert [w.category for w in caught] in ([], [ms.PickleWarning]), [
        str(w.message) for w in caught
    ]
    return out


def flip(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- the happy path ----------------------------------------------------------------------------


def test_sign_covers_the_sidecar_and_verify_reports_it(
    tmp_path: Path, keys: tuple[Keys, Keys]
) -> None:
    """A signed .pt's signature covers the file and its sidecar; verify says who and what."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    sig = ms.sign(path, key=team.key)
    assert sig == path.with_name("w.pt.sig") and sig.is_file()
    v = ms.verify(path, signed_by=team.pub)
    assert v.files == ("w.pt", "w.pt.modelstore.json")
    assert v.key_id in v.signer and v.method == "files" and v.hash_type == "sha256"
    assert set(v.digests) == {"w.pt", "w.pt.modelstore.json"}
    assert all(d.startswith("sha256:") for d in v.digests.values())
    assert json.loads(json.dumps(v.to_dict()))["files"] == ["w.pt", "w.pt.modelstore.json"]


def test_load_signed_by_returns_the_model(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """load(signed_by=) with a key object or a PEM path returns what a plain load does."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.private)
    for signer in (team.pub, team.public, team.pub.read_bytes()):
        sd = load_pt(path, signed_by=signer)
        assert torch.equal(sd["layer0.weight"], _state()["layer0.weight"])


def test_sharded_folder_round_trip(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A shard folder is signed whole (model.sig inside it) and loads with signed_by."""
    team, _ = keys
    folder = sharded_model(tmp_path / "shards")
    sig = ms.sign(folder, key=team.key)
    assert sig == folder / "model.sig"
    v = ms.verify(folder, signed_by=team.pub)
    assert (
        "model.safetensors.index.json" in v.files
        and len(v.files) == len(list(folder.iterdir())) - 1
    )
    sd = ms.load(folder, signed_by=team.pub)
    assert torch.equal(sd["layer3.weight"], _state()["layer3.weight"])


def test_onnx_external_data_is_signed_with_the_graph(
    tmp_path: Path, keys: tuple[Keys, Keys]
) -> None:
    """An ONNX graph's external data file is part of its signature and loads from the copy."""
    team, _ = keys
    np = pytest.importorskip("numpy")
    path = onnx_model(tmp_path / "o")
    ms.sign(path, key=team.key)
    assert ms.verify(path, signed_by=team.pub).files == ("m.onnx", "w.bin")
    loaded = ms.load(path, signed_by=team.pub)
    np.testing.assert_allclose(ms.predict(loaded, np.zeros(3, np.float32)), [1, 2, 3])


def test_verify_false_never_skips_the_signature(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """verify=False skips the checksum, not a requested signature check."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    with pytest.raises(ms.SignatureError, match="no signature"):
        ms.load(path, signed_by=team.pub, verify=False)


def test_load_reads_the_verified_copy(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """What the loader reads is a private copy: changing the original after the check does not reach it."""
    team, _ = keys
    from modelstore.pipeline.signature import verified

    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    with verified(path, signed_by=team.pub) as v:
        assert tmp_path not in v.load_path.parents
        before = v.load_path.read_bytes()
        flip(path)  # an attacker rewrites the file after the check
        assert v.load_path.read_bytes() == before
        assert torch.equal(load_pt(v.load_path)["layer1.weight"], _state()["layer1.weight"])


# -- refusals ----------------------------------------------------------------------------------


def test_tampered_shard_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """One byte of one shard changed after signing: SignatureError naming it."""
    team, _ = keys
    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    shard = sorted(folder.glob("*.safetensors"))[1]
    flip(shard)
    with pytest.raises(ms.SignatureError, match=shard.name):
        ms.load(folder, signed_by=team.pub)


def test_tampered_sidecar_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """One byte of the sidecar changed: refused before the model is read."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    side = path.with_name("w.pt.modelstore.json")
    side.write_text(side.read_text().replace('"w.pt"', '"w.pt" ') + " ")
    with pytest.raises(ms.SignatureError, match="w.pt.modelstore.json"):
        ms.load(path, signed_by=team.pub)


def test_tampered_external_data_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """One byte of ONNX external data changed: refused."""
    team, _ = keys
    path = onnx_model(tmp_path / "o")
    ms.sign(path, key=team.key)
    flip(path.with_name("w.bin"), 0)
    with pytest.raises(ms.SignatureError, match="w.bin"):
        ms.load(path, signed_by=team.pub)


def test_another_key_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A model signed by another key is refused, and so is the right model checked against the wrong key."""
    team, other = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=other.key)
    with pytest.raises(ms.SignatureError, match="another key"):
        ms.load(path, signed_by=team.pub)
    with pytest.raises(ms.SignatureError):
        ms.verify(path, signed_by=team.public)


def test_swapped_signature_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """The signature of another model (same key) does not cover this one."""
    team, _ = keys
    a = pt_model(tmp_path / "a")
    b_folder = tmp_path / "b"
    b_folder.mkdir()
    b = b_folder / "w.pt"
    ms.save({"x": torch.zeros(2)}, b)
    ms.sign(a, key=team.key)
    ms.sign(b, key=team.key)
    os.replace(a.with_name("w.pt.sig"), b.with_name("w.pt.sig"))
    with pytest.raises(ms.SignatureError, match="differ from what was signed"):
        ms.load(b, signed_by=team.pub)


def test_renamed_files_are_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """Renaming the model (and its sidecar and signature) or a shard breaks the signature."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    for suffix in ("", ".modelstore.json", ".sig"):
        os.replace(path.with_name("w.pt" + suffix), path.with_name("v.pt" + suffix))
    with pytest.raises(ms.SignatureError, match="not covered"):
        ms.load(path.with_name("v.pt"), signed_by=team.pub)
    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    shard = sorted(folder.glob("*.safetensors"))[0]
    os.replace(shard, shard.with_name("renamed.safetensors"))
    with pytest.raises(ms.SignatureError):
        ms.load(folder, signed_by=team.pub)


def test_file_added_to_a_signed_folder_is_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A file present in a signed folder but not signed is refused."""
    team, _ = keys
    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    (folder / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(ms.SignatureError, match="extra.safetensors"):
        ms.verify(folder, signed_by=team.pub)


def test_symlinked_companions_are_refused(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A sidecar or shard that is a symbolic link is refused, even pointing at identical bytes."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    side = path.with_name("w.pt.modelstore.json")
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(side.read_bytes())
    side.unlink()
    side.symlink_to(outside)
    with pytest.raises(ms.SignatureError):
        ms.load(path, signed_by=team.pub)
    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    shard = sorted(folder.glob("*.safetensors"))[0]
    copy = tmp_path / "shard-copy"
    copy.write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(copy)
    with pytest.raises(ms.SignatureError, match="symbolic link"):
        ms.load(folder, signed_by=team.pub)


def test_missing_signed_file_is_out_of_date(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A file the signature lists that is gone: the signature is out of date."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    path.with_name("w.pt.modelstore.json").unlink()
    with pytest.raises(ms.SignatureError, match="missing"):
        ms.load(path, signed_by=team.pub)


def test_bundle_ignore_list_never_lets_a_file_through(
    tmp_path: Path, keys: tuple[Keys, Keys]
) -> None:
    """A genuine signature whose ignore-list leaves out the model file does not cover it."""
    team, _ = keys
    from model_signing import hashing, signing

    path = pt_model(tmp_path / "m")
    sig = tmp_path / "ignoring.sig"
    (
        signing.Config()
        .use_elliptic_key_signer(private_key=team.key)
        .set_hashing_config(hashing.Config().set_ignored_paths(paths=["w.pt"]))
        .sign(path.parent, sig)
    )
    with pytest.raises(ms.SignatureError, match="w.pt"):
        ms.load(path, signed_by=team.pub, signature=sig)


def _bundle_with(sig: Path, statement: Any) -> None:
    bundle = json.loads(sig.read_text())
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))


@pytest.mark.parametrize(
    "hostile",
    [
        "deep",
        "huge",
        "junk",
        "not_base64",
        "dotdot",
        "absolute",
        "tiny_shards",
        "many",
        "not_object",
        "payload_edit",
        "huge_ranges",
    ],
)
def test_hostile_bundle(tmp_path: Path, keys: tuple[Keys, Keys], hostile: str) -> None:
    """A hostile bundle is a SignatureError or FormatError, never a foreign exception."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    sig = ms.sign(path, key=team.key)
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    if hostile == "deep":
        sig.write_text("[" * 100_000 + "]" * 100_000)
    elif hostile == "huge":
        with open(sig, "wb") as f:
            f.truncate(40 << 20)
    elif hostile == "junk":
        sig.write_bytes(os.urandom(4096))
    elif hostile == "not_base64":
        bundle = json.loads(sig.read_text())
        bundle["dsseEnvelope"]["payload"] = "%%%not base64%%%"
        sig.write_text(json.dumps(bundle))
    elif hostile in ("dotdot", "absolute"):
        statement["predicate"]["resources"][0]["name"] = (
            "../../etc/passwd" if hostile == "dotdot" else "/etc/passwd"
        )
        _bundle_with(sig, statement)
    elif hostile == "tiny_shards":
        statement["predicate"]["serialization"] = {
            "method": "shards",
            "hash_type": "sha256",
            "shard_size": 1,
            "allow_symlinks": False,
        }
        _bundle_with(sig, statement)
    elif hostile == "many":
        statement["predicate"]["resources"] = [
            {"name": f"f{i}", "digest": "00", "algorithm": "sha256"} for i in range(100_001)
        ]
        _bundle_with(sig, statement)
    elif hostile == "not_object":
        sig.write_text(json.dumps([1, 2, 3]))
    elif hostile == "huge_ranges":  # shard entries claiming absurd offsets
        statement["predicate"]["serialization"] = {
            "method": "shards",
            "hash_type": "sha256",
            "shard_size": 10**30,
            "allow_symlinks": False,
        }
        statement["predicate"]["resources"] = [
            {"name": f"w.pt:0:{10**40}", "digest": "00", "algorithm": "sha256"}
        ]
        _bundle_with(sig, statement)
    elif hostile == "payload_edit":  # a well-formed payload the key never signed
        statement["predicate"]["resources"][0]["digest"] = "0" * 64
        _bundle_with(sig, statement)
    with pytest.raises((ms.SignatureError, ms.FormatError)):
        ms.load(path, signed_by=team.pub)


def test_bad_arguments(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A private key as signed_by, or signature= without signed_by, is an ArgumentError."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    with pytest.raises(ms.ArgumentError, match="private"):
        ms.load(path, signed_by=team.key)
    with pytest.raises(ms.ArgumentError, match="signed_by"):
        ms.load(path, signature=path.with_name("w.pt.sig"))
    with pytest.raises(ms.ArgumentError):
        ms.verify(path, signed_by=42)


# -- policy ------------------------------------------------------------------------------------


def test_policy_from_toml(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A TOML policy maps a folder to the key that must have signed everything under it."""
    team, other = keys
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "team.pub").write_bytes(team.pub.read_bytes())
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[[rule]]\npath = "models/"\nsigned_by = "keys/team.pub"\n')
    policy = ms.SigningPolicy.load(policy_file)
    good = pt_model(tmp_path / "models")
    ms.sign(good, key=team.key)
    assert load_pt(good, signed_by=policy)["layer0.weight"].shape == (16, 16)
    ms.sign(good, key=other.key)
    with pytest.raises(ms.SignatureError):
        ms.load(good, signed_by=policy)
    stray = pt_model(tmp_path / "elsewhere")
    ms.sign(stray, key=team.key)
    with pytest.raises(ms.SignatureError, match="no rule"):
        ms.load(stray, signed_by=policy)


def test_policy_from_json_and_python(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """JSON and Python policies; the longest matching rule wins; store rules match model names."""
    team, other = keys
    p = tmp_path / "policy.json"
    p.write_text(
        json.dumps(
            {
                "rules": [
                    {"path": ".", "signed_by": str(other.pub)},
                    {"path": "models", "signed_by": str(team.pub)},
                ]
            }
        )
    )
    policy = ms.SigningPolicy.load(p)
    assert policy.signer_for(tmp_path / "models" / "x.pt") == str(team.pub)
    assert policy.signer_for(tmp_path / "y.pt") == str(other.pub)
    py = ms.SigningPolicy([{"store": "digits-*", "signed_by": team.public}])
    assert py.signer_for(store_name="digits-mlp") is team.public
    with pytest.raises(ms.SignatureError):
        py.signer_for(store_name="other")
    with pytest.raises(ms.ArgumentError):
        ms.SigningPolicy([{"path": "x", "signed_by": "k", "typo": 1}])


# -- certificates ------------------------------------------------------------------------------


def _cert(subject: str, key: Any, issuer_name: str, issuer_key: Any, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def test_certificate_signing(tmp_path: Path) -> None:
    """Signed with a certificate issued by a CA: verifies against that CA, names the signer, refuses another CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Team CA", ca_key, "Team CA", ca_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("ml-release", leaf_key, "Team CA", ca_key, False)
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=leaf_key, certificate_chain=[leaf, ca])
    v = ms.verify(path, signed_by=ca)
    assert "ml-release" in v.signer
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("Other CA", other_key, "Other CA", other_key, True)
    with pytest.raises(ms.SignatureError):
        ms.load(path, signed_by=other_ca)


# -- interop with model_signing ------------------------------------------------------------------


def test_ms_signature_verifies_with_model_signing_api(
    tmp_path: Path, keys: tuple[Keys, Keys]
) -> None:
    """model_signing's own API verifies what ms.sign made (a folder, and a file with --ignore_unsigned_files)."""
    team, _ = keys
    from model_signing import verifying

    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    verifying.Config().use_elliptic_key_verifier(public_key=team.pub).verify(
        folder, folder / "model.sig"
    )
    path = pt_model(tmp_path / "m")
    (tmp_path / "m" / "unrelated.txt").write_text("another model's notes")
    ms.sign(path, key=team.key)
    (
        verifying.Config()
        .use_elliptic_key_verifier(public_key=team.pub)
        .set_ignore_unsigned_files(True)
        .verify(path.parent, path.with_name("w.pt.sig"))
    )


def test_model_signing_api_signature_verifies_here(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A folder or a single file signed with model_signing's API verifies and loads here."""
    team, _ = keys
    from model_signing import hashing, signing

    folder = sharded_model(tmp_path / "s")
    sig = tmp_path / "s.sig"
    signing.Config().use_elliptic_key_signer(private_key=team.key).sign(folder, sig)
    assert ms.load(folder, signed_by=team.pub, signature=sig)["layer2.weight"].shape == (16, 16)
    single = tmp_path / "one" / "w.safetensors"
    single.parent.mkdir()
    from safetensors.torch import save_file

    save_file(_state(), str(single))
    one_sig = tmp_path / "one.sig"
    (
        signing.Config()
        .use_elliptic_key_signer(private_key=team.key)
        .set_hashing_config(hashing.Config().use_shard_serialization(shard_size=1 << 20))
        .sign(single, one_sig)
    )
    v = ms.verify(single, signed_by=team.pub, signature=one_sig)
    assert v.files == ("w.safetensors",) and v.method == "shards"


def _model_signing_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_interop_with_model_signing_cli(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """model_signing's CLI verifies an ms.sign bundle, and ms.verify accepts one the CLI made."""
    team, other = keys
    folder = sharded_model(tmp_path / "s")
    ms.sign(folder, key=team.key)
    proc = _model_signing_cli(
        "verify",
        "key",
        str(folder),
        "--signature",
        str(folder / "model.sig"),
        "--public_key",
        str(team.pub),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _model_signing_cli(
        "verify",
        "key",
        str(folder),
        "--signature",
        str(folder / "model.sig"),
        "--public_key",
        str(other.pub),
    )
    assert proc.returncode != 0
    other_folder = sharded_model(tmp_path / "t")
    sig = other_folder / "model.sig"
    proc = _model_signing_cli(
        "sign", "key", str(other_folder), "--signature", str(sig), "--private_key", str(team.key)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ms.verify(other_folder, signed_by=team.pub).files
    assert ms.load(other_folder, signed_by=team.pub)["layer0.weight"].shape == (16, 16)


def test_remote_model_with_its_signature(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """load("memory://.../w.pt", signed_by=) fetches URI.sig with the model; a missing one is refused."""
    team, _ = keys
    fsspec = pytest.importorskip("fsspec")
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    fs = fsspec.filesystem("memory")
    root = f"/signing-{os.getpid()}-{tmp_path.name}"
    for name in ("w.pt", "w.pt.modelstore.json", "w.pt.sig"):
        fs.put_file(str(path.with_name(name)), f"{root}/{name}")
    uri = f"memory://{root}/w.pt"
    assert load_pt(uri, signed_by=team.pub)["layer0.weight"].shape == (16, 16)
    fs.rm(f"{root}/w.pt.sig")
    with pytest.raises(ms.SignatureError, match="no signature"):
        ms.load(uri, signed_by=team.pub)


def test_import_modelstore_does_not_import_model_signing() -> None:
    """`import modelstore` (and the CLI module) leaves model_signing and cryptography unimported."""
    from modelstore.testing import run_python

    proc = run_python("""
        import sys, modelstore, modelstore.cli
        modelstore.sign, modelstore.SigningPolicy
        print([m for m in ("model_signing", "cryptography", "OpenSSL") if m in sys.modules])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_sharded_by_name_signs_index_and_shards(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """save("NAME.safetensors", max_shard_size=) then sign/load by that name: the index and every shard are covered."""
    team, _ = keys
    folder = tmp_path / "n"
    folder.mkdir()
    (folder / "notes.txt").write_text("not part of the model")
    name = folder / "big.safetensors"
    ms.save(_state(), name, max_shard_size=2048)
    sig = ms.sign(name, key=team.key)
    assert sig == folder / "big.safetensors.sig"
    v = ms.verify(name, signed_by=team.pub)
    assert "big.safetensors.index.json" in v.files and "notes.txt" not in v.files
    assert sum(f.endswith(".safetensors") for f in v.files) > 1
    assert torch.equal(
        ms.load(name, signed_by=team.pub)["layer0.weight"], _state()["layer0.weight"]
    )
    flip(sorted(folder.glob("big-*.safetensors"))[-1])
    with pytest.raises(ms.SignatureError):
        ms.load(name, signed_by=team.pub)


def test_warnings_and_errors_name_the_callers_path(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A signed load's warnings and errors name the path the caller gave, never the private copy."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    ms.sign(path, key=team.key)
    with pytest.warns(ms.PickleWarning) as caught:
        ms.load(path, signed_by=team.pub)
    assert all(str(path) in str(w.message) and "modelstore-" not in str(w.message) for w in caught)
    with pytest.raises(ms.ModelstoreError) as err:
        ms.load(path, signed_by=team.pub, model=42)
    assert "modelstore-" not in str(err.value)

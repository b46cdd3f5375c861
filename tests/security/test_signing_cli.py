"""`modelstore sign` / `modelstore verify` (exit codes 0/1/2, --json) and `serve --signed-by`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("model_signing")
pytest.importorskip("OpenSSL")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from modelstore.cli import main  # noqa: E402
from tests.security.test_signing import Keys, flip, pt_model  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Keys]:
    folder = tmp_path_factory.mktemp("cli-keys")
    return Keys(folder, "team"), Keys(folder, "other")


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_sign_then_verify(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """sign exits 0 and writes FILE.sig; verify exits 0 and lists the files, in text and JSON."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    code, text = cli("sign", str(path), "--key", str(team.key))
    assert code == 0 and path.with_name("w.pt.sig").is_file() and "w.pt.sig" in text
    code, text = cli("verify", str(path), "--signed-by", str(team.pub))
    assert code == 0 and "w.pt.modelstore.json" in text
    code, text = cli("verify", str(path), "--signed-by", str(team.pub), "--json")
    data = json.loads(text)
    assert code == 0 and data["ok"] and data["files"] == ["w.pt", "w.pt.modelstore.json"]


def test_verify_refusals_exit_1(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """Another signer, a changed file or no signature: exit 1, and --json says why."""
    team, other = keys
    path = pt_model(tmp_path / "m")
    assert cli("verify", str(path), "--signed-by", str(team.pub))[0] == 1
    cli("sign", str(path), "--key", str(team.key))
    code, text = cli("verify", str(path), "--signed-by", str(other.pub), "--json")
    assert code == 1 and json.loads(text)["error"] == "SignatureError"
    flip(path)
    assert cli("verify", str(path), "--signed-by", str(team.pub))[0] == 1


def test_usage_errors_exit_2(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A private key given as --signed-by, or a missing model, is exit 2."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    cli("sign", str(path), "--key", str(team.key))
    assert cli("verify", str(path), "--signed-by", str(team.key))[0] == 2
    assert cli("sign", str(tmp_path / "nothing.pt"), "--key", str(team.key))[0] == 2


def test_verify_with_policy_file(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """--signed-by takes a TOML policy."""
    team, _ = keys
    path = pt_model(tmp_path / "models")
    cli("sign", str(path), "--key", str(team.key))
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[rule]]\npath = "models"\nsigned_by = "{team.pub}"\n')
    assert cli("verify", str(path), "--signed-by", str(policy))[0] == 0


@pytest.mark.slow
def test_real_command_and_serve_refuses_unsigned(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """The installed command verifies; `serve --signed-by` on an unsigned model exits without serving."""
    pytest.importorskip("starlette")
    team, _ = keys
    path = pt_model(tmp_path / "m")
    run = [sys.executable, "-m", "modelstore"]
    proc = subprocess.run(
        [*run, "sign", str(path), "--key", str(team.key), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [*run, "verify", str(path), "--signed-by", str(team.pub)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    path.with_name("w.pt.sig").unlink()
    proc = subprocess.run(
        [*run, "serve", str(path), "--signed-by", str(team.pub), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "refused" in proc.stderr and "no signature" in proc.stderr


def test_create_app_refuses_unsigned(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """serve.create_app(signed_by=) raises SignatureError for an unsigned model: nothing serves."""
    pytest.importorskip("starlette")
    from modelstore.serve import create_app

    team, _ = keys
    path = pt_model(tmp_path / "m")
    with pytest.raises(ms.SignatureError):
        create_app(str(path), signed_by=team.pub)
    ms.sign(path, key=team.key)
    # signed: past the signature check, on to the next refusal (weights without a class)
    with pytest.raises(ms.ArgumentError, match="weights only"):
        create_app(str(path), signed_by=team.pub)


def test_store_push_sign_with(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """`modelstore store push --sign-with KEY` stores the signature; a signed load of that version passes."""
    team, _ = keys
    path = pt_model(tmp_path / "m")
    root = tmp_path / "store"
    code, _ = cli(
        "store", "--root", str(root), "push", str(path), "digits", "--sign-with", str(team.key)
    )
    assert code == 0
    store = ms.Store(root, signed_by=team.pub)
    assert "w.pt.sig" in store.info("digits").files
    with pytest.warns(ms.PickleWarning):
        assert store.load("digits")["layer0.weight"].shape == (16, 16)

"""Store.push(sign_with=), Store(signed_by=) and Store.load(ref, signed_by=)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("model_signing")
pytest.importorskip("OpenSSL")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests.security.test_signing import Keys, flip, pt_model, sharded_model  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Keys]:
    folder = tmp_path_factory.mktemp("store-keys")
    return Keys(folder, "team"), Keys(folder, "other")


def test_push_signed_and_load_signed(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A version pushed with sign_with keeps its signature; loads with signed_by pass, others fail."""
    team, other = keys
    store = ms.Store(tmp_path / "store")
    v = store.push(pt_model(tmp_path / "m"), "digits", sign_with=team.key)
    assert "w.pt.sig" in store.info(f"digits@{v}").files
    assert load_pt_store(store, f"digits@{v}", signed_by=team.pub)["layer0.weight"].shape == (
        16,
        16,
    )
    with pytest.raises(ms.SignatureError, match="another key"):
        store.load(f"digits@{v}", signed_by=other.pub)
    assert not (tmp_path / "m" / "w.pt.sig").exists()  # the source folder is left as it was


def load_pt_store(store: ms.Store, ref: str, **kwargs: object) -> object:
    with pytest.warns(ms.PickleWarning):
        return store.load(ref, **kwargs)


def test_store_wide_signed_by_refuses_unsigned_versions(
    tmp_path: Path, keys: tuple[Keys, Keys]
) -> None:
    """Store(signed_by=) refuses an unsigned version and a tampered one."""
    team, _ = keys
    plain = ms.Store(tmp_path / "store")
    unsigned = plain.push(pt_model(tmp_path / "a"), "digits")
    signed = plain.push(pt_model(tmp_path / "b"), "digits", sign_with=team.key)
    strict = ms.Store(tmp_path / "store", signed_by=team.pub)
    with pytest.raises(ms.SignatureError, match="no signature"):
        strict.load(f"digits@{unsigned}")
    with pytest.raises(ms.SignatureError, match="no signature"):
        strict.load(
            f"digits@{unsigned}", signed_by=None
        )  # None does not lift the store's requirement
    assert load_pt_store(strict, f"digits@{signed}")["layer1.weight"].shape == (16, 16)
    flip(Path(strict.path(f"digits@{signed}")))
    with pytest.raises(ms.SignatureError):
        strict.load(f"digits@{signed}")


def test_store_policy_by_model_name(tmp_path: Path, keys: tuple[Keys, Keys]) -> None:
    """A policy's store rules pick the key by model name; a name no rule covers is refused."""
    team, _ = keys
    policy = ms.SigningPolicy([{"store": "digits-*", "signed_by": team.public}])
    store = ms.Store(tmp_path / "store", signed_by=policy)
    folder = sharded_model(tmp_path / "shards")
    v = store.push(folder, "digits-mlp", sign_with=team.private)
    assert store.load(f"digits-mlp@{v}")["layer2.weight"].shape == (16, 16)
    w = store.push(folder, "other", sign_with=team.private)
    with pytest.raises(ms.SignatureError, match="no rule"):
        store.load(f"other@{w}")

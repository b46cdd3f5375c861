""".skops files: skops' audit under modelstore's trust policy (names from the allow-list or the
caller, never from the file), ms.save to .skops, convert joblib <-> skops, hostile files."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sio = pytest.importorskip("skops.io")

import modelstore as ms  # noqa: E402
from modelstore.testing import run_python  # noqa: E402
from tests.hostile import py_touch  # noqa: E402


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def pipe() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _iris()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)


def test_file_written_by_skops(tmp_path: Path, pipe: Any) -> None:
    """A pipeline skops.io.dump wrote loads with no trust; outputs are identical."""
    x, _ = _iris()
    sio.dump(pipe, tmp_path / "m.skops")
    loaded = ms.load(tmp_path / "m.skops")
    np.testing.assert_array_equal(ms.predict(loaded, x, output="proba"), pipe.predict_proba(x))
    assert ms.scan(tmp_path / "m.skops").verdict == "safe"
    assert "sklearn.pipeline.Pipeline" in ms.inspect(tmp_path / "m.skops").metadata["types"]


def test_save_and_convert_both_ways(tmp_path: Path, pipe: Any) -> None:
    """ms.save writes a file skops reads; convert goes joblib -> skops -> joblib."""
    x, _ = _iris()
    info = ms.save(pipe, tmp_path / "m.skops", labels=["a", "b", "c"])
    assert info.format == "skops"
    assert isinstance(
        sio.load(tmp_path / "m.skops"), type(pipe)
    )  # skops itself reads it, no trust needed
    assert ms.predict(ms.load(tmp_path / "m.skops"), x[:1], output="label") == ["a"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        ms.save(pipe, tmp_path / "m.joblib")
        ms.convert(tmp_path / "m.joblib", tmp_path / "c.skops")
        ms.convert(tmp_path / "c.skops", tmp_path / "c.joblib")
        back = ms.load(tmp_path / "c.joblib")
    np.testing.assert_array_equal(ms.predict(ms.load(tmp_path / "c.skops"), x), pipe.predict(x))
    np.testing.assert_array_equal(ms.predict(back, x), pipe.predict(x))


def test_types_validated_only_by_our_unpickler_need_trust(tmp_path: Path) -> None:
    """A forest's Tree is allowed in pickles (its arrays are validated there) but skops builds
    it unvalidated: refused by default, loaded when the caller names it."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y)
    sio.dump(forest, tmp_path / "rf.skops")
    with pytest.raises(ms.UnsafeModelError, match=r"trust=\['sklearn.tree._tree.Tree'\]"):
        ms.load(tmp_path / "rf.skops")
    loaded = ms.load(tmp_path / "rf.skops", trust=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(loaded.predict(x), forest.predict(x))


# -- hostile files -------------------------------------------------------------------------


def _exec_transformer(path: Path) -> None:
    """Written by skops itself: a FunctionTransformer whose function is builtins.exec."""
    import builtins

    from sklearn.preprocessing import FunctionTransformer

    sio.dump(FunctionTransformer(func=builtins.exec, validate=False), path)


def _rewrite(src: Path, dst: Path, change: Any) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "schema.json":
                data = change(data)
            zout.writestr(info, data)


@pytest.mark.slow
def test_function_payload_naive_pattern_fires_modelstore_refuses(tmp_path: Path) -> None:
    """The naive pattern (trusted=get_untrusted_types(file)) hands back exec; modelstore refuses
    from every entry point, and no trust list from the file is ever used."""
    path, marker = tmp_path / "evil.skops", tmp_path / "fired"
    _exec_transformer(path)
    proc = run_python(f"""
        import skops.io as sio
        m = sio.load({str(path)!r}, trusted=sio.get_untrusted_types(file={str(path)!r}))
        m.fit(None).transform({py_touch(marker)!r})
    """)
    assert marker.exists(), proc.stderr[-500:]
    marker.unlink()
    for trust in (False, ["sklearn.preprocessing._function_transformer.FunctionTransformer"]):
        with pytest.raises(ms.UnsafeModelError, match="builtins.exec"):
            ms.load(path, trust=trust)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "builtins.exec" in [f.subject for f in report.findings]
    assert "builtins.exec" in ms.inspect(path).globals
    assert not marker.exists()


@pytest.mark.parametrize(
    "trick",
    [
        "nested-object",
        "function-node",
        "deep-json",
        "extra-member",
        "duplicate-schema",
        "not-a-zip",
    ],
)
def test_crafted_skops_files(tmp_path: Path, pipe: Any, trick: str) -> None:
    """Names hidden anywhere in the schema, deep JSON, extra or duplicate members: refused."""
    good = tmp_path / "good.skops"
    sio.dump(pipe, good)
    path = tmp_path / "m.skops"
    if trick == "nested-object":

        def change(data: bytes) -> bytes:
            schema = json.loads(data)
            schema["content"]["content"]["steps"]["content"][0]["content"].append(
                {
                    "__class__": "system",
                    "__module__": "os",
                    "__loader__": "ObjectNode",
                    "content": {},
                }
            )
            return json.dumps(schema).encode()

        _rewrite(good, path, change)
    elif trick == "function-node":
        _rewrite(
            good,
            path,
            lambda d: (
                d.replace(b'"builtins"', b'"subprocess"', 1) if b'"builtins"' in d else d + b""
            ),
        )
        if b'"subprocess"' not in zipfile.ZipFile(path).read("schema.json"):
            pytest.skip("no builtins node to rename in this schema")
    elif trick == "deep-json":
        _rewrite(good, path, lambda d: b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    elif trick == "extra-member":
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info, zin.read(info))
            zout.writestr("payload.pkl", b"\x80\x04N.")
    elif trick == "duplicate-schema":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
                for info in zin.infolist():
                    zout.writestr(info, zin.read(info))
                zout.writestr("schema.json", b'{"__class__": "system", "__module__": "os"}')
    else:
        path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ms.ModelstoreError) as info:
        ms.load(path)
    assert isinstance(info.value, (ms.UnsafeModelError, ms.FormatError, ms.IntegrityError))
    assert ms.scan(path).verdict in ("unsafe", "unknown")

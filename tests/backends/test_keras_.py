"""Keras backend: the contract suite plus safe mode, containers, weights and training resume.

TensorFlow costs ~6 s to import, so the models here are tiny and built by helpers.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import modelstore as ms  # noqa: E402
from modelstore.testing import BackendContract, run_python  # noqa: E402

X = np.random.default_rng(0).random((64, 64), dtype=np.float32)
Y = np.random.default_rng(1).integers(0, 10, 64)


def mlp(seed: int = 0) -> Any:
    """The tutorials' Sequential Dense digits model (64-32-10, dropout, softmax)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def lambda_model(marker: Path) -> Any:
    """A Lambda whose bytecode creates ``marker`` when the model is rebuilt (harmless)."""
    fn = eval(f"lambda v: (open({str(marker)!r}, 'w').close(), v)[1]")  # noqa: S307  (path is a constant)
    return keras.Sequential([keras.Input((3,)), keras.layers.Lambda(fn)])


def edit_config(path: Path, edit: Any) -> None:
    """Rewrite config.json inside a .keras archive."""
    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    config = json.loads(entries["config.json"])
    edit(config)
    entries["config.json"] = json.dumps(config).encode()
    entries.pop("modelstore.json", None)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


class TestKerasContract(BackendContract):
    backend_name = "keras"
    suffix = ".keras"
    backend_module = "modelstore.formats.keras.backend"
    framework_modules = ("keras", "tensorflow")

    def make_model(self) -> Any:
        return mlp()

    def make_input(self) -> Any:
        return X[:8]

    def native_save(self, model: Any, path: Path) -> None:
        model.save(path)

    def native_load(self, path: Path) -> Any:
        return keras.saving.load_model(path)

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        return loaded.predict(x, verbose=0)

    def payload_offset(self, path: Path) -> int:
        """The middle of the weights member (a .keras file ends with its zip directory, where
        a flipped byte is a refused inconsistency, not a checksum mismatch)."""
        import zipfile

        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("model.weights.h5")
        return (
            info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
        )

    def write_hostile(self, path: Path, marker: Path) -> bool:
        lambda_model(marker).save(path)
        marker.unlink(missing_ok=True)  # building the model here ran the lambda once
        return True


@pytest.mark.slow
def test_training_resumes_after_reload(tmp_path: Path) -> None:
    """compile, fit, save, load, fit again: optimizer iterations continue, loss keeps falling."""
    model = mlp()
    first = model.fit(X, Y, epochs=3, batch_size=16, verbose=0).history["loss"]
    steps = int(model.optimizer.iterations.numpy())
    path = tmp_path / "m.keras"
    ms.save(model, path)
    loaded = ms.load(path)
    assert int(loaded.optimizer.iterations.numpy()) == steps
    again = loaded.fit(X, Y, epochs=3, batch_size=16, verbose=0).history["loss"]
    assert int(loaded.optimizer.iterations.numpy()) == steps + 3 * 4
    assert again[-1] < first[-1]


@pytest.mark.slow
def test_h5_and_weights_only(tmp_path: Path) -> None:
    """Legacy .h5 full models and .weights.h5 into a built model; mismatches are clear."""
    model = mlp()
    ms.save(model, tmp_path / "full.h5", labels=[str(i) for i in range(10)])
    ms.save(model, tmp_path / "w.weights.h5")
    full = ms.load(tmp_path / "full.h5")
    np.testing.assert_allclose(ms.predict(full, X), ms.predict(model, X), rtol=1e-6)
    assert ms.inspect(tmp_path / "full.h5").labels == [str(i) for i in range(10)]
    filled = ms.load(tmp_path / "w.weights.h5", model=mlp(seed=5))
    np.testing.assert_allclose(ms.predict(filled, X), ms.predict(model, X), rtol=1e-6)
    with pytest.raises(ms.ArgumentError, match="weights only"):
        ms.load(tmp_path / "w.weights.h5")
    wrong = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16)])
    with pytest.raises(ms.ArchitectureMismatchError, match="do not fit"):
        ms.load(tmp_path / "w.weights.h5", model=wrong)


def test_keras2_style_weights_h5(tmp_path: Path) -> None:
    """An .h5 with weights and no model_config loads into model=, and says so otherwise."""
    model = mlp()
    path = tmp_path / "old.h5"
    ms.save(model, tmp_path / "full.h5")
    with h5py.File(tmp_path / "full.h5") as src, h5py.File(path, "w") as dst:
        for key in ("model_weights",):
            src.copy(key, dst)
        for k, v in src["model_weights"].attrs.items():
            dst.attrs[k] = v
    with pytest.raises(ms.ArgumentError, match="weights only"):
        ms.load(path)


def test_lambda_refused_until_trusted(tmp_path: Path) -> None:
    """A Lambda with bytecode is refused (no marker); trust=True runs it (the file is live)."""
    marker = tmp_path / "marker"
    path = tmp_path / "lam.keras"
    ms.save(lambda_model(marker), path)
    marker.unlink(missing_ok=True)  # building it to save ran it here, on our side
    with pytest.raises(
        ms.UnsafeModelError, match=r"Lambda.*bytecode.*trust=\['keras.layers.Lambda'\]"
    ):
        ms.load(path)
    assert ms.scan(path).verdict == "unsafe" and ms.inspect(path).executes_code
    assert not marker.exists()
    ms.load(path, trust=["keras.layers.Lambda"])
    assert marker.exists()


def test_config_naming_foreign_function(tmp_path: Path) -> None:
    """A config that names a function outside Keras (here builtins.print) is refused."""
    path = tmp_path / "m.keras"
    mlp().save(path)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["config"]["layers"][1]["config"]["activation"] = {
            "module": "builtins",
            "class_name": "function",
            "config": "print",
            "registered_name": "function",
        }

    edit_config(path, edit)
    with pytest.raises(ms.UnsafeModelError, match="builtins.print"):
        ms.load(path)


@pytest.mark.parametrize("trick", ["zip_slip", "absolute", "duplicate", "bomb"])
def test_hostile_archives(tmp_path: Path, trick: str) -> None:
    """Entries escaping the archive, duplicates and zip bombs are refused before Keras runs,
    and scan calls the crafted archive unsafe."""
    path = tmp_path / "m.keras"
    mlp().save(path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        if trick == "zip_slip":
            zf.writestr("../evil.py", "print('x')")
        elif trick == "absolute":
            zf.writestr("/etc/evil", "x")
        elif trick == "duplicate":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr("config.json", "{}")
        else:
            zf.writestr("assets/zeros.bin", b"\0" * (64 << 20))
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)
    assert ms.scan(path).verdict == "unsafe"


@pytest.mark.slow
def test_hdf5_external_link_refused(tmp_path: Path) -> None:
    """An HDF5 external link (reading another file) is refused in .h5 and .weights.h5."""
    for name in ("m.h5", "m.weights.h5"):
        path = tmp_path / name
        ms.save(mlp(), path)
        with h5py.File(path, "a") as f:
            f["leak"] = h5py.ExternalLink("/etc/passwd", "/x")
        with pytest.raises(ms.UnsafeModelError, match="external link"):
            ms.load(path, model=mlp() if "weights" in name else None, verify=False)


@pytest.mark.slow
def test_inspect_without_tensorflow(tmp_path: Path) -> None:
    """inspect of .keras / .h5 / .weights.h5 reads zip, JSON and h5py only."""
    model = mlp()
    for name in ("m.keras", "m.h5", "m.weights.h5"):
        ms.save(model, tmp_path / name)
    proc = run_python(f"""
        import sys, json, modelstore as ms
        out = {{n: ms.inspect({str(tmp_path)!r} + '/' + n).to_dict() for n in ('m.keras', 'm.h5', 'm.weights.h5')}}
        print(json.dumps(out))
        print('tensorflow' in sys.modules, 'keras' in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "False False"
    out = json.loads(lines[-2])
    for name, info in out.items():
        assert info["num_params"] == 64 * 32 + 32 + 32 * 10 + 10, name
        assert info["framework"] == "keras"
    layers = out["m.keras"]["metadata"]["layers"]
    assert [(row["class"], row["params"]) for row in layers] == [
        ("InputLayer", 0),
        ("Dense", 2080),
        ("Dropout", 0),
        ("Dense", 330),
    ]
    assert layers[1]["output_shape"] == [None, 32]
    assert out["m.keras"]["metadata"]["keras_version"] == keras.__version__


def test_predict_modes() -> None:
    """numpy in, numpy out; batch_size; proba sums to one; labels."""
    model = mlp()
    raw = ms.predict(model, X.astype(np.float64), batch_size=7)
    assert raw.shape == (64, 10) and raw.dtype == np.float32
    np.testing.assert_allclose(ms.predict(model, X, output="proba").sum(axis=1), 1, rtol=1e-5)
    assert ms.predict(model, X[:2], output="label") == [int(i) for i in raw[:2].argmax(axis=1)]
    with pytest.raises(ms.ArgumentError):
        ms.predict(model, np.zeros((2, 5), np.float32))


def test_predict_batches_agree_with_keras_predict() -> None:
    """One predict_on_batch when the input fits a batch, several otherwise (rows and several
    inputs alike): the same numbers as Keras' own model.predict."""
    from modelstore.formats.keras import predict as kp

    model = mlp()
    x = np.random.default_rng(2).random((kp.ONE_BATCH + 5, 64), dtype=np.float32)
    ref = model.predict(x, verbose=0)
    for batch_size in (None, 1, 100, kp.ONE_BATCH + 5, 10_000):
        np.testing.assert_allclose(
            ms.predict(model, x, batch_size=batch_size), ref, rtol=1e-5, atol=1e-6
        )
    a, b = keras.Input((4,)), keras.Input((2,))
    two = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))
    xa, xb = X[:10, :4], X[:10, 4:6]
    ref2 = two.predict([xa, xb], verbose=0)
    np.testing.assert_allclose(ms.predict(two, (xa, xb), batch_size=3), ref2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ms.predict(two, (xa, xb)), ref2, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_other_frameworks_never_import_tensorflow(tmp_path: Path) -> None:
    """Saving and loading torch and scikit-learn models leaves tensorflow unimported."""
    proc = run_python(f"""
        import sys, warnings
        import torch, modelstore as ms
        from sklearn.linear_model import LogisticRegression
        warnings.simplefilter("ignore")
        ms.save(torch.nn.Linear(2, 2), {str(tmp_path / "a.safetensors")!r})
        ms.load({str(tmp_path / "a.safetensors")!r}, model=torch.nn.Linear(2, 2))
        ms.save(torch.nn.Linear(2, 2), {str(tmp_path / "a.pt")!r}); ms.load({str(tmp_path / "a.pt")!r})
        ms.save(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), {str(tmp_path / "a.joblib")!r})
        ms.load({str(tmp_path / "a.joblib")!r}); ms.scan({str(tmp_path / "a.joblib")!r})
        print([m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- HDF5 structures that read elsewhere ------------------------------------------------------

CANARY = b"CANARY-7f3a9-CANARY-7f3a"  # 24 bytes: a (3, 2) float32 kernel


def _weights_variant(tmp_path: Path, kind: str, name: str = "w.weights.h5") -> tuple[Path, str]:
    """A .weights.h5 of Dense(3 -> 2) whose kernel dataset is replaced by ``kind``; returns the
    file and the dataset name Keras reads the kernel from."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "canary.bin").write_bytes(CANARY)
    with h5py.File(outside / "other.h5", "w") as g:
        g["secret"] = np.frombuffer(CANARY, "<f4").reshape(3, 2)
    path = tmp_path / name
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(path)
    key = "layers/dense/vars/0"
    with h5py.File(path, "a") as f:
        del f[key]
        if kind == "external storage":
            f.create_dataset(
                key, shape=(3, 2), dtype="<f4", external=[(str(outside / "canary.bin"), 0, 24)]
            )
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=(3, 2), dtype="<f4")
            layout[:] = h5py.VirtualSource(str(outside / "other.h5"), "secret", shape=(3, 2))
            f.create_virtual_dataset(key, layout)
        elif kind == "soft link":
            f["elsewhere/k"] = np.frombuffer(CANARY, "<f4").reshape(3, 2)
            f[key] = h5py.SoftLink("/elsewhere/k")
        elif kind == "external link":
            f[key] = h5py.ExternalLink(str(outside / "other.h5"), "/secret")
        else:  # a filter only a plugin (a shared library HDF5 would load) can decode
            from h5py import h5d, h5p, h5s, h5t, h5z

            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk((3, 2))
            dcpl.set_filter(32004, h5z.FLAG_OPTIONAL, ())
            h5d.create(
                f["layers/dense/vars"].id,
                b"0",
                h5t.IEEE_F32LE,
                h5s.create_simple((3, 2)),
                dcpl=dcpl,
            )
    return path, key


@pytest.mark.parametrize(
    "kind", ["external storage", "virtual", "soft link", "external link", "filter plugin"]
)
def test_hdf5_structures_that_read_elsewhere(tmp_path: Path, kind: str) -> None:
    """Datasets stored in other files, virtual datasets, soft and external links and plugin
    filters: h5py (what Keras reads with) follows them; modelstore refuses the file."""
    path, key = _weights_variant(tmp_path, kind)
    if kind != "filter plugin":
        with h5py.File(path) as f:  # the naive read: the bytes come from elsewhere
            assert f[key][()].tobytes() == CANARY
    report = ms.scan(path)
    assert report.verdict != "safe" and kind.split()[0] in str(report.findings)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path, model=mlp())
    assert CANARY.decode() not in str(e.value)
    with pytest.raises(ms.FormatError):
        ms.inspect(path)


def test_hdf5_inside_a_keras_archive_is_checked(tmp_path: Path) -> None:
    """A .keras whose model.weights.h5 holds an external link is refused like a bare .h5."""
    weights, _ = _weights_variant(tmp_path, "external link")
    path = tmp_path / "m.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    entries["model.weights.h5"] = weights.read_bytes()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    assert ms.scan(path).verdict != "safe"
    with pytest.raises(ms.UnsafeModelError, match="external link"):
        ms.load(path)


# -- .keras archives two zip readers read differently --------------------------------------------


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("k") / "m.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    return path.read_bytes()


def _prepended(raw: bytes) -> bytes:
    import pickle

    return pickle.dumps({"polyglot": True}, protocol=2) + raw  # zipfile still opens it


def _appended(raw: bytes) -> bytes:
    return raw + b"trailing bytes after the end record"


def _bad_crc(raw: bytes) -> bytes:
    at = raw.index(b'"module"')  # a byte inside config.json (stored uncompressed by Keras)
    return raw[:at] + b"'" + raw[at + 1 :]


@pytest.mark.parametrize(
    "trick", [_prepended, _appended, _bad_crc], ids=["prepended", "appended", "bad_crc"]
)
def test_keras_archive_polyglots_and_damage(tmp_path: Path, keras_bytes: bytes, trick: Any) -> None:
    """Data before or after the archive, and a member failing its CRC, are refused before Keras runs."""
    path = tmp_path / "m.keras"
    path.write_bytes(trick(keras_bytes))
    # bytes after the archive are a crafted polyglot; bytes before it leave no .keras archive to
    # recognise, and a failing CRC is damage: never "safe"
    assert ms.scan(path).verdict == ("unsafe" if trick is _appended else "unknown")
    with pytest.raises((ms.UnsafeModelError, ms.IntegrityError, ms.FormatError)):
        ms.load(path)
    with pytest.raises(ms.FormatError):
        ms.inspect(path)


def test_keras_archive_with_unexpected_members(tmp_path: Path, keras_bytes: bytes) -> None:
    """Members Keras does not write (an extra pickle, npz weights) are refused."""
    for extra in ("evil.pkl", "model.weights.npz"):
        path = tmp_path / f"{extra}.keras"
        path.write_bytes(keras_bytes)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(extra, b"\x80\x02N.")
        with pytest.raises(ms.UnsafeModelError, match="unexpected member"):
            ms.load(path)


def test_checksum_covers_the_zip_directory(tmp_path: Path) -> None:
    """The .keras checksum covers what Keras reads the archive by: a changed byte in a
    member's central-directory record (here its timestamp, which a zip reader ignores) or in
    the archive comment is a checksum mismatch, not a silent load."""
    import zipfile

    path = tmp_path / "m.keras"
    ms.save(mlp(), path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        start = zf.start_dir
    # the first central-directory record (config or metadata): its modification time, byte 12
    assert raw[start : start + 4] == b"PK\x01\x02"
    raw[start + 12] ^= 0x01
    altered = tmp_path / "altered.keras"
    altered.write_bytes(bytes(raw))
    with pytest.raises(ms.IntegrityError, match="checksum"):
        ms.load(altered)
    assert ms.load(altered, verify=False) is not None  # verify=False: the caller's choice


@pytest.mark.slow
def test_a_file_edited_after_a_clean_check_is_checked_again(tmp_path: Path) -> None:
    """The HDF5 structure check is remembered per version of the file actually opened
    (device, inode, size, mtime, ctime): a .h5 that loaded cleanly, then gained an external
    link in place (same path, same inode), is refused on the next load and scan."""
    path = tmp_path / "m.h5"
    ms.save(mlp(), path)
    ms.load(path, verify=False)
    inode = path.stat().st_ino
    with h5py.File(path, "a") as f:
        f["leak"] = h5py.ExternalLink("/etc/passwd", "/x")
    assert path.stat().st_ino == inode
    with pytest.raises(ms.UnsafeModelError, match="external link"):
        ms.load(path, verify=False)
    assert ms.scan(path).verdict != "safe"

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
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10, activation="softmax")])
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
    backend_module = "modelstore.backends.keras_"
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

    def write_hostile(self, path: Path, marker: Path) -> bool:
        lambda_model(marker).save(path)
        marker.unlink(missing_ok=True)  # building the model here ran the lambda once
        return True


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
    with pytest.raises(ms.UnsafeModelError, match=r"Lambda.*bytecode.*trust=\['keras.layers.Lambda'\]"):
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
            "module": "builtins", "class_name": "function", "config": "print", "registered_name": "function"}

    edit_config(path, edit)
    with pytest.raises(ms.UnsafeModelError, match="builtins.print"):
        ms.load(path)


@pytest.mark.parametrize("trick", ["zip_slip", "absolute", "duplicate", "bomb"])
def test_hostile_archives(tmp_path: Path, trick: str) -> None:
    """Entries escaping the archive, duplicates and zip bombs are refused before Keras runs."""
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
    assert ms.scan(path).verdict == "unknown"


def test_hdf5_external_link_refused(tmp_path: Path) -> None:
    """An HDF5 external link (reading another file) is refused in .h5 and .weights.h5."""
    for name in ("m.h5", "m.weights.h5"):
        path = tmp_path / name
        ms.save(mlp(), path)
        with h5py.File(path, "a") as f:
            f["leak"] = h5py.ExternalLink("/etc/passwd", "/x")
        with pytest.raises(ms.UnsafeModelError, match="external link"):
            ms.load(path, model=mlp() if "weights" in name else None, verify=False)


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
        ("InputLayer", 0), ("Dense", 2080), ("Dropout", 0), ("Dense", 330)]
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


def test_other_frameworks_never_import_tensorflow(tmp_path: Path) -> None:
    """Saving and loading torch and scikit-learn models leaves tensorflow unimported."""
    proc = run_python(f"""
        import sys, warnings
        import torch, modelstore as ms
        from sklearn.linear_model import LogisticRegression
        warnings.simplefilter("ignore")
        ms.save(torch.nn.Linear(2, 2), {str(tmp_path / 'a.safetensors')!r})
        ms.load({str(tmp_path / 'a.safetensors')!r}, model=torch.nn.Linear(2, 2))
        ms.save(torch.nn.Linear(2, 2), {str(tmp_path / 'a.pt')!r}); ms.load({str(tmp_path / 'a.pt')!r})
        ms.save(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), {str(tmp_path / 'a.joblib')!r})
        ms.load({str(tmp_path / 'a.joblib')!r}); ms.scan({str(tmp_path / 'a.joblib')!r})
        print([m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules])
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"

"""The package surface: import cost, __all__, the error tree."""

from __future__ import annotations

import json

import pytest

import modelstore as ms
from modelstore import errors
from modelstore.testing import run_python

HEAVY = [
    "torch",
    "tensorflow",
    "keras",
    "sklearn",
    "numpy",
    "onnx",
    "onnxruntime",
    "joblib",
    "safetensors",
    "scipy",
    "pandas",
    "h5py",
    "xxhash",
    "fsspec",
    "s3fs",
    "botocore",
    "pyspark",
    "pyarrow",
    "dask",
    "distributed",
]


def test_import_loads_no_framework() -> None:
    """`import modelstore` in a fresh interpreter imports no framework, numpy or xxhash."""
    proc = run_python(f"""
        import sys, json
        import modelstore, modelstore.errors, modelstore.cli
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_import_defers_standard_modules_used_on_one_path() -> None:
    """`import modelstore` does not load OpenSSL (hashlib, ~7 ms) or socket, shutil (bz2,
    lzma) and random: each is imported by the one function that uses it
    (benchmarks/import_time.py measures the import)."""
    deferred = ["hashlib", "_hashlib", "socket", "shutil", "bz2", "lzma", "random"]
    proc = run_python(f"""
        import sys, json
        import modelstore
        print(json.dumps([m for m in {deferred!r} if m in sys.modules]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_engine_modules_import_no_engine() -> None:
    """`import modelstore.spark, modelstore.dask` imports neither engine (nor numpy): only a
    call to predict_udf / predict_partitions does."""
    proc = run_python(f"""
        import sys, json
        import modelstore.spark, modelstore.dask
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_recognising_objects_imports_no_framework() -> None:
    """Asking which backend saves a plain object does not import torch to find out."""
    proc = run_python("""
        import sys, modelstore as ms
        try:
            ms.save(object(), "x.safetensors")
        except ms.UnsupportedModelError:
            pass
        print('torch' in sys.modules, 'numpy' in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_all_is_exactly_the_public_surface() -> None:
    """__all__ lists every public name and nothing else."""
    import types

    # submodules (errors, cli, serve, ...) appear as attributes once imported; they are not names
    public = {
        n
        for n in dir(ms)
        if not n.startswith("_") and not isinstance(getattr(ms, n), types.ModuleType)
    }
    assert set(ms.__all__) - {"__version__"} == public
    assert callable(ms.backends)  # the function, not the backends/ subpackage
    for name in [
        "save",
        "load",
        "predict",
        "inspect",
        "scan",
        "export_onnx",
        "convert",
        "register",
        "backends",
        "refresh_backends",
    ]:
        assert callable(getattr(ms, name))


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ms.UnsafeModelError, ValueError),
        (ms.IntegrityError, ValueError),
        (ms.FormatError, ValueError),
        (ms.ArchitectureMismatchError, ValueError),
        (ms.ExportMismatchError, ValueError),
        (ms.UnsupportedModelError, TypeError),
        (ms.MissingDependencyError, ImportError),
        (ms.ModelNotFoundError, FileNotFoundError),
        (ms.ModelExistsError, FileExistsError),
        (ms.StorageError, OSError),
        (ms.RegistryError, ValueError),
        (ms.ArgumentError, ValueError),
    ],
)
def test_errors_subclass_modelstore_and_a_builtin(cls: type, builtin: type) -> None:
    """Every error is a ModelstoreError and the builtin it resembles."""
    assert issubclass(cls, ms.ModelstoreError) and issubclass(cls, builtin)
    assert cls.__module__ == "modelstore.errors" and cls.__name__ in errors.__all__


def test_warnings_are_user_warnings() -> None:
    """PickleWarning and friends are UserWarning subclasses."""
    for w in (ms.PickleWarning, ms.ArchitectureMismatchWarning, ms.BackendWarning):
        assert issubclass(w, UserWarning)


def test_info_is_json_serialisable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ModelInfo.to_dict() survives json.dumps."""
    torch = pytest.importorskip("torch")
    info = ms.save({"w": torch.zeros(2, 3)}, tmp_path / "w.safetensors", metadata={"a": [1, 2]})
    data = json.loads(json.dumps(info.to_dict()))
    assert data["tensors"][0] == {"name": "w", "shape": [2, 3], "dtype": "float32", "nbytes": 24}
    with pytest.raises(Exception):
        info.path = "x"  # type: ignore[misc]  # frozen


def test_ci_runs_the_readme_commands() -> None:
    """.ci/run runs the README's install command and its test command, verbatim."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:3]]
    assert blocks[0].startswith("python3 -m venv") and " -m pytest" in blocks[1]
    for command in blocks:
        assert command in ci.splitlines()

"""Issue 12's attacks on the pickle trust boundary: each file first shown to fire (or crash,
hang, poison the process) under the naive loader in a subprocess, then refused by modelstore
through every entry point, with no marker and no crash."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402
from tests import hostile_pickles as H  # noqa: E402
from tests.hang import GO, run_or_hang  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

#: name -> (suffix, builder(marker) -> bytes): payloads that run code under a naive load
RUNS_CODE: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "dotted_pyrun": (".joblib", H.dotted_pyrun),
    "dotted_from_memo": (".joblib", H.dotted_from_memo),
    "dotted_system": (".pkl", H.dotted_system),
    "zlib_joblib": (".joblib", H.zlib_joblib),
    "object_array_joblib": (".joblib", H.object_array_joblib),
}


def naive(
    code: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def quiet_load(path: Path, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        return ms.load(path, **kw)


@pytest.fixture(scope="module")
def code_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("runs-code")
    out = {}
    for name, (suffix, build) in RUNS_CODE.items():
        marker = folder / f"{name}.marker"
        path = folder / f"{name}{suffix}"
        path.write_bytes(build(marker))
        out[name] = (path, marker)
    return out


@pytest.mark.slow
def test_each_payload_runs_under_joblib_load(code_files: dict[str, tuple[Path, Path]]) -> None:
    """Proof the files are real: ``joblib.load`` in a fresh process creates every marker."""
    paths = [str(p) for p, _ in code_files.values()]
    proc = naive(f"""
        import joblib
        for p in {paths!r}:
            try:
                joblib.load(p)
            except Exception:
                pass
    """)
    missing = [n for n, (_, m) in code_files.items() if not m.exists()]
    assert not missing, proc.stderr
    for _, marker in code_files.values():
        marker.unlink()


@pytest.mark.parametrize("name", list(RUNS_CODE))
def test_refused_by_load_scan_inspect_predict_convert(
    code_files: dict[str, tuple[Path, Path]], name: str, tmp_path: Path
) -> None:
    """Every Python entry point refuses it as an attack (no trust recipe); scan says unsafe;
    inspect says the file executes code; nothing runs."""
    path, marker = code_files[name]
    with pytest.raises(ms.UnsafeModelError, match="attack") as e:
        ms.load(path)
    assert "trust=[" not in str(e.value)
    assert ms.scan(path).verdict == "unsafe"
    try:
        assert ms.inspect(path).executes_code
    except ms.ModelstoreError:
        pass
    with pytest.raises(ms.UnsafeModelError):
        ms.predict(path, [[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ms.UnsafeModelError):
        ms.convert(path, tmp_path / "out.onnx", sample_input=np.zeros((1, 4), np.float32))
    store = ms.Store(tmp_path / "store")
    store.push(path, "evil")
    with pytest.raises(ms.UnsafeModelError):
        store.load("evil")
    assert not marker.exists()


@pytest.mark.slow
def test_refused_by_the_cli_and_serve(
    code_files: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """``modelstore predict``/``scan``/``serve`` as subprocesses: refused, exit codes 1/2, no marker."""
    path, marker = code_files["dotted_pyrun"]
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4)))
    exe = [sys.executable, "-m", "modelstore"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pred = subprocess.run(
        [*exe, "predict", str(path), "--input", str(x)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert pred.returncode != 0 and "attack" in pred.stderr
    scan = subprocess.run(
        [*exe, "scan", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert scan.returncode == 1
    serve = subprocess.run(
        [*exe, "serve", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert serve.returncode != 0 and "attack" in serve.stderr
    assert not marker.exists()


# -- names that only look like scikit-learn classes ----------------------------------------------


@pytest.mark.parametrize(
    "module,name",
    [
        ("sklearn.callback._transport", "Listener"),
        ("sklearn.callback._transport", "Client"),
        ("sklearn.callback._progressbar", "Thread"),
        ("sklearn.utils._available_if", "MethodType"),
        ("sklearn.datasets._base", "Path"),
        ("sklearn.externals._scipy.sparse.csgraph._laplacian", "LinearOperator"),
        ("sklearn.neural_network._base", "ACTIVATIONS"),
        ("sklearn.tree._tree", "NODE_DTYPE"),
    ],
)
def test_reexports_and_constants_are_not_on_the_list(
    tmp_path: Path, module: str, name: str
) -> None:
    """A capitalised, dot-free name in an sklearn module that is a re-export or a constant is
    refused: the list holds classes defined where they are named, never anything else."""
    import importlib

    obj = getattr(
        importlib.import_module(module), name
    )  # it exists: the old spelling rule admitted it
    assert obj is not None
    path = tmp_path / "m.pkl"
    path.write_bytes(H.reexported_class(module, name))
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)
    assert ms.scan(path).verdict == "unsafe"


# -- one file changing every other model in the process -------------------------------------------

POISON = {
    "build_on_mixin": H.build_on_mixin,
    "setitem_on_constant": H.setitem_on_constant,
    "build_on_function_defaults": H.build_on_function_defaults,
}
_CHECK = """
    import pickle, warnings, numpy as np
    warnings.simplefilter("ignore")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils.validation import check_array
    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=300).fit(X, y)
    mlp = MLPClassifier(max_iter=50, random_state=0).fit(X, y)
    before = (lr.predict(X).tolist(), mlp.predict(X).tolist(), check_array.__defaults__)
    LOAD
    after = (lr.predict(X).tolist(), mlp.predict(X).tolist(), check_array.__defaults__)
    print("CHANGED" if before != after else "SAME")
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(POISON))
def test_a_load_cannot_change_other_models(tmp_path: Path, name: str) -> None:
    """Naively, the file rewrites a shared class, constant or function so that models already
    in the process predict differently; modelstore refuses it and they stay as they were."""
    path = tmp_path / "poison.pkl"
    path.write_bytes(POISON[name]())
    proc = naive(
        _CHECK.replace(
            "LOAD",
            f"""
    try:
        pickle.load(open({str(path)!r}, "rb"))
    except Exception as e:
        print("naive load raised", type(e).__name__)""",
        )
    )
    assert "CHANGED" in proc.stdout, proc.stdout + proc.stderr
    proc = naive(
        _CHECK.replace(
            "LOAD",
            f"""
    import modelstore as ms
    try:
        ms.load({str(path)!r})
    except ms.UnsafeModelError as e:
        print("refused", e)""",
        )
    )
    assert "refused" in proc.stdout and "SAME" in proc.stdout, proc.stdout + proc.stderr
    assert ms.scan(path).verdict == "unsafe"


# -- allowed callables used as gadgets --------------------------------------------------------------


def _crash_or_hang(code: str, after: float = 4) -> str:
    """Run ``code`` in a plain child: "hang" if it runs on ``after`` seconds past its GO line
    (or, with none, past a generous start-up limit), else how it ended."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = run_or_hang([sys.executable, "-c", textwrap.dedent(code)], after=after, env=env)
    if proc is None:
        return "hang"
    return (
        f"signal {-proc.returncode}"
        if proc.returncode < 0
        else f"exit {proc.returncode}: {proc.stderr[-300:]}"
    )


@pytest.mark.slow
def test_forged_object_array_crashes_naively_and_is_refused(tmp_path: Path) -> None:
    """An object dtype whose flags deny its objects, plus raw bytes: the naive load hands out
    forged object pointers (a segfault on first use); modelstore refuses the dtype state."""
    path = tmp_path / "forged.pkl"
    path.write_bytes(H.forged_object_array())
    outcome = _crash_or_hang(
        f"import pickle; a = pickle.load(open({str(path)!r}, 'rb')); print(repr(a[0]))"
    )
    assert outcome.startswith("signal"), outcome
    with pytest.raises(ms.UnsafeModelError, match="dtype"):
        ms.load(path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["oob", "cycle"])
def test_tree_nodes_out_of_range_or_cyclic(tmp_path: Path, kind: str) -> None:
    """A decision tree whose child points past its nodes crashes predict naively, one that
    points back at its root never returns; modelstore refuses both while loading."""
    path = tmp_path / "tree.pkl"
    path.write_bytes(H.tree_with_bad_children(kind))
    outcome = _crash_or_hang(f"""
        import pickle, numpy as np
        est = pickle.load(open({str(path)!r}, 'rb'))
        {GO}
        print(est.predict(np.array([[0.0], [3.0]])))
    """)
    assert outcome.startswith("signal") or outcome == "hang", outcome
    with pytest.raises(ms.UnsafeModelError, match="tree"):
        ms.load(path)


@pytest.mark.slow
def test_tree_deeper_than_its_stated_depth(tmp_path: Path) -> None:
    """A tree whose state says ``max_depth`` 0 over 12 levels of nodes: naively, predict
    works and ``decision_path`` overflows the heap; modelstore refuses it while loading
    (red team, sixth round: before, scan said "safe" and the load crashed the same way)."""
    path = tmp_path / "deep.pkl"
    path.write_bytes(H.tree_deeper_than_it_says())
    outcome = _crash_or_hang(f"""
        import pickle, numpy as np
        est = pickle.load(open({str(path)!r}, 'rb'))
        print(est.predict(np.eye(4)))
        print(est.decision_path(np.random.RandomState(1).rand(1000, 4)).nnz)
    """)
    assert outcome.startswith("signal"), outcome
    with pytest.raises(ms.UnsafeModelError, match="deeper than"):
        ms.load(path)


@pytest.mark.slow
def test_sparse_coef_with_indices_past_its_shape(tmp_path: Path) -> None:
    """A sparse ``coef_`` whose indices lie outside its shape loads naively and makes
    ``predict`` read out of bounds; modelstore runs scipy's full check and refuses it."""
    path = tmp_path / "sparse.pkl"
    path.write_bytes(H.sparse_coef_out_of_range())
    outcome = _crash_or_hang(f"""
        import pickle, numpy as np
        est = pickle.load(open({str(path)!r}, 'rb'))
        for _ in range(50):
            est.decision_function(np.ones((200, 2)))
        print("survived")
    """)
    assert outcome.startswith("signal") or "survived" not in outcome, outcome
    with pytest.raises(ms.UnsafeModelError, match="sparse"):
        ms.load(path)


@pytest.mark.slow
def test_fraction_from_a_huge_exponent_hangs_naively(tmp_path: Path) -> None:
    """``Fraction('1e999999999')`` in a 40-byte file hangs the naive load; modelstore refuses
    the text at once."""
    path = tmp_path / "frac.pkl"
    path.write_bytes(H.fraction_hang())
    assert len(path.read_bytes()) < 64
    assert (
        _crash_or_hang(f"import pickle; f = open({str(path)!r}, 'rb'); {GO}; pickle.load(f)", 5)
        == "hang"
    )
    start = time.perf_counter()
    with pytest.raises(ms.UnsafeModelError, match="Fraction"):
        ms.load(path)
    assert time.perf_counter() - start < 5


@pytest.mark.slow
def test_bytes_of_an_int_allocates_gigabytes_naively(tmp_path: Path) -> None:
    """``bytes(3 << 30)`` in a 30-byte file makes the naive load allocate 3 GiB (a MemoryError
    under a 1 GiB address-space limit); modelstore refuses before allocating anything."""
    path = tmp_path / "bytes.pkl"
    path.write_bytes(H.huge_bytes())
    code = f"""
        import resource, pickle
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            pickle.load(open({str(path)!r}, 'rb'))
        except MemoryError:
            print("MemoryError")
    """
    assert "MemoryError" in naive(code).stdout
    ours = naive(
        code.replace("import resource, pickle", "import resource, modelstore as ms")
        .replace("pickle.load(open(" + repr(str(path)) + ", 'rb'))", f"ms.load({str(path)!r})")
        .replace("except MemoryError:", "except ms.UnsafeModelError:")
        .replace('print("MemoryError")', 'print("refused")')
    )
    assert "refused" in ours.stdout, ours.stderr


@pytest.mark.slow
def test_multistream_bz2_bomb_is_bounded(tmp_path: Path) -> None:
    """A small multi-stream bz2 joblib file whose array claims 48 GiB: scan and load stop at
    the decompression limit (quickly, with a message naming the limit)."""
    path = tmp_path / "bomb.joblib"
    path.write_bytes(H.multistream_bz2())
    size = path.stat().st_size
    env = {"MODELSTORE_MIN_INFLATE_BYTES": str(1 << 20), "MODELSTORE_MAX_INFLATE_RATIO": "100"}
    code = f"""
        import time, modelstore as ms
        t = time.perf_counter()
        print(ms.scan({str(path)!r}).verdict)
        try:
            ms.load({str(path)!r})
        except ms.ModelstoreError as e:
            print(type(e).__name__, "MODELSTORE_MAX_INFLATE" in str(e) or "truncated" in str(e))
        print(time.perf_counter() - t < 20)
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    lines = proc.stdout.split()
    assert lines[0] in ("unsafe", "unknown") and lines[-1] == "True", (
        size,
        proc.stdout,
        proc.stderr,
    )


def test_random_state_position_past_its_key(tmp_path: Path) -> None:
    """A Mersenne Twister position past its 624-word key is refused while loading."""
    path = tmp_path / "rs.pkl"
    path.write_bytes(H.randomstate_position())
    assert b"pos" in path.read_bytes()
    with pytest.raises(ms.UnsafeModelError, match="position"):
        ms.load(path)


@pytest.mark.slow
def test_colliding_dict_keys_are_refused_quickly(tmp_path: Path) -> None:
    """60,000 int keys that share one hash make a naive load quadratic (over 5 s here);
    modelstore refuses the first such key."""
    path = tmp_path / "keys.pkl"
    path.write_bytes(H.colliding_keys())
    assert (
        _crash_or_hang(f"import pickle; f = open({str(path)!r}, 'rb'); {GO}; pickle.load(f)", 5)
        == "hang"
    )
    start = time.perf_counter()
    with pytest.raises(ms.UnsafeModelError, match="hash"):
        ms.load(path)
    assert ms.scan(path).verdict == "unsafe"
    assert time.perf_counter() - start < 5


# -- streams read differently by different readers ------------------------------------------------


class _FrameDroppingUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """CPython's C unpickler as gh-154848 describes it before the fix: a read that runs past
    the end of a FRAME drops the frame's unread bytes and takes its argument from after it."""

    def load(self):  # type: ignore[no-untyped-def]
        unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]

        def read(n: int) -> bytes:
            frame = unframer.current_frame
            if frame is not None:
                data = frame.read(n)
                if len(data) == n:
                    return data
                unframer.current_frame = None  # what the frame still held is lost
            return self._file_read(n)  # type: ignore[no-any-return]

        self._unframer, self.read, self.readline = unframer, read, unframer.readline
        self.metastack, self.stack, self.proto = [], [], 0
        self.append = self.stack.append
        try:
            while True:
                self.dispatch[read(1)[0]](self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value


@pytest.mark.slow
def test_frame_overrun_is_refused_as_crafted(tmp_path: Path) -> None:
    """A string argument that runs past its FRAME: a linear walker (pickletools) sees two
    harmless strings, a frame-dropping reader runs ``os.system``; modelstore reads frames as
    the stdlib's own unpickler does and refuses the file as crafted."""
    import pickletools

    marker = tmp_path / "marker"
    data = H.frame_overrun(marker)
    assert "GLOBAL" not in {op.name for op, _, _ in pickletools.genops(data)}
    path = tmp_path / "frame.pkl"
    path.write_bytes(data)
    proc = naive(f"""
        from tests.security.test_pickle_attacks import _FrameDroppingUnpickler
        _FrameDroppingUnpickler(open({str(path)!r}, 'rb')).load()
    """)
    assert marker.exists(), proc.stdout + proc.stderr
    marker.unlink(missing_ok=True)
    with pytest.raises(ms.UnsafeModelError, match="frame"):
        ms.load(path)
    assert ms.scan(path).verdict == "unsafe"
    assert not marker.exists()


@pytest.mark.slow
def test_second_pickle_after_stop(tmp_path: Path) -> None:
    """Bytes after STOP (a second pickle a reading loop would run) are refused by scan and
    load, even though the first pickle alone is harmless."""
    marker = tmp_path / "marker"
    path = tmp_path / "two.pkl"
    path.write_bytes(H.second_pickle_after_stop(marker))
    naive(f"""
        import pickle
        f = open({str(path)!r}, 'rb')
        pickle.load(f)
        pickle.load(f)
    """)
    assert marker.exists()
    marker.unlink()
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.UnsafeModelError, match="STOP"):
        ms.load(path)
    assert not marker.exists()


# -- code beside the model --------------------------------------------------------------------------


@pytest.mark.slow
def test_planted_module_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    """A ``fractions.py`` beside the model, with that folder as the working directory (as in
    a notebook or ``python -c``): a naive load of a file naming ``fractions.Fraction`` imports
    the planted module; modelstore refuses to import it."""
    marker = tmp_path / "marker"
    (tmp_path / "fractions.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Fraction:\n    pass\n"
    )
    path = tmp_path / "m.pkl"
    path.write_bytes(H.planted_module_global("fractions", "Fraction"))
    naive(f"import pickle; pickle.load(open({str(path)!r}, 'rb'))", cwd=tmp_path)
    assert marker.exists()
    marker.unlink()
    proc = naive(
        f"""
        import sys
        assert "fractions" not in sys.modules
        import modelstore as ms
        try:
            ms.load({str(path)!r})
        except ms.ModelstoreError as e:
            print("refused", e)
    """,
        cwd=tmp_path,
    )
    assert "refused" in proc.stdout and "outside" in proc.stdout, proc.stdout + proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_nothing_named_by_the_file_is_imported_before_the_audit(tmp_path: Path) -> None:
    """A module on sys.path that writes a canary when imported, named by a hostile file: the
    naive load imports it, modelstore never does (the name is not on the list)."""
    canary = tmp_path / "canary"
    (tmp_path / "canarymod.py").write_text(
        f"open({str(canary)!r}, 'w').close()\nclass Thing:\n    pass\n"
    )
    path = tmp_path / "m.pkl"
    path.write_bytes(H.planted_module_global("canarymod", "Thing"))
    proc = naive(
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import pickle; pickle.load(open({str(path)!r}, 'rb'))"
    )
    assert canary.exists(), proc.stderr
    canary.unlink()
    proc = naive(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import modelstore as ms
        try:
            ms.load({str(path)!r})
        except ms.UnsafeModelError:
            print("refused")
        print(ms.scan({str(path)!r}).verdict)
    """)
    assert "refused" in proc.stdout and "unsafe" in proc.stdout, proc.stdout + proc.stderr
    assert not canary.exists()


# -- benign files that used to be refused -----------------------------------------------------------


@pytest.mark.slow
def test_a_two_million_key_vocabulary_loads(tmp_path: Path) -> None:
    """A benign 2,000,000-key vocabulary has no fixed opcode cliff: it scans safe and loads."""
    vocab = {f"w{i}": i for i in range(2_000_000)}
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(vocab, protocol=4))
    assert ms.scan(path).verdict == "safe"
    assert quiet_load(path) == vocab


def test_torch_checkpoint_with_numpy_metrics_loads_with_the_suggested_trust(tmp_path: Path) -> None:
    """A checkpoint holding numpy scalar metrics is refused with a trust list that, passed
    back, really loads it."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.ones(2)}, "best_acc": np.float64(0.93), "epoch": 3}, path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    ckpt = quiet_load(path, trust=e.value.untrusted)
    assert float(ckpt["best_acc"]) == pytest.approx(0.93) and ckpt["epoch"] == 3

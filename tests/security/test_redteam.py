"""Red-team findings against the rebuilt trust boundary (issue 12, round 3).

Each test builds one hostile file, first proves that it really is hostile (the naive loader
fires or crashes in a subprocess, or modelstore itself misbehaves), then states the behaviour
modelstore must have. They fail on the code they were written against, so each is marked
``xfail(strict=True)``: remove the mark with the fix. Payloads are harmless (a marker file in
a temp folder; crashes and allocations happen only in subprocesses these tests start).
"""

from __future__ import annotations

import bz2
import functools
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402
from tests.hostile import P2, _b, _g, _s  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def run_py(
    code: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "modelstore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def gated_child(path: Path, predict: str | None = None) -> str:
    """Child code: load ``path`` through modelstore (then predict ``predict``); prints
    REFUSED for a ModelstoreError, PREDICTED when it ran; anything else escapes."""
    use = f"ms.predict(m, {predict})" if predict else "None"
    return f"""
        import warnings, numpy as np
        import modelstore as ms
        warnings.simplefilter("ignore")
        try:
            m = ms.load({str(path)!r})
            {use}
            print("PREDICTED")
        except ms.ModelstoreError as e:
            print("REFUSED", type(e).__name__)
    """


#: Child code printing its own peak RSS: VmHWM belongs to the new process image, whereas
#: ru_maxrss carries the parent's high-water mark across fork and exec.
PEAK_RSS = """
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print("RSS_MB", int(line.split()[1]) // 1024)
"""


def assert_no_signal_and_clean(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, f"child died with {r.returncode}: {r.stderr[-2000:]}"
    assert "REFUSED" in r.stdout or "PREDICTED" in r.stdout, r.stdout + r.stderr[-2000:]


def naive_crash(path: Path, predict: str) -> subprocess.CompletedProcess[str]:
    """Load and predict with plain joblib in a child. The files here corrupt memory, which is
    undefined behaviour: the child usually dies of a signal, but a corrupted heap can also
    leave it spinning or deadlocked (seen once in CI under load). A child that has not
    finished in 60 s is killed and reported as killed by SIGKILL: it did not survive either."""
    code = f"""
        import warnings, joblib, numpy as np
        warnings.simplefilter("ignore")
        m = joblib.load({str(path)!r})
        m.predict({predict})
        import gc; gc.collect()
        print("SURVIVED")
    """
    try:
        return run_py(code, timeout=60)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(e.cmd, -9, out, "(hung: killed after 60 s)")


# -- 1. scan and the naive loader disagree on where array bytes start ---------------------------


def wrapper_via_newobj(marker: Path, via: str = "__newobj__") -> bytes:
    """A joblib array record whose wrapper is created by ``copyreg.__newobj__`` (REDUCE)
    instead of NEWOBJ: joblib (and modelstore's loader) read N raw bytes after its BUILD, the
    scanner does not, and parses those bytes as opcodes. The raw bytes start with a BINBYTES
    whose length swallows the ``os.system`` call that joblib then runs."""
    n = 64
    payload = _g("os", "system") + _s(f"touch {marker}") + b"\x85R"
    raw = b"B" + struct.pack("<I", n - 5 + len(payload)) + b"\x00" * (n - 5)
    state = (
        b"}("
        + _s("subclass")
        + _g("numpy", "ndarray")
        + _s("shape")
        + b"K"
        + bytes([n])
        + b"\x85"
        + _s("order")
        + _s("C")
        + _s("dtype")
        + _g("numpy", "dtype")
        + _s("u1")
        + b"\x89\x88\x87R"
        + _s("allow_mmap")
        + b"\x89u"
    )
    if via == "__newobj__":
        make = (
            _g("copyreg", "__newobj__") + _g("joblib.numpy_pickle", "NumpyArrayWrapper") + b"\x85R"
        )
    else:
        make = (
            _g("copyreg", "_reconstructor")
            + _g("joblib.numpy_pickle", "NumpyArrayWrapper")
            + _g("builtins", "object")
            + b"N\x87R"
        )
    return P2 + make + state + b"b" + raw + payload + b"0."


@pytest.mark.parametrize("via", ["__newobj__", "_reconstructor"])
def test_scan_reads_array_bytes_where_joblib_does(tmp_path: Path, via: str) -> None:
    """A joblib array wrapper created through copyreg (not NEWOBJ) is read by scan exactly as
    joblib reads it: a file that runs os.system under joblib.load is never scanned "safe"."""
    marker = tmp_path / "marker"
    path = tmp_path / "m.joblib"
    path.write_bytes(wrapper_via_newobj(marker, via))
    r = run_py(f"import joblib; joblib.load({str(path)!r})")
    assert marker.exists(), r.stderr  # the naive loader runs the payload
    marker.unlink()
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)
    assert ms.scan(path).verdict != "safe"
    assert "safe" not in cli("scan", str(path)).stdout.replace("unsafe", "")
    assert not marker.exists()


def wrapper_dtype_resized(marker: Path) -> bytes:
    """A joblib array record whose dtype is spelled ``S4`` but whose BUILD state makes its
    item size 8: joblib reads 8 bytes per item, the scanner (sizing by the spelling) 4, and
    parses the other half as opcodes: a BINBYTES that swallows the os.system call joblib runs."""
    n = 16
    payload = _g("os", "system") + _s(f"touch {marker}") + b"\x85R"
    raw = (
        b"\x00" * (4 * n)
        + b"B"
        + struct.pack("<I", 4 * n - 5 + len(payload))
        + b"\x00" * (4 * n - 5)
    )
    dtype = (
        _g("numpy", "dtype")
        + _s("S4")
        + b"\x89\x88\x87R"
        + b"(K\x03"
        + _s("|")
        + b"NNNK\x08K\x01K\x00tb"
    )  # (3, '|', None, None, None, 8, 1, 0)
    state = (
        b"}("
        + _s("subclass")
        + _g("numpy", "ndarray")
        + _s("shape")
        + b"K"
        + bytes([n])
        + b"\x85"
        + _s("order")
        + _s("C")
        + _s("dtype")
        + dtype
        + _s("allow_mmap")
        + b"\x89u"
    )
    return (
        P2
        + _g("joblib.numpy_pickle", "NumpyArrayWrapper")
        + b")\x81"
        + state
        + b"b"
        + raw
        + payload
        + b"0."
    )


def test_scan_sizes_arrays_by_the_dtype_joblib_builds(tmp_path: Path) -> None:
    """The scanner sizes a joblib array by the dtype joblib will have built (or calls a dtype
    state that changes the item size unsafe, as load refuses it): never "safe" for a file
    whose os.system call joblib.load runs."""
    marker = tmp_path / "marker"
    path = tmp_path / "m.joblib"
    path.write_bytes(wrapper_dtype_resized(marker))
    r = run_py(f"import joblib; joblib.load({str(path)!r})")
    assert marker.exists(), r.stderr
    marker.unlink()
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path)
    assert ms.scan(path).verdict != "safe"
    assert not marker.exists()


# -- 2. a protocol-0 line longer than the reader's line bound ------------------------------------


def long_line(marker: Path) -> bytes:
    """A UNICODE opcode whose line is longer than 1 MiB: the scanner's bounded readline stops
    short and parses the rest of the line as opcodes (a BINBYTES that swallows the newline and
    the GLOBAL os.system + REDUCE that the real unpickler then runs)."""
    payload = b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR"
    tail = b"B" + struct.pack("<I", 1 + len(payload))
    return b"V" + b"a" * (1 << 20) + tail + b"\n" + payload + b"00N."


def test_long_protocol0_line_is_not_scanned_safe(tmp_path: Path) -> None:
    """A protocol-0 line longer than the stream reader's line bound is refused (never cut
    short): scan and load read the opcodes pickle.load would, so os.system is never "safe"."""
    marker = tmp_path / "marker"
    path = tmp_path / "m.pkl"
    path.write_bytes(long_line(marker))
    r = run_py(f"import pickle; pickle.load(open({str(path)!r}, 'rb'))")
    assert marker.exists(), r.stderr
    marker.unlink()
    assert ms.scan(path).verdict != "safe"
    with pytest.raises(ms.ModelstoreError):
        ms.load(path)
    assert not marker.exists()


# -- 3-8. fitted state that scikit-learn's compiled predict code trusts ---------------------------


def _knn(path: Path) -> str:
    from sklearn.neighbors import KNeighborsClassifier

    x = np.random.RandomState(0).rand(20, 3)
    m = KNeighborsClassifier(n_neighbors=3, algorithm="brute", metric="manhattan").fit(
        x, np.arange(20) % 2
    )
    m._y = np.full(20, 10**12, dtype=np.intp)  # class indices far outside classes_
    joblib.dump(m, path)
    return "np.random.rand(2, 3)"


def _gradient_boosting(path: Path) -> str:
    from sklearn.ensemble import GradientBoostingRegressor

    x = np.random.RandomState(0).rand(50, 3)
    m = GradientBoostingRegressor(n_estimators=3000, max_depth=1, init="zero").fit(x, x[:, 0])
    m.estimators_ = m.estimators_.reshape(1, -1)  # 3000 trees per stage, 1 output column
    joblib.dump(m, path)
    return "np.random.rand(1, 3)"


def _hist_gradient_boosting(path: Path) -> str:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.preprocessing import FunctionTransformer

    x = np.random.RandomState(0).rand(100, 3)
    m = HistGradientBoostingRegressor(max_iter=3, max_depth=2).fit(x, x[:, 0])
    big = 10**10
    for row in m._predictors:
        for p in row:
            p.nodes["feature_idx"][~p.nodes["is_leaf"].astype(bool)] = big - 1
    m.n_features_in_ = big  # trees "in range" of this count ...
    m._preprocessor = FunctionTransformer()  # ... and the preprocessor skips the feature check
    joblib.dump(m, path)
    return "np.random.rand(2, 3)"


def _hashing_vectorizer(path: Path) -> str:
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    docs = ["good movie", "bad movie", "great film", "awful film"]
    m = make_pipeline(HashingVectorizer(n_features=16), SGDClassifier(random_state=0)).fit(
        docs, [1, 0, 1, 0]
    )
    m.steps[0][1].n_features = 0  # scikit-learn is built with cdivision: h % 0
    joblib.dump(m, path)
    return "['good film']"


def _count_vectorizer(path: Path) -> str:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = ["good movie", "bad movie", "great film", "awful film"]
    m = make_pipeline(CountVectorizer(), LogisticRegression()).fit(docs, [1, 0, 1, 0])
    m.steps[0][1].vocabulary_["good"] = 2**31 - 1  # a column far outside the matrix shape
    joblib.dump(m, path)
    return "['good film']"


def _function_transformer(path: Path) -> str:
    from sklearn.cluster._kmeans import _kmeans_single_lloyd
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures

    x = np.random.RandomState(0).rand(20, 3)
    m = make_pipeline(FunctionTransformer(), LinearRegression()).fit(x, x[:, 0])
    # an allowed "value" function called with the model's own keyword arguments: shapes that
    # disagree with the data make its Cython loop write past centers_new
    kw = {"sample_weight": np.ones(1), "centers_init": np.zeros((1, 1)), "max_iter": 1}
    m.steps[:1] = [
        ("p", PolynomialFeatures(degree=60).fit(x)),
        ("f", FunctionTransformer(func=_kmeans_single_lloyd, kw_args=kw)),
    ]
    joblib.dump(m, path)
    return "np.random.rand(1, 3)"


PREDICT_CRASHES = {
    "knn_labels": _knn,
    "gb_stage_width": _gradient_boosting,
    "hgb_preprocessor": _hist_gradient_boosting,
    "hashing_zero_features": _hashing_vectorizer,
    "count_vocabulary_index": _count_vectorizer,
    "function_transformer_kmeans": _function_transformer,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PREDICT_CRASHES))
def test_fitted_state_never_crashes_predict(tmp_path: Path, name: str) -> None:
    """A model whose fitted state scikit-learn's compiled predict code trusts (labels, stage
    widths, feature indices, hashing sizes, vocabulary columns, keyword arguments of allowed
    functions) is refused by load, or predicts without a crash: never a signal."""
    path = tmp_path / f"{name}.joblib"
    sample = PREDICT_CRASHES[name](path)
    naive = naive_crash(path, sample)
    assert naive.returncode < 0 and "SURVIVED" not in naive.stdout, (
        naive.returncode,
        naive.stderr[-800:],
    )
    assert_no_signal_and_clean(run_py(gated_child(path, sample)))
    assert_no_signal_and_clean(
        run_py(f"""
        import warnings, numpy as np
        import modelstore as ms
        warnings.simplefilter("ignore")
        try:
            ms.predict({str(path)!r}, {sample})
            print("PREDICTED")
        except ms.ModelstoreError as e:
            print("REFUSED", type(e).__name__)
    """)
    )


# -- 9. the dict-key check itself calls into the file ---------------------------------------------


@pytest.mark.slow
def test_dict_key_check_calls_nothing_from_the_file(tmp_path: Path) -> None:
    """Checking a dict key never calls anything the stream built: an estimator whose state
    holds ``dtype``, ``shape=()`` and ``item=partial(...)`` is refused as a key without its
    ``item`` being called (here a kmeans helper with shapes that corrupt the heap)."""
    from sklearn.cluster._kmeans import _kmeans_single_lloyd
    from sklearn.linear_model import LinearRegression

    key = LinearRegression()
    key.dtype, key.shape = 1, ()
    key.item = functools.partial(
        _kmeans_single_lloyd, np.zeros((1, 200_000)), np.ones(1), np.zeros((1, 1)), max_iter=1
    )
    path = tmp_path / "key.joblib"
    joblib.dump({key: 1}, path, compress=3)
    assert path.stat().st_size < 20_000
    naive = run_py(f"import joblib; joblib.load({str(path)!r}); print('LOADED')")
    assert (
        naive.returncode == 0 and "LOADED" in naive.stdout
    )  # only modelstore's own check calls item()
    try:  # a corrupted heap may also deadlock in malloc: a hang is a failure too
        r = run_py(
            gated_child(path) + "\n        import gc; gc.collect(); print('EXITED')", timeout=90
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading the file hung")
    assert_no_signal_and_clean(r)
    assert "EXITED" in r.stdout


# -- 9b. the sparse-matrix validator runs scipy's unchecked conversion --------------------------------


@pytest.mark.slow
def test_lil_matrix_validation_never_writes_past_its_arrays(tmp_path: Path) -> None:
    """A LIL matrix whose ``rows`` hold more entries than its shape has rows is refused by
    plain checks, before any scipy conversion runs (``tocsr`` writes one length per row into
    an array sized by the shape: a 7 KB file overflows the heap inside ms.load)."""
    from scipy.sparse import lil_matrix

    m = lil_matrix((2, 2))
    rows = np.empty(200_000, dtype=object)
    for i in range(len(rows)):
        rows[i] = [0]
    m.rows = rows
    path = tmp_path / "lil.joblib"
    joblib.dump(m, path, compress=3)
    assert path.stat().st_size < 20_000
    naive = run_py(f"import joblib; joblib.load({str(path)!r}); print('LOADED')")
    assert naive.returncode == 0 and "LOADED" in naive.stdout  # the crash is modelstore's own check
    try:
        r = run_py(
            gated_child(path) + "\n        import gc; gc.collect(); print('EXITED')", timeout=90
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading the file hung")
    assert_no_signal_and_clean(r)
    assert "EXITED" in r.stdout


# -- 9c. predict's fast path trusts an attribute the file set ---------------------------------------


@pytest.mark.slow
def test_predict_fast_path_is_never_taken_from_the_file(tmp_path: Path) -> None:
    """``ms.predict(model, x)`` (and ``serve``) takes its fast path only from modelstore's own
    wrapper classes, never from an attribute a pickle put in an estimator's ``__dict__``:
    here a partial of an allowed kmeans helper that corrupts the heap when called."""
    from sklearn.cluster._kmeans import _kmeans_single_lloyd
    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(20, 3)
    m = LinearRegression().fit(x, x[:, 0])
    m.__modelstore_predict__ = functools.partial(
        _kmeans_single_lloyd, np.zeros((1, 50_000)), np.ones(1), np.zeros((1, 1)), 1
    )
    path = tmp_path / "hook.joblib"
    joblib.dump(m, path, compress=3)
    naive = run_py(f"""
        import joblib, numpy as np
        print(joblib.load({str(path)!r}).predict(np.random.rand(2, 3)))
        import gc; gc.collect(); print("EXITED")
    """)
    assert naive.returncode == 0 and "EXITED" in naive.stdout  # the model itself predicts fine
    try:
        r = run_py(
            gated_child(path, "np.random.rand(2, 3)")
            + "\n        import gc; gc.collect(); print('EXITED')",
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("predicting hung")
    assert_no_signal_and_clean(r)
    assert "EXITED" in r.stdout


# -- 10. a module planted beside the model, imported by an allowed module --------------------------


@pytest.mark.slow
def test_allowed_modules_never_import_planted_files(tmp_path: Path) -> None:
    """Importing an allowed global's module never imports a file from the model's folder,
    not even one its installed module imports in turn (numpy.random imports ``secrets``)."""
    import pickle

    (tmp_path / "m.pkl").write_bytes(pickle.dumps(np.random.RandomState(0), protocol=4))
    marker = tmp_path / "marker"
    (tmp_path / "secrets.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom random import getrandbits as randbits\n"
    )
    r = run_py("import pickle; pickle.load(open('m.pkl', 'rb'))", cwd=tmp_path)
    assert marker.exists(), r.stderr  # a naive load in that folder runs the planted file
    marker.unlink()
    assert ms.scan(tmp_path / "m.pkl").verdict == "safe"
    r = run_py(gated_child(Path("m.pkl")), cwd=tmp_path)
    assert_no_signal_and_clean(r)
    assert not marker.exists()


# -- 10b. JSON over 1 MiB skips the depth check --------------------------------------------------------


def test_deep_metadata_in_a_large_sidecar_is_refused(tmp_path: Path) -> None:
    """A sidecar over 1 MiB whose metadata nests 900 levels (under the parser's own guard,
    far over MAX_DEPTH) is refused like a small one: ``inspect`` and the CLI answer with a
    ModelstoreError, never a RecursionError or an "internal error"."""
    import json
    import warnings

    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(10, 2)
    path = tmp_path / "m.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms.save(LinearRegression().fit(x, x[:, 0]), path, metadata={"a": 1})
    side = tmp_path / "m.joblib.modelstore.json"
    data = json.loads(side.read_text())
    data["versions"][0]["metadata"] = "PLACEHOLDER"
    deep = "[" * 900 + "]" * 900
    side.write_text(
        json.dumps(data).replace(
            '"PLACEHOLDER"', '{"a": ' + deep + ', "pad": "' + "x" * (1 << 20) + '"}'
        )
    )
    try:
        info = ms.inspect(path)
    except ms.ModelstoreError:
        pass
    else:
        json.dumps(info.to_dict())
    r = cli("inspect", "--json", str(path))
    assert "internal error" not in r.stderr and "RecursionError" not in r.stderr, r.stderr[-500:]


# -- 11. str() of bytes with a decompressing codec -------------------------------------------------


def str_bomb() -> bytes:
    """``str(<785 bytes of bz2>, 'bz2_codec')``: the codec inflates 1 GiB before Python
    notices it is not a text codec."""
    blob = bz2.compress(b"\0" * (1 << 30), 9)
    return P2 + _g("builtins", "str") + _b(blob) + _s("bz2_codec") + b"\x86R."


@pytest.mark.slow
def test_str_runs_no_decompressing_codec(tmp_path: Path) -> None:
    """``builtins.str(bytes, encoding)`` is allowed only with a plain text codec, like
    ``bytes``/``_codecs.encode``: an 823-byte file never makes load allocate a gigabyte."""
    path = tmp_path / "bomb.pkl"
    path.write_bytes(str_bomb())
    assert path.stat().st_size < 1000
    r = run_py(gated_child(path) + PEAK_RSS)
    assert_no_signal_and_clean(r)
    rss = int(r.stdout.split("RSS_MB")[1].split()[0])
    assert rss < 400, f"loading an {path.stat().st_size}-byte file peaked at {rss} MB"


# -- 12. a Keras config that declares layers far larger than the weights it stores ------------------


@pytest.mark.slow
def test_keras_config_sizes_are_bounded_by_stored_weights(tmp_path: Path) -> None:
    """A .keras file whose config declares a layer far larger than the weights it stores is
    refused before Keras builds (and randomly initialises) the layer: a 12 KB file that makes
    plain Keras peak above 1.5 GB never makes modelstore's load do so (VmHWM of each child)."""
    keras = pytest.importorskip("keras")
    import json
    import zipfile

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(tmp_path / "base.keras")
    with zipfile.ZipFile(tmp_path / "base.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(members["config.json"])
    cfg["config"]["layers"][-1]["config"]["units"] = (
        25 * 10**6
    )  # 400 MB of float32 kernel, 0 bytes stored
    members["config.json"] = json.dumps(cfg).encode()
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    assert path.stat().st_size < 20_000
    naive = run_py(
        f"""
        import warnings, keras
        warnings.simplefilter("ignore")
        try:
            keras.saving.load_model({str(path)!r})
        except ValueError as e:
            print("KERAS REFUSED AFTER BUILDING", str(e)[:80])
    """
        + PEAK_RSS,
        timeout=300,
    )
    assert naive.returncode == 0, naive.stderr[-2000:]
    peak = int(naive.stdout.split("RSS_MB")[1].split()[0])
    assert peak > 1500, f"plain Keras peaked at only {peak} MB: {naive.stdout}"
    r = run_py(gated_child(path) + PEAK_RSS, timeout=300)
    assert_no_signal_and_clean(r)
    assert "REFUSED UnsafeModelError" in r.stdout, r.stdout
    rss = int(r.stdout.split("RSS_MB")[1].split()[0])
    assert rss < 1500, f"loading a {path.stat().st_size}-byte .keras file peaked at {rss} MB"

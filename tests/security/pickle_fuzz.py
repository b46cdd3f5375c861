"""A pickle fuzzer that composes streams only from allow-listed globals and opcodes.

Every allowed callable and class is an API an attacker may call with anything and fill with
any state, so the fuzzer does exactly that: random calls of ``call`` entries with random
arguments, empty instances of ``construct`` entries filled by random ``BUILD`` states (keys an
estimator really has, values that are arrays, trees, dtypes, numbers of every edge), random
``SETITEM``/``APPEND``/memo reuse, plus semantic mutations of real fitted objects' states.
Each stream is loaded by :func:`modelstore.security.joblibfile.load_file` in a worker process
and, if it loads, *used* (repr, arrays summed, estimators' predict on matching inputs, trees
applied, random draws): any signal (SIGSEGV, SIGABRT), hang, or non-modelstore exception
from the load is a finding.

    python -m tests.security.pickle_fuzz run N [SEED]     # N cases, prints a summary
"""

from __future__ import annotations

import os
import pickle
import random
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# -- stream assembly ------------------------------------------------------------------------------


def _s(text: str) -> bytes:
    b = text.encode("utf-8", "surrogatepass")
    return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b


def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(1 << 31) <= v < (1 << 31):
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


_CODES = [
    "f8",
    "f4",
    "i8",
    "i4",
    "u1",
    "b1",
    "O8",
    "U3",
    "S4",
    "V8",
    "V12",
    "V0",
    "M8",
    "m8",
    "c16",
    "f2",
    "<f8",
    ">i4",
    "V64",
    "U0",
    "f16",
]
_ATTRS = [
    "tree_",
    "n_features_in_",
    "coef_",
    "intercept_",
    "classes_",
    "estimators_",
    "_predictors",
    "n_outputs_",
    "_fit_X",
    "_tree",
    "support_vectors_",
    "_n_support",
    "_dual_coef_",
    "_intercept_",
    "shape_fit_",
    "_sparse",
    "kernel",
    "cluster_centers_",
    "_shape",
    "data",
    "indices",
    "indptr",
    "coords",
    "offsets",
    "_t",
    "_c",
    "k",
    "nodes",
    "binned_left_cat_bitsets",
    "raw_left_cat_bitsets",
    "_bin_mapper",
    "is_categorical_",
    "n_classes_",
    "max_depth",
    "node_count",
    "values",
    "effective_metric_",
    "_fit_method",
    "n_samples_fit_",
    "_y",
    "_probA",
    "_probB",
    "support_",
    "_gamma",
    "class_weight_",
    # fitted state the end-of-load checks compare (check_sklearn_fitted.py, check_sklearn_state.py)
    "n_trees_per_iteration_",
    "init_",
    "_loss",
    "_preprocessor",
    "transformers_",
    "vocabulary_",
    "n_features",
    "_n_features_outs",
    "categories_",
    "_bisecting_tree",
    "_n_threads",
    "_max_features",
    "estimators_features_",
    "n_components_",
    "components_",
    "_n_out_full",
    "n_output_features_",
    "labels_",
    "n_features_out_",
    "bsplines_",
    "indexHash_",
    "n_components",
    "sample_steps",
    "max_iter",
    "outputs_2d_",
    "func",
    "kw_args",
    "center",
    "left",
    "right",
]


class Composer:
    """Writes one random stream from the allow-list's globals."""

    def __init__(self, rnd: random.Random, entries: list[Any]) -> None:
        self.r = rnd
        self.calls = [e for e in entries if e.kind == "call"]
        self.constructs = [e for e in entries if e.kind == "construct"]
        self.values = [e for e in entries if e.kind == "value"]
        self.memo = 0
        hot = {
            "numpy",
            "numpy._core.multiarray",
            "numpy._core.numeric",
            "sklearn.tree._tree",
            "sklearn.neighbors._kd_tree",
            "sklearn.metrics._dist_metrics",
            "numpy.random._pickle",
            "numpy.ma.core",
            "builtins",
            "functools",
            "copyreg",
            "fractions",
            "decimal",
            "datetime",
        }
        self.hot_calls = [e for e in self.calls if e.module in hot]

    def literal(self) -> bytes:
        r = self.r
        kind = r.randrange(12)
        if kind == 0:
            return b"N"
        if kind == 1:
            return b"\x88" if r.random() < 0.5 else b"\x89"
        if kind == 2:
            return _int(
                r.choice(
                    [
                        0,
                        1,
                        -1,
                        2,
                        3,
                        4,
                        7,
                        8,
                        12,
                        16,
                        64,
                        624,
                        625,
                        10**6,
                        -2,
                        2**31 - 1,
                        2**31,
                        2**63,
                        -(2**63),
                        2**61 - 1,
                        10**18,
                        r.randrange(-100, 100),
                    ]
                )
            )
        if kind == 3:
            return b"G" + struct.pack(
                ">d", r.choice([0.0, -0.0, 1.5, 1e308, float("inf"), float("nan"), -1.0])
            )
        if kind == 4:
            return _s(
                r.choice(
                    _CODES
                    + [
                        "C",
                        "F",
                        "|",
                        "<",
                        ">",
                        "latin1",
                        "utf-8",
                        "MT19937",
                        "PCG64",
                        "Philox",
                        "1e999999999",
                        "1/3",
                        "relu",
                        "rbf",
                        "c_svc",
                        "precomputed",
                        "ball_tree",
                        "x" * r.randrange(0, 40),
                    ]
                )
            )
        if kind == 5:
            n = r.choice([0, 1, 2, 4, 8, 12, 16, 24, 64, 128, r.randrange(0, 300)])
            return (
                b"C" + bytes([n]) + r.randbytes(n)
                if n < 256
                else b"B" + struct.pack("<I", n) + r.randbytes(n)
            )
        if kind == 6:
            return b")"
        if kind == 7:
            return b"]"
        if kind == 8:
            return b"}"
        if kind == 9:
            return _s(r.choice(_ATTRS))
        if kind == 10 and self.memo:
            i = r.randrange(self.memo)
            return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)
        return _int(r.randrange(0, 10))

    def value(self, depth: int = 0) -> bytes:
        r = self.r
        if depth > 4:
            return self.literal()
        roll = r.random()
        if roll < 0.35:
            out = self.literal()
        elif roll < 0.45:
            out = self.container(depth)
        elif roll < 0.75:
            out = self.call(depth)
        elif roll < 0.88:
            out = self.construct(depth)
        else:
            e = r.choice(self.values)
            out = _g(e.module, e.name)
        if r.random() < 0.3:
            out += b"q" + bytes([self.memo % 256]) if self.memo < 256 else b""
            self.memo += 1
        return out

    def container(self, depth: int) -> bytes:
        r = self.r
        n = r.randrange(0, 5)
        items = b"".join(self.value(depth + 1) for _ in range(n))
        kind = r.randrange(4)
        if kind == 0:
            return b"(" + items + b"t"
        if kind == 1:
            return b"(" + items + b"l"
        if kind == 2:
            pairs = b"".join(_s(r.choice(_ATTRS)) + self.value(depth + 1) for _ in range(n))
            return b"(" + pairs + b"d"
        return b"(" + items + b"\x91" if n else b"\x8f"

    def args(self, depth: int) -> bytes:
        n = self.r.choice([0, 1, 1, 2, 3, 3, 4, 5])
        return b"(" + b"".join(self.value(depth + 1) for _ in range(n)) + b"t"

    def call(self, depth: int) -> bytes:
        pool = self.hot_calls if self.r.random() < 0.7 else self.calls
        e = self.r.choice(pool)
        out = _g(e.module, e.name) + self.args(depth) + b"R"
        if self.r.random() < 0.5:
            out += self.state(depth) + b"b"
        return out

    def construct(self, depth: int) -> bytes:
        e = self.r.choice(self.constructs)
        out = _g(e.module, e.name) + b")\x81"
        if self.r.random() < 0.85:
            out += self.state(depth) + b"b"
        return out

    def state(self, depth: int) -> bytes:
        r = self.r
        if r.random() < 0.6:
            n = r.randrange(0, 6)
            return (
                b"("
                + b"".join(_s(r.choice(_ATTRS)) + self.value(depth + 1) for _ in range(n))
                + b"d"
            )
        return self.args(depth) if r.random() < 0.7 else self.value(depth + 1)

    def stream(self) -> bytes:
        self.memo = 0
        body = self.value()
        r = self.r
        for _ in range(r.randrange(0, 3)):  # mutate something already built
            if self.memo:
                i = r.randrange(min(self.memo, 256))
                op = r.choice([b"b", b"s", b"a"])
                extra = (
                    self.state(1)
                    if op == b"b"
                    else (_s(r.choice(_ATTRS)) + self.value(2) if op == b"s" else self.value(2))
                )
                body += b"h" + bytes([i]) + extra + op + b"0"
        return b"\x80\x02" + body + b"."


# -- semantic mutations of real objects --------------------------------------------------------------


def real_objects() -> list[Any]:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=300).fit(X, y)
    lr_sparse = LogisticRegression(max_iter=300).fit(X, y)
    lr_sparse.coef_ = sp.csr_matrix(lr_sparse.coef_)
    return [
        DecisionTreeClassifier(max_depth=3).fit(X, y),
        RandomForestClassifier(n_estimators=3, max_depth=3).fit(X, y),
        HistGradientBoostingClassifier(max_iter=3).fit(X, y),
        SVC().fit(X, y),
        KNeighborsClassifier().fit(X, y),
        KDTree(X),
        BallTree(X, metric="seuclidean", V=np.ones(4)),
        lr,
        lr_sparse,
        np.random.RandomState(0),
        np.random.default_rng(1),
        np.arange(12.0).reshape(3, 4),
        np.array(["a", None, 3], dtype=object),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
        sp.coo_matrix(np.eye(3)),
        sp.csc_matrix(np.eye(3)),
        *fitted_state_objects(X, y),
    ]


def fitted_state_objects(X: Any, y: Any) -> list[Any]:
    """Estimators whose attributes the end-of-load checks compare with each other."""
    import numpy as np
    from sklearn.cluster import BisectingKMeans, FeatureAgglomeration
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
    )
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.neighbors import RadiusNeighborsClassifier
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, SplineTransformer
    from sklearn.random_projection import SparseRandomProjection

    cats = np.random.RandomState(0).randint(0, 3, size=(40, 4))
    return [
        GradientBoostingClassifier(n_estimators=3, max_depth=2).fit(X, y),
        HistGradientBoostingRegressor(max_iter=3, categorical_features=[0]).fit(cats, X[:40, 0]),
        IsolationForest(n_estimators=3, max_features=0.5, random_state=0).fit(X),
        RadiusNeighborsClassifier(radius=3.0, metric="manhattan").fit(X, y),
        BisectingKMeans(n_clusters=3, random_state=0).fit(X),
        FeatureAgglomeration(n_clusters=2).fit(X),
        OneHotEncoder().fit(cats),
        PolynomialFeatures(degree=2).fit(X),
        SplineTransformer(n_knots=3).fit(X),
        SparseRandomProjection(n_components=2, random_state=0).fit(X),
        DictVectorizer(sparse=False).fit([{"a": 1, "b": 2}, {"c": 3}]),
    ]


class _Reduced:
    """Pickles as the (mutated) reduce tuple it holds."""

    def __init__(self, rv: tuple[Any, ...]) -> None:
        self.rv = rv

    def __reduce__(self) -> tuple[Any, ...]:
        return self.rv


def _mutate_value(rnd: random.Random, v: Any, depth: int) -> Any:
    import numpy as np

    if depth > 6:
        return v
    if isinstance(v, np.ndarray) and rnd.random() < 0.5:
        roll = rnd.random()
        if roll < 0.3 and v.size and v.dtype.kind in "iuf":
            out = v.copy()
            flat = out.reshape(-1)
            for _ in range(rnd.randrange(1, 4)):
                flat[rnd.randrange(flat.size)] = rnd.choice(
                    [-1, -2, 0, 1, 10**6, flat.size, flat.size + 1, -(2**31)]
                )
            return out
        if roll < 0.3 and v.size and v.dtype.names:
            out = v.copy()
            name = rnd.choice(v.dtype.names)
            if out[name].dtype.kind in "iuf":
                out[name][rnd.randrange(out.size)] = rnd.choice(
                    [-1, -2, 0, 10**6, out.size, 2**31 - 1]
                )
            return out
        if roll < 0.45:
            return v.reshape(-1)[: rnd.randrange(0, max(v.size, 1))]
        if roll < 0.55:
            return (
                v.astype(rnd.choice(["f4", "i4", "i8", "u1", "f8", "O"]))
                if v.dtype.names is None
                else v
            )
        if roll < 0.65:
            return np.asfortranarray(v.reshape(v.shape[::-1]) if v.ndim == 2 else v)
        if roll < 0.75:
            return np.zeros(0, dtype=v.dtype)
        return v
    if type(v) is int and rnd.random() < 0.3:
        return rnd.choice([v + 1, v - 1, 0, -1, 2**31, 10**9, 624, 625])
    if isinstance(v, dict):
        out = {k: _mutate_value(rnd, x, depth + 1) for k, x in v.items()}
        if out and rnd.random() < 0.1:
            out.pop(rnd.choice(list(out)))
        return out
    if isinstance(v, tuple):
        return tuple(_mutate_value(rnd, x, depth + 1) for x in v)
    if isinstance(v, list):
        return [_mutate_value(rnd, x, depth + 1) for x in v[:50]]
    if (
        hasattr(v, "__reduce_ex__")
        and not isinstance(v, (str, bytes, float, type))
        and rnd.random() < 0.6
    ):
        try:
            rv = v.__reduce_ex__(2)
        except Exception:  # noqa: BLE001 - objects that refuse to pickle stay as they are
            return v
        if isinstance(rv, tuple) and len(rv) >= 2:
            parts = list(rv)
            parts[1] = _mutate_value(rnd, parts[1], depth + 1)
            if len(parts) > 2:
                parts[2] = _mutate_value(rnd, parts[2], depth + 1)
            return _Reduced(tuple(parts[:5]))
    return v


def semantic(rnd: random.Random, obj: Any) -> bytes:
    """A real object whose reduce arguments and states (arrays, counts, indices, nested
    objects) are mutated, pickled by the real pickler: well-formed streams, wrong contents."""
    try:
        return pickle.dumps(_mutate_value(rnd, obj, 0), protocol=rnd.choice([2, 4, 5]))
    except Exception:  # noqa: BLE001 - a mutation the pickler itself refuses
        return pickle.dumps(obj, protocol=2)


def mutate(rnd: random.Random, data: bytes) -> bytes:
    """Flip, overwrite or retarget bytes of a real pickle (ints in node arrays, lengths, flags)."""
    b = bytearray(data)
    for _ in range(rnd.randrange(1, 6)):
        if not b:
            break
        i = rnd.randrange(len(b))
        roll = rnd.random()
        if roll < 0.4:
            b[i] = rnd.randrange(256)
        elif roll < 0.7:
            val = rnd.choice([0, 1, 2, 255, 0x7F, 0x80])
            b[i : i + 4] = bytes([val] * 4)
        else:
            b[i : i + 8] = struct.pack("<q", rnd.choice([-1, -2, 10**6, 2**40, 3, 0]))
    return bytes(b)


# -- the worker: load, then use ---------------------------------------------------------------------


def use(obj: Any, depth: int = 0) -> None:
    """Touch a loaded object the way a program would."""
    import numpy as np

    if depth > 3:
        return
    repr(obj)
    if isinstance(obj, np.ndarray):
        if obj.size < 10**6:
            obj.tolist()
            if obj.dtype.kind != "O":
                obj.sum()
        return
    if isinstance(obj, np.dtype):
        np.zeros(2, obj)
        return
    if hasattr(obj, "toarray") and hasattr(obj, "shape"):
        obj.toarray()
        obj @ np.ones(obj.shape[1])
        return
    if isinstance(obj, (np.random.RandomState, np.random.Generator)):
        obj.random(5)
        return
    if hasattr(obj, "query") and hasattr(obj, "data"):
        d = np.asarray(obj.data).shape[1]
        obj.query(np.zeros((2, d)), k=1)
        return
    n_features = getattr(obj, "n_features_in_", None)
    if hasattr(obj, "predict") and isinstance(n_features, int) and 0 < n_features < 10_000:
        obj.predict(np.random.RandomState(0).rand(5, n_features))
    elif hasattr(obj, "transform") and isinstance(n_features, int) and 0 < n_features < 10_000:
        obj.transform(np.random.RandomState(0).randint(0, 3, size=(5, n_features)).astype(float))
    if isinstance(obj, (list, tuple)):
        for item in obj[:10]:
            use(item, depth + 1)
    elif isinstance(obj, dict):
        for item in list(obj.values())[:10]:
            use(item, depth + 1)


def worker(folder: Path) -> None:
    """Load every ``case-N.pkl`` in ``folder`` in order, reporting progress on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    import sklearn  # noqa: F401 - import before the first case, so timing covers loads only

    from modelstore.errors import ModelstoreError
    from modelstore.security.joblibfile import load_file

    start = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    count = len(list(folder.glob("case-*.pkl")))
    log = open(folder / "progress.log", "a", buffering=1)  # noqa: SIM115 - line-buffered for the parent
    for n in range(start, count):
        path = folder / f"case-{n}.pkl"
        log.write(f"start {n}\n")
        try:
            obj = (
                pickle.loads(path.read_bytes())
                if os.environ.get("FUZZ_NAIVE")
                else load_file(path, [])
            )
        except ModelstoreError:
            log.write(f"refused {n}\n")
            continue
        except Exception as e:  # noqa: BLE001 - a foreign exception is a finding
            log.write(f"foreign {n} {type(e).__name__}: {str(e)[:200]!r}\n")
            continue
        try:
            use(obj)
        except Exception:  # noqa: BLE001 - a Python-level error while using a weird object is fine
            pass
        log.write(f"loaded {n}\n")


def generate(folder: Path, count: int, seed: int) -> None:
    from modelstore.security.policy import GENERAL

    rnd = random.Random(seed)
    composer = Composer(rnd, GENERAL.entries())
    objects = real_objects()
    reals = [pickle.dumps(o, protocol=p) for o in objects for p in (2, 4)]
    for n in range(count):
        roll = rnd.random()
        if roll < 0.4:
            data = composer.stream()
        elif roll < 0.55:
            data = mutate(rnd, rnd.choice(reals))
        else:
            data = semantic(rnd, rnd.choice(objects))
        (folder / f"case-{n}.pkl").write_bytes(data)


def run(
    folder: Path, count: int, seed: int = 0, case_timeout: float = 20.0
) -> dict[str, list[str]]:
    """Generate ``count`` cases and load them in worker processes; returns the findings."""
    generate(folder, count, seed)
    findings: dict[str, list[str]] = {"signal": [], "hang": [], "foreign": []}
    stats = {"refused": 0, "loaded": 0}
    start = 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = folder / "progress.log"
    log.write_text("")
    seen = 0
    while start < count:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.security.pickle_fuzz", "worker", str(folder), str(start)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        current, last = start, time.monotonic()
        while True:
            time.sleep(0.05)
            lines = log.read_text().splitlines()
            if len(lines) > seen:
                last = time.monotonic()
                for line in lines[seen:]:
                    word, _, rest = line.partition(" ")
                    num = int(rest.split(" ")[0])
                    if word == "start":
                        current = num
                    elif word in stats:
                        stats[word] += 1
                    elif word == "foreign":
                        findings["foreign"].append(f"case {num}: {rest}")
                seen = len(lines)
            if proc.poll() is not None:
                if proc.returncode != 0:
                    findings["signal"].append(f"case {current}: exit {proc.returncode}")
                    start = current + 1
                else:
                    start = count
                break
            if time.monotonic() - last > case_timeout:
                proc.kill()
                proc.wait()
                findings["hang"].append(f"case {current}: no progress in {case_timeout} s")
                start = current + 1
                break
    findings["stats"] = [f"{k}={v}" for k, v in stats.items()]
    return findings


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(Path(sys.argv[2]))
    elif sys.argv[1] == "run":
        import tempfile

        n = int(sys.argv[2])
        seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = run(Path(tmp), n, seed)
            for kind, items in result.items():
                print(kind, len(items) if kind != "stats" else items)
                for item in items[:20] if kind != "stats" else []:
                    print("   ", item)
            print(f"{n} cases in {time.perf_counter() - t:.0f} s")

"""The joblib format written by the C pickler (modelstore/formats/sklearn/fastdump.py).

Every structure here is written by ``fastdump`` (never by the fallback unless the test says
so) and then held to three things: ``joblib.load`` of it gives what ``joblib.load`` of
``joblib.dump``'s file gives (also memory-mapped), the description recorded while writing
is what the static scan of the file reads (``inspect``), and the gated loader reads it.
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import enum
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")

import modelstore as ms  # noqa: E402
from modelstore.formats.sklearn import describe, fastdump, writer  # noqa: E402


class Holder:
    """A plain object: state in ``__dict__``."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class Called:
    """Pickled as a call with the array as its argument (the walker does not go there)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> Any:
        return (Called, (self.value,))


class Key:
    """A hashable object holding an array: as a dict key or set member."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return self is other


class Items(list):  # type: ignore[type-arg]
    """A list subclass: its items come as the reduction's list items."""


class Both(dict):  # type: ignore[type-arg]
    """Dict items and a state: joblib writes the items before the state."""


def same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Deep equality of two loaded graphs (arrays by dtype, shape and bytes). Which objects
    are shared is not compared: joblib itself does not keep arrays shared, and a dtype
    pickled once per wrapper is one object per array after loading."""
    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return True  # already being compared (a cycle)
    if type(a) is not type(b):
        return False
    seen.add((id(a), id(b)))
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.f_contiguous == b.flags.f_contiguous
            and (
                a.tobytes() == b.tobytes()
                if not a.dtype.hasobject
                else same(a.tolist(), b.tolist(), seen)
            )
        )
    if isinstance(a, dict):
        pairs = zip(a.items(), b.items())
        return (
            len(a) == len(b)
            and all(same(p, q, seen) for p, q in pairs)
            and (not hasattr(a, "__dict__") or same(vars(a), vars(b), seen))
        )
    if isinstance(a, (list, tuple)):
        return (
            len(a) == len(b)
            and all(same(x, y, seen) for x, y in zip(a, b))
            and (not hasattr(a, "__dict__") or same(vars(a), vars(b), seen))
        )
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b)
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, (int, float, complex, str, bytes, bytearray, type, np.generic, np.dtype)):
        return bool(a == b)
    if callable(a) and not hasattr(a, "__dict__"):
        return a is b
    if hasattr(a, "__dict__"):  # estimators and plain objects
        return same(vars(a), vars(b), seen)
    return same(a.__reduce_ex__(4)[1:], b.__reduce_ex__(4)[1:], seen)  # Cython trees


def fast(obj: Any, path: Path, protocol: int = 4) -> Any:
    """Write ``obj`` with fastdump (a Fallback fails the test); the record."""
    with open(path, "wb") as raw, writer.HashingFile(raw) as out:
        return fastdump.dump(obj, out, protocol)


def check(obj: Any, tmp_path: Path, protocol: int = 4, exact: bool = True) -> None:
    path, raw = tmp_path / "fast.joblib", tmp_path / "raw.joblib"
    rec = fast(obj, path, protocol)
    joblib.dump(obj, raw, protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix
        assert same(joblib.load(path), joblib.load(raw))
        assert same(joblib.load(path, mmap_mode="r"), joblib.load(raw, mmap_mode="r"))
    assert rec.exact is exact
    if exact:
        got = describe.inspection(rec)
        scanned = ms.inspect(path)
        assert repr(got.tensors) == repr(scanned.tensors)
        assert got.globals == scanned.globals
        assert repr(got.extra_metadata) == repr(scanned.metadata)


def arrays(tmp: Path) -> dict[str, Any]:
    rng = np.random.RandomState(0)
    base = rng.rand(6, 5)
    mm = np.memmap(tmp / "mm.dat", dtype="float32", mode="w+", shape=(3, 4))
    mm[:] = 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.matrix([[1, 2], [3, 4]])
    return {
        "c": base,
        "f": np.asfortranarray(base),
        "view": base[::2, 1:4],
        "empty": np.zeros((0, 3)),
        "scalar": np.array(3.5),
        "big_endian": np.arange(7, dtype=">i4"),
        "structured": np.zeros(4, dtype=[("a", "<i8"), ("b", "<f4", (2,))]),
        "datetime": np.array(["2026-12-03", "2020-01-01"], dtype="datetime64[D]"),
        "bools": np.array([True, False, True]),
        "complex": np.array([1 + 2j, 3j]),
        "text": np.array(["alpha", "beta"]),
        "matrix": matrix,
        "memmap": mm,
        "large": rng.rand(300, 300),  # 720 KB: more than a frame
    }


def _cycle(a: dict[str, Any]) -> Any:
    lst: list[Any] = [a["f"]]
    lst.append(lst)
    lst.append(a["c"])
    return lst


def _shared(a: dict[str, Any]) -> Any:
    inner = [a["f"], {"deep": a["view"]}]
    return {"a": inner, "b": inner, "c": (inner, a["c"])}


STRUCTURES: dict[str, Any] = {
    "arrays in a dict": lambda a: a,
    "one array twice": lambda a: {"x": a["c"], "y": [a["c"], a["c"]], "z": (a["f"], a["f"])},
    "array as root": lambda a: a["c"],
    "array in a call's arguments": lambda a: {"call": Called(a["c"]), "after": a["f"]},
    "array under a dict key": lambda a: {Key(a["c"]): a["f"], "n": a["view"]},
    "array in a set member": lambda a: {"set": {Key(a["c"])}, "after": a["f"]},
    "ordered dict": lambda a: collections.OrderedDict([("p", a["c"]), ("q", [a["f"]])]),
    "list subclass": lambda a: Items([a["c"], Holder(w=a["f"])]),
    "objects": lambda a: Holder(inner=Holder(w=a["c"], b=a["structured"]), ws=[a["large"]]),
    "big payloads between arrays": lambda a: [
        b"x" * 70_000,
        a["c"],
        "y" * 70_000,
        bytearray(b"z" * 70_000),
        b"w" * 70_000,
        a["f"],
        b"v" * 65_536,
        b"u" * 65_536,
    ],
    "self-referencing list": lambda a: _cycle(a),
    "shared containers": lambda a: _shared(a),
    "numpy scalars and dtypes": lambda a: {
        "s": np.float64(2.5),
        "i": np.int64(3),
        "t": np.dtype("f4"),
        "arr": a["c"],
    },
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_structures(tmp_path: Path, name: str) -> None:
    check(STRUCTURES[name](arrays(tmp_path)), tmp_path, exact=name != "array as root")


def test_protocol_5(tmp_path: Path) -> None:
    check(STRUCTURES["objects"](arrays(tmp_path)), tmp_path, protocol=5)


def test_items_and_state_written_but_not_described(tmp_path: Path) -> None:
    both = Both(k=arrays(tmp_path)["c"])
    both.extra = arrays(tmp_path)["f"]  # type: ignore[attr-defined]
    check(both, tmp_path, exact=False)


def test_object_arrays_written_but_not_described(tmp_path: Path) -> None:
    check(
        {"o": np.array(["a", 1, None], dtype=object), "c": arrays(tmp_path)["c"]},
        tmp_path,
        exact=False,
    )


def _random_structure(rng: random.Random, a: dict[str, Any], depth: int = 0) -> Any:
    pick = rng.randrange(10 if depth < 4 else 4)
    if pick == 0:
        return a[rng.choice(sorted(a))]
    if pick == 1:
        return rng.choice([1, -5, 2**70, 2.5, "s", b"b", None, True, "t" * rng.randrange(200)])
    if pick == 2:
        return rng.choice([np.float32(1), np.int16(2), np.dtype("i2")])
    if pick == 3:
        return b"p" * rng.choice([10, 65_536, 100_000])
    n = rng.randrange(4)
    kids = [_random_structure(rng, a, depth + 1) for _ in range(n)]
    if pick == 4:
        return {f"k{i}": kid for i, kid in enumerate(kids)}
    if pick == 5:
        return kids
    if pick == 6:
        return tuple(kids)
    if pick == 7:
        return Holder(**{f"a{i}": kid for i, kid in enumerate(kids)})
    if pick == 8:
        return collections.OrderedDict((i, kid) for i, kid in enumerate(kids))
    return Called(kids)


@pytest.mark.parametrize("seed", range(40))
def test_random_structures(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    a = arrays(tmp_path)
    check([_random_structure(rng, a) for _ in range(6)], tmp_path)


def test_chunked_writes_reach_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C pickler hands over whole frames; the sink also copes with any split of them."""
    obj = STRUCTURES["big payloads between arrays"](arrays(tmp_path))
    fast(obj, tmp_path / "whole.joblib")
    write = fastdump._Sink.write
    rng = random.Random(0)

    def in_pieces(self: Any, data: Any) -> int:
        data = bytes(data)
        while data:
            k = rng.randrange(1, 40)
            write(self, data[:k])
            data = data[k:]
        return 0

    monkeypatch.setattr(fastdump._Sink, "write", in_pieces)
    fast(obj, tmp_path / "pieces.joblib")
    assert (tmp_path / "pieces.joblib").read_bytes().count(b"\x95") >= 1
    assert same(joblib.load(tmp_path / "pieces.joblib"), joblib.load(tmp_path / "whole.joblib"))


def test_the_tag_found_where_no_array_was_placed_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model bytes that happen to hold the tokens' tag: the save is written by joblib's own
    pickler instead (a wrong split would corrupt the file)."""
    base, tail = fastdump._token_base()
    monkeypatch.setattr(fastdump, "_token_base", lambda: (base, tail))
    from sklearn.linear_model import LogisticRegression

    x = np.random.RandomState(0).rand(20, 3)
    obj = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    obj.trap = fastdump._marker(base, 0)  # type: ignore[attr-defined]
    with pytest.raises(fastdump.Fallback):
        fast(obj, tmp_path / "m.joblib")
    raw = tmp_path / "raw.joblib"
    joblib.dump(obj, raw)
    path = tmp_path / "saved.joblib"
    info = ms.save(obj, path)
    assert path.read_bytes() == raw.read_bytes()  # joblib's own pickler wrote it
    assert dataclasses.asdict(info) == dataclasses.asdict(ms.inspect(path))


def _local_function() -> Any:
    def inner(v: Any) -> Any:
        return v

    return inner


@pytest.mark.parametrize(
    "part",
    [lambda: lambda v: v, lambda: __import__("threading").Lock(), _local_function],
    ids=["lambda", "lock", "local function"],
)
def test_unpicklable_models_fail_as_joblib_fails(tmp_path: Path, part: Any) -> None:
    """What joblib.dump cannot pickle, ms.save refuses with an UnsupportedModelError that
    names the file and what to change; a model saved there before is left as it was."""
    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(10, 2)
    model = LinearRegression().fit(x, x[:, 0])
    path = tmp_path / "m.joblib"
    ms.save(model, path)
    side = tmp_path / "m.joblib.modelstore.json"
    before, side_before = path.read_bytes(), side.read_bytes()
    model.hook = part()  # type: ignore[attr-defined]
    with pytest.raises(Exception):
        joblib.dump(model, tmp_path / "raw.joblib")
    with pytest.raises(ms.UnsupportedModelError) as ours:
        ms.save(model, path, overwrite=True)
    assert str(path) in str(ours.value) and "cannot be pickled" in str(ours.value)
    assert path.read_bytes() == before and side.read_bytes() == side_before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_every_scikit_learn_estimator(tmp_path: Path, shared_tmp: Path) -> None:
    """The zoo: written by fastdump, loaded by joblib and by the gated loader with the same
    outputs, described as the scan reads it (object arrays aside: scanned instead)."""
    from tests.sklearn_zoo import fitted_once, outputs

    described = 0
    with warnings.catch_warnings():  # (deprecated estimators, the pickle warning)
        warnings.simplefilter("ignore")
        for name, est, x in fitted_once(shared_tmp):
            path = tmp_path / "m.joblib"
            rec = fast(est, path)
            want = outputs(est, x)
            for loaded in (joblib.load(path), ms.load(path)):
                got = outputs(loaded, x)
                assert [m for m, _ in got] == [m for m, _ in want], name
                for (_, g), (_, w) in zip(got, want):
                    assert np.array_equal(g, w, equal_nan=g.dtype.kind in "fc"), name
            if rec.exact:
                described += 1
                ours, scanned = describe.inspection(rec), ms.inspect(path)
                assert repr(ours.tensors) == repr(scanned.tensors), name
                assert ours.globals == scanned.globals, name
                assert repr(ours.extra_metadata) == repr(scanned.metadata), name
    assert described > 150


def test_loading_is_gated(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.random.RandomState(0).rand(20, 3)
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    path = tmp_path / "m.joblib"
    fast(model, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (ms.load(path).predict(x) == model.predict(x)).all()


def test_wrappers_are_memoised_as_joblib_writes_them(tmp_path: Path) -> None:
    """Each wrapper is pickled by the main pickler, so a forest's node dtype is written once
    and referenced after (a wrapper pickled on its own per array made the file larger and
    its load ~2x slower: a structured dtype built again for every node array)."""
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.RandomState(0).rand(60, 4)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, x[:, 0] > 0.5)
    fast(forest, tmp_path / "fast.joblib")
    joblib.dump(forest, tmp_path / "raw.joblib")
    ours, theirs = (tmp_path / "fast.joblib").read_bytes(), (tmp_path / "raw.joblib").read_bytes()
    assert len(ours) <= len(theirs) * 1.05  # a memo slot and a frame header per array
    assert ours.count(b"left_child") == theirs.count(b"left_child") == 1


# -- found by a red-team pass over fastdump -------------------------------------------------------


class Resets:
    """Pickling it changes another object's array in place (after copying it)."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def __getstate__(self) -> Any:
        state = {"buf": self.buf.copy()}
        self.buf[:] = 0
        return state


def test_an_array_changed_after_it_was_met_is_written_as_it_was(tmp_path: Path) -> None:
    """Array bytes reach the file a frame later than the pickler meets the array: a change in
    between is caught (fingerprints) and the save is written again by joblib's own pickler."""

    def make() -> Any:
        buf = np.arange(1.0, 6.0)
        return {"snapshot": buf, "resets": Resets(buf)}

    with pytest.raises(fastdump.Fallback):
        fast(make(), tmp_path / "fast.joblib")
    model = make()
    assert fastdump.save(model, tmp_path / "m.joblib", None) is not None
    # joblib's pickler wrote the model as it was by then: the first attempt's __getstate__
    # had run (as it would have for a second joblib.dump), and nothing is half-written
    assert joblib.load(tmp_path / "m.joblib")["snapshot"].tolist() == model["snapshot"].tolist()


def test_the_digest_is_of_the_bytes_written_not_of_the_model_after(tmp_path: Path) -> None:
    """The sha256 thread may still be hashing after the save returns: it gets copies, so
    changing the model right after saving does not change the reported digest."""
    import hashlib

    weights = [np.ones(2_000_000) for _ in range(8)]  # 8 x 16 MB
    dumped = fastdump.save({"w": weights}, tmp_path / "m.joblib", None)
    assert dumped is not None
    for w in reversed(weights):
        w[:] = 2.0
    assert dumped.sha256() == hashlib.sha256((tmp_path / "m.joblib").read_bytes()).hexdigest()


class Meta(type):
    pass


def _rebuild_meta(name: str) -> Any:
    return Meta(name, (), {})


def test_a_class_reduced_through_copyreg_is_not_recorded_by_name(tmp_path: Path) -> None:
    copyreg.pickle(Meta, lambda cls: (_rebuild_meta, (cls.__name__,)))
    try:
        made = Meta("Made", (), {})
        path = tmp_path / "m.joblib"
        rec = fast({"cls": made, "w": np.arange(3.0)}, path)
        assert rec.exact and rec.globals
        assert list(rec.globals) == ms.inspect(path).globals
    finally:
        copyreg.dispatch_table.pop(Meta)


def _set_state(obj: Any, state: Any) -> None:
    obj.__dict__.update(state)


class WithSetter:
    def __init__(self) -> None:
        self.w = np.arange(12.0).reshape(3, 4)

    def __reduce__(self) -> Any:
        return (WithSetter.__new__, (WithSetter,), self.__dict__, None, None, _set_state)


class PassesItsData:
    """Its data goes to the constructor and stays in its state (one memo reference)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        return (PassesItsData, (self.data,), self.__dict__)


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("name", "make", "exact"),
    [
        ("state setter", lambda: WithSetter(), False),
        ("data in arguments and state", lambda: {"t": PassesItsData({"w": np.arange(4.0)})}, False),
        ("np.str_ key", lambda: {np.str_("k"): np.arange(3.0)}, True),
        ("IntEnum key", lambda: {Color.RED: np.arange(3.0)}, True),
        ("np.str_ attribute", lambda: Holder(**{"a": 1, str(np.str_("b")): 2}), True),
    ],
)
def test_descriptions_the_scan_reads_differently(
    tmp_path: Path, name: str, make: Any, exact: bool
) -> None:
    check(make(), tmp_path, exact=exact)


@pytest.mark.parametrize(
    ("make", "exact"),
    [
        (lambda: WithSetter(), False),
        (lambda: {np.str_("k"): np.arange(3.0)}, True),
        (lambda: {Color.RED: np.arange(3.0)}, True),
    ],
    ids=["state setter", "np.str_ key", "IntEnum key"],
)
def test_the_fallback_writer_describes_them_as_the_scan_does(
    tmp_path: Path, make: Any, exact: bool
) -> None:
    path = tmp_path / "m.joblib"
    dumped = writer.dump(make(), path, 4)
    assert dumped is not None
    assert (dumped.recorded is not None) is exact
    if dumped.recorded is not None:
        ours, scanned = describe.inspection(dumped.recorded), ms.inspect(path)
        assert repr(ours.tensors) == repr(scanned.tensors)
        assert repr(ours.extra_metadata) == repr(scanned.metadata)


# -- found by a second red-team pass ---------------------------------------------------------------


def _two_hops(a: dict[str, Any]) -> Any:
    inner = [a["c"]]
    outer = [inner]
    return {"a": Called(inner), "b": Called(outer), "c": outer}


def _recursive_tuple(a: dict[str, Any]) -> Any:
    lst: list[Any] = []
    t = (lst, a["c"])
    lst.append(t)
    return {"t": t, "after": a["f"]}


@pytest.mark.parametrize(
    ("name", "make", "exact"),
    [
        ("arrays reached from a call argument through two memo hops", _two_hops, False),
        ("a tuple that holds itself", _recursive_tuple, False),
        (
            "empty and dotted keys",
            lambda a: {"x": {"": a["c"]}, "": {"y": a["f"]}, ".": {"y.": a["view"]}},
            True,
        ),
    ],
)
def test_more_descriptions(tmp_path: Path, name: str, make: Any, exact: bool) -> None:
    check(make(arrays(tmp_path)), tmp_path, exact=exact)


@pytest.mark.parametrize("writer_name", ["fastdump", "writer"])
def test_a_large_bytearray_is_hashed_as_written(tmp_path: Path, writer_name: str) -> None:
    """Protocol 5 writes a bytearray's own buffer: the hashing thread gets a copy."""
    import hashlib

    blob = bytearray(b"a" * 3_000_000)
    path = tmp_path / "m.joblib"
    save = fastdump.save if writer_name == "fastdump" else writer.dump
    dumped = save({"blob": blob, "w": np.arange(3.0)}, path, 5)
    assert dumped is not None
    blob[:] = b"b" * len(blob)
    assert dumped.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_zero_size_items_fail_as_joblib_fails(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(10, 2)
    model = LinearRegression().fit(x, x[:, 0])
    model.empty_ = np.zeros(3, dtype=[])  # type: ignore[attr-defined]
    with pytest.raises(Exception) as raw:
        joblib.dump(model, tmp_path / "raw.joblib")
    with pytest.raises(Exception) as ours:
        ms.save(model, tmp_path / "m.joblib")
    assert type(ours.value) is type(raw.value)
    assert not (tmp_path / "m.joblib").exists()


@pytest.mark.parametrize("pad", [16, 17, 69])
def test_a_token_that_starts_a_frame(tmp_path: Path, pad: int) -> None:
    """The pickler may end a frame right after a wrapper's BUILD: the token then opens the
    next frame, and the array's bytes go between the two (no fallback)."""
    obj = [b"q" * (pad + 1)] + [{"k": np.arange(i % 5 + 1.0)} for i in range(1500)]
    rec = fast(obj, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    assert loaded[0] == obj[0]
    assert all(np.array_equal(u["k"], v["k"]) for u, v in zip(loaded[1:], obj[1:]))
    assert repr(describe.inspection(rec).tensors) == repr(ms.inspect(tmp_path / "m.joblib").tensors)


def test_a_memory_mapped_model_saves_to_a_file_the_gate_reads(tmp_path: Path) -> None:
    """A model loaded with mmap_mode holds memmaps; joblib records their class, which the
    gate refuses (numpy.memmap opens files). ms.save records them as the ndarrays they are,
    which is what joblib.load hands back for either."""
    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(20, 3)
    model = LinearRegression().fit(x, x[:, 0])
    model.table_ = np.arange(12.0).reshape(3, 4)  # type: ignore[attr-defined]
    joblib.dump(model, tmp_path / "raw.joblib")
    mapped = joblib.load(tmp_path / "raw.joblib", mmap_mode="r")
    assert type(mapped.table_) is np.memmap
    ms.save(mapped, tmp_path / "m.joblib")
    assert ms.scan(tmp_path / "m.joblib").verdict == "safe"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = ms.load(tmp_path / "m.joblib")
    assert type(loaded.table_) is np.ndarray
    assert np.array_equal(loaded.table_, model.table_)
    assert np.array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("transposed", [False, True])
def test_joblib_files_holding_a_matrix_load(tmp_path: Path, transposed: bool) -> None:
    """joblib records an np.matrix's class with its bytes; numpy 2's joblib.load hands back
    an ndarray, and so does the gated loader (it used to refuse the file)."""
    from sklearn.linear_model import LinearRegression

    x = np.random.RandomState(0).rand(20, 3)
    model = LinearRegression().fit(x, x[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    model.extra_ = matrix.T if transposed else matrix  # type: ignore[attr-defined]
    joblib.dump(model, tmp_path / "raw.joblib")
    assert ms.scan(tmp_path / "raw.joblib").verdict == "safe"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = ms.load(tmp_path / "raw.joblib"), joblib.load(tmp_path / "raw.joblib")
    assert type(ours.extra_) is type(theirs.extra_)
    assert np.array_equal(ours.extra_, theirs.extra_)
    assert ours.extra_.flags.f_contiguous == theirs.extra_.flags.f_contiguous

"""Red team, issue 19 eighth round, third pass: copies of what the file stores once, and the
caller's trusted code running mid-stream.

- Allowed constructors (``list``, ``tuple``, ``dict``, ``bytes``, ``str``, ``deque``, ...)
  called over and over on one memo-shared argument: each call copies it, so 1.9 MB made
  15 GB. All copies of one load are charged to a budget of 32 times the stream read so far.
- A masked array's fill value became an array of the masked array's dtype: a 280-byte file
  made 7.6 GB (an item of 1.6 GB) and a memo-shared nested list 1.5 GB.
- A vectorizer's vocabulary was converted to an array before its values were checked: one
  list shared by every term was copied per term.
- With ``trust=[...]``: a trusted dict or list subclass's own ``__setitem__``/``extend`` and a
  trusted subclass of an estimator. Their code runs only after every check so far, and the
  subclass gets its library base's checks.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        yield


class _Call:
    """Pickles as ``func(arg)``; ``arg`` is memo-shared when the same object is given to several."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return (self.func, self.args)


@pytest.mark.parametrize(
    "func, arg",
    [
        (list, [None] * 100_000),
        (tuple, [None] * 100_000),
        (dict, dict.fromkeys(range(20_000))),
        (frozenset, list(range(20_000))),
        (bytearray, bytes(400_000)),
        (bytes, bytearray(400_000)),
    ],
)
def test_one_stored_object_copied_over_and_over_is_refused(
    tmp_path: Path, func: Any, arg: Any
) -> None:
    data = pickle.dumps([_Call(func, arg) for _ in range(2_000)], protocol=4)
    assert len(data) < 2 * len(pickle.dumps(arg, protocol=4)) + 2_000 * 8  # stored once
    path = tmp_path / "copies.pkl"
    path.write_bytes(data)
    with pytest.raises(ms.UnsafeModelError, match="copies more than 32 times"):
        ms.load(path)
    few = tmp_path / "few.pkl"  # a handful of copies, as real pickles make, loads
    few.write_bytes(pickle.dumps([_Call(func, arg) for _ in range(3)], protocol=4))
    assert len(ms.load(few)) == 3


def test_numpy_scalars_over_one_stored_buffer_are_charged(tmp_path: Path) -> None:
    """``numpy scalar(dtype, data)`` copies ``data``: 100 scalars of one memo-shared 16 MB
    buffer made 1.6 GB (red team, fourth pass; here 2,000 of 400 KB)."""
    from numpy._core.multiarray import scalar

    dtype, data = np.dtype("V400000"), bytes(400_000)
    many = pickle.dumps([_Call(scalar, dtype, data) for _ in range(2_000)], protocol=4)
    path = tmp_path / "scalars.pkl"
    path.write_bytes(many)
    with pytest.raises(ms.UnsafeModelError, match="copies more than 32 times"):
        ms.load(path)
    path.write_bytes(pickle.dumps([_Call(scalar, dtype, data)] * 1, protocol=4))
    assert ms.load(path)[0].nbytes == 400_000


def test_real_containers_load_under_the_copy_budget(tmp_path: Path) -> None:
    """Protocol 2 spells bytes as ``_codecs.encode`` calls and sets as ``set([...])``."""
    from collections import Counter, OrderedDict, deque

    value = {
        "set": set(range(50_000)),
        "frozen": frozenset(range(1000)),
        "bytes": bytes(range(256)) * 1000,
        "od": OrderedDict((str(i), i) for i in range(10_000)),
        "counter": Counter("abracadabra" * 1000),
        "deque": deque(range(10_000)),
    }
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        assert ms.load(path) == value


def test_a_masked_fill_value_is_one_plain_value(tmp_path: Path) -> None:
    from numpy.ma.core import _mareconstruct

    class Masked:
        def __init__(self, dtype: Any, fill: Any) -> None:
            self.dtype, self.fill = dtype, fill

        def __reduce__(self) -> Any:
            state = (1, (0,), self.dtype, False, b"", b"", self.fill)
            return (_mareconstruct, (np.ma.MaskedArray, np.ndarray, (0,), b"b"), state)

    huge = tmp_path / "huge.pkl"  # one item of 1.6 GB for the fill value
    huge.write_bytes(pickle.dumps([Masked(np.dtype("U400000000"), "x")], protocol=4))
    assert huge.stat().st_size < 400
    with pytest.raises(ms.UnsafeModelError, match="fill value"):
        ms.load(huge)
    row = [0.0] * 1000
    nested = tmp_path / "nested.pkl"  # a fill of 1000 x one memo-shared row
    nested.write_bytes(pickle.dumps([Masked(np.dtype("f8"), [row] * 1000)], protocol=4))
    with pytest.raises(ms.UnsafeModelError, match="fill value"):
        ms.load(nested)
    for m in (
        np.ma.masked_array([1.0, 2.0], mask=[1, 0], fill_value=-1.5),
        np.ma.masked_array(["a", "bc"], mask=[0, 1]),
        np.ma.masked_array(np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), mask=[(0, 1), (1, 0)]),
    ):
        _ = m.fill_value
        path = tmp_path / "real.pkl"
        path.write_bytes(pickle.dumps(m, protocol=4))
        loaded = ms.load(path)
        assert (loaded.filled() == m.filled()).all()


def test_a_vocabulary_of_shared_lists_is_refused_before_it_is_copied(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    est = CountVectorizer().fit(["apple bread cheese", "bread cheese dates"])
    shared = list(range(2_000))
    est.vocabulary_ = {f"t{i}": shared for i in range(2_000)}  # 4M items if converted
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(est, protocol=4))
    with pytest.raises(ms.UnsafeModelError, match="other than columns"):
        ms.load(path)


_PACKAGE = """
import numpy as np
from sklearn.tree import DecisionTreeClassifier

ONE = np.ones((3, 1))


class Registry(dict):  # the caller's own: warms each model up as it is added
    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        v.predict(ONE)


class Bag(list):
    def extend(self, items):
        super().extend(items)
        for m in items:
            m.predict(ONE)


class MyTree(DecisionTreeClassifier):
    pass
"""

_RUN = """
import pickle, site, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
site_dir, case, how, path = sys.argv[1:5]
sys.path.insert(0, site_dir)
_installed = site.getsitepackages
site.getsitepackages = lambda *a: _installed(*a) + [site_dir]  # as if pip-installed
import callerpkg
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

rng = np.random.default_rng(0)
x = rng.normal(size=(60, 1))
est = (callerpkg.MyTree if case == "subclass" else DecisionTreeClassifier)(max_depth=2)
est.fit(x, (x[:, 0] > 0).astype(int))
# alone the tree is fine (2**31 - 1 features, split on feature 2**31 - 2); with the
# estimator's 1 feature, predict reads far past each row: only the estimator check sees it
state = est.tree_.__getstate__()
nodes = state["nodes"].copy()
nodes["feature"][0] = (1 << 31) - 2
wide = Tree((1 << 31) - 1, np.array([2], dtype=np.intp), 1)
wide.__setstate__({**state, "nodes": nodes})
est.tree_ = wide
if case == "setitem":
    obj = callerpkg.Registry()
    dict.__setitem__(obj, "m", est)
elif case == "extend":
    obj = callerpkg.Bag()
    list.append(obj, est)
else:
    obj = est
data = pickle.dumps(obj, protocol=4)
if how == "pickle":
    pickle.loads(data).predict(callerpkg.ONE) if case == "subclass" else pickle.loads(data)
    print("loaded")
else:
    import modelstore as ms
    open(path, "wb").write(data)
    name = {"setitem": "Registry", "extend": "Bag", "subclass": "MyTree"}[case]
    try:
        ms.load(path, trust=["callerpkg." + name])
        print("loaded")
    except ms.UnsafeModelError as e:
        print("refused:", e)
"""


@pytest.mark.slow  # child processes
@pytest.mark.parametrize("case", ["setitem", "extend", "subclass"])
def test_trusted_subclasses_see_only_checked_models(tmp_path: Path, case: str) -> None:
    """The caller trusts its own class; the file's tree is wider than its estimator. The naive
    loader crashes (in the subclass case, at predict); ``ms.load`` refuses."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "callerpkg.py").write_text(textwrap.dedent(_PACKAGE))
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    run = [sys.executable, str(script), str(site_dir), case]
    naive = subprocess.run([*run, "pickle", "-"], capture_output=True, text=True, timeout=120)
    assert naive.returncode != 0 and "loaded" not in naive.stdout
    ours = subprocess.run(
        [*run, "ms", str(tmp_path / "f.pkl")], capture_output=True, text=True, timeout=120
    )
    assert ours.returncode == 0, ours.stderr
    assert "refused:" in ours.stdout and "features to a tree over" in ours.stdout, ours.stdout

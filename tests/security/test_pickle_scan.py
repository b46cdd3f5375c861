"""The static pickle reader on benign and malformed streams."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest

import modelstore as ms
from modelstore.security.pickle_scan import analyse

BENIGN = {
    "a": [1, 2.5, "x", b"\x00\x01", None, True],
    "b": (1, (2, 3)),
    "c": {1, 2},
    "d": frozenset({3}),
    "e": bytearray(b"zz"),
    "f": complex(1, 2),
    "g": list(range(300)),
}


@pytest.mark.parametrize("protocol", range(6))
def test_benign_pickles_of_every_protocol(tmp_path: Path, protocol: int) -> None:
    """Plain data pickled with protocols 0-5 scans safe and loads back equal."""
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=protocol))
    report = ms.scan(path)
    assert report.verdict == "safe", report.findings
    with pytest.warns(ms.PickleWarning):
        assert ms.load(path) == BENIGN


def test_numpy_objects_scan_safe(tmp_path: Path) -> None:
    """numpy arrays, scalars, dtypes and generators are on the allow-list (protocol 2 and 5)."""
    np = pytest.importorskip("numpy")
    obj = {
        "x": np.arange(6.0).reshape(2, 3),
        "s": np.int32(4),
        "d": np.dtype("U3"),
        "rng": np.random.default_rng(1),
        "rs": np.random.RandomState(2),
        "u": np.array(["ab", "c"]),
    }
    for protocol in (2, 5):
        path = tmp_path / f"np{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        assert ms.scan(path).verdict == "safe", ms.scan(path).findings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            out = ms.load(path)
        assert (out["x"] == obj["x"]).all() and out["s"] == 4


def test_memo_resolved_globals_are_reported() -> None:
    """STACK_GLOBAL names fetched from the memo are resolved statically."""
    data = pickle.dumps(pickle.loads, protocol=4)
    assert analyse(data).globals == ["_pickle.loads"]


def test_unknown_opcode_and_truncation(tmp_path: Path) -> None:
    """A stream with an opcode the reader does not know is refused; a cut stream is damage."""
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x04\xff.")
    assert ms.scan(path).verdict == "unknown"
    with pytest.raises(ms.IntegrityError, match="damaged"):
        ms.load(path)
    path.write_bytes(pickle.dumps(BENIGN, protocol=4)[:-7])
    with pytest.raises(ms.IntegrityError):
        ms.load(path)


def test_nested_deserialisers_are_refused_not_followed(tmp_path: Path) -> None:
    """pickle.loads inside a pickle is itself a refused global (an attack primitive): the
    inner bytes are never deserialised, by scan or load."""
    import os

    class R:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.getcwd, ())

    inner = pickle.dumps(R(), protocol=2)

    class Outer:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (pickle.loads, (inner,))

    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps(Outer(), protocol=2))
    report = ms.scan(path)
    assert report.verdict == "unsafe" and report.untrusted == ["pickle.loads"]
    with pytest.raises(ms.UnsafeModelError, match="attack"):
        ms.load(path)

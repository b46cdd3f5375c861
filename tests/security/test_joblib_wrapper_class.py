"""The class a joblib array record names (``NumpyArrayWrapper.subclass``): joblib writes
``numpy.ndarray``, ``numpy.matrix`` or ``numpy.memmap``. The loader accepts the first two
(compared by identity, then ignored: numpy 2's joblib.load returns an ndarray for all) and
the gate refuses the memmap class; ``scan`` says the same as ``load`` for each record
(before, it never looked at the class and called records "safe" that load refused)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402
from tests.hostile import P2, _g, _s  # noqa: E402


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _record(subclass: bytes, order: str = "C") -> bytes:
    """A wrapper for float64 [1.0, 2.0] (alignment 16) and its bytes, in a protocol 2 stream."""
    dtype = (
        _g("numpy", "dtype")
        + b"("
        + _s("f8")
        + b"\x89\x88tR("
        + _int(3)
        + _s("<")
        + b"NNN"
        + _int(-1)
        + _int(-1)
        + _int(0)
        + b"tb"
    )
    state = b"}(" + b"".join(
        [
            _s("subclass"),
            subclass,
            _s("shape"),
            b"(" + _int(2) + b"t",
            _s("order"),
            _s(order),
            _s("dtype"),
            dtype,
            _s("allow_mmap"),
            b"\x88",
            _s("numpy_array_alignment_bytes"),
            _int(16),
        ]
    )
    head = (
        P2 + b"]" + b"(" + _g("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + state + b"ub"
    )
    pad = 16 - (len(head) + 1) % 16
    return head + bytes([pad]) + b"\xff" * pad + np.array([1.0, 2.0]).tobytes() + b"e."


@pytest.mark.parametrize(
    ("name", "subclass", "order", "verdict"),
    [
        ("ndarray", _g("numpy", "ndarray"), "C", "safe"),
        ("matrix", _g("numpy", "matrix"), "F", "safe"),
        ("memmap", _g("numpy", "memmap"), "C", "unsafe"),
        ("masked array", _g("numpy.ma", "MaskedArray"), "C", "unsafe"),
        ("none", b"N", "C", "unsafe"),
        ("a string", _s("numpy.ndarray"), "C", "unsafe"),
        ("order K", _g("numpy", "ndarray"), "K", "unsafe"),
    ],
)
def test_scan_and_load_agree_on_the_records_class(
    tmp_path: Path, name: str, subclass: bytes, order: str, verdict: str
) -> None:
    path = tmp_path / "a.joblib"
    path.write_bytes(_record(subclass, order))
    assert ms.scan(path).verdict == verdict, ms.scan(path).findings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.PickleWarning)
        if verdict == "safe":
            (array,) = ms.load(path)
            assert type(array) is np.ndarray and array.tolist() == [1.0, 2.0]
        else:
            with pytest.raises(ms.UnsafeModelError):
                ms.load(path)

"""Red team, issue 19 thirteenth round: the gated joblib load's speed-ups (held) and a shape
check that a file could make slow.

One huge int, stored once (a LONG4) and repeated as all 32 dimensions of an array's shape
through the memo, made ``check_shape`` multiply 32 numbers of the file's chosen size before
comparing the product with the limit: a 262 KB file kept ``ms.load`` busy for 138 s, and the
refusal then failed to format the product (Python refuses to print an int of more than 4,300
digits), so it was reported as a damaged file. Now every dimension is bounded before anything
is multiplied.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("joblib")

import modelstore as ms  # noqa: E402


def _su(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _global(module: str, name: str) -> bytes:
    return _su(module) + _su(name) + b"\x93"


def _huge_shape(nbytes: int) -> bytes:
    """MARK, a positive LONG4 of ``nbytes`` bytes, MEMOIZE, 31 BINGETs of it, TUPLE."""
    huge = b"\x8b" + struct.pack("<i", nbytes) + b"\x7f" * nbytes
    return b"(" + huge + b"\x94" + b"h\x00" * 31 + b"t"


_DTYPE = (
    _global("numpy", "dtype")
    + _su("f8")
    + b"\x89\x88\x87R"
    + b"(K\x03"
    + _su("<")
    + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
)


def _pickled_array(shape: bytes) -> bytes:
    """``numpy.core.multiarray._reconstruct`` then BUILD with the shape, as numpy pickles."""
    return (
        b"\x80\x04"
        + _global("numpy._core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + b"K\x00\x85C\x01b\x87R"
        + b"(K\x01"
        + shape
        + _DTYPE
        + b"\x89C\x00tb."
    )


def _joblib_wrapper(shape: bytes) -> bytes:
    """joblib's NumpyArrayWrapper, its BUILD state naming the shape."""
    return (
        b"\x80\x04"
        + _global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + b")\x81}("
        + _su("subclass")
        + _global("numpy", "ndarray")
        + _su("shape")
        + shape
        + _su("order")
        + _su("C")
        + _su("dtype")
        + _DTYPE
        + _su("allow_mmap")
        + b"\x88ub."
    )


@pytest.mark.parametrize(
    ("suffix", "build"), [(".pkl", _pickled_array), (".joblib", _joblib_wrapper)]
)
def test_a_huge_dimension_repeated_is_refused_before_any_product(
    tmp_path: Path, suffix: str, build: object
) -> None:
    """An 8 KB int (about 19,700 digits) as all 32 dimensions: refused as crafted, naming the
    shape without printing the int (before: a "malformed pickle" damage report), and the
    joblib scanner refuses the record it cannot size (before: 14 s for a 64 KB int, then
    "damaged")."""
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(build(_huge_shape(8192)))  # type: ignore[operator]
    with pytest.raises(ms.UnsafeModelError, match=r"malformed shape \(<int>, <int>"):
        ms.load(path)
    # the joblib scanner sizes array records (it multiplied the same dimensions); a plain
    # pickle's array state is checked only when loading (docs/security.md)
    want = "unsafe" if suffix == ".joblib" else "safe"
    assert ms.scan(path).verdict == want


def test_shapes_at_the_limits_still_count() -> None:
    """Dimensions up to the element limit, and a zero anywhere, are shapes numpy accepts."""
    from modelstore.security.check_numpy_dtype import MAX_ELEMENTS, check_shape
    from modelstore.security.pickle_load import LoadState
    from modelstore.security.pickle_stream import Limits
    from modelstore.security.policy import GENERAL

    st = LoadState("f", GENERAL, frozenset(), Limits())
    assert check_shape(st, (MAX_ELEMENTS, 1), "a") == MAX_ELEMENTS
    assert check_shape(st, (MAX_ELEMENTS, MAX_ELEMENTS, 0), "a") == 0
    assert check_shape(st, (np.int64(3), 4), "a") == 12
    for bad in [(MAX_ELEMENTS + 1, 0), (np.uint64(MAX_ELEMENTS + 1),), (-1,), (2**200, -1)]:
        with pytest.raises(ms.UnsafeModelError, match="malformed shape"):
            check_shape(st, bad, "a")
    with pytest.raises(ms.UnsafeModelError, match="declares"):
        check_shape(st, (MAX_ELEMENTS, 2), "a")

"""NumPy .npy/.npz: plain arrays read without pickle; object arrays refused by default and, when
trusted by name, unpickled only through the allow-list; hostile files refused by every entry."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelstore as ms
from modelstore.formats.numpy.backend import OBJECT_ARRAYS
from modelstore.testing import run_python
from tests.hostile import Reduce, py_touch

A = np.arange(12, dtype=np.float32).reshape(3, 4)


def test_npy_and_npz_written_by_numpy(tmp_path: Path) -> None:
    """Files numpy wrote load bit-identical, as an array (.npy) or a dict (.npz)."""
    np.save(tmp_path / "a.npy", A)
    np.savez(tmp_path / "b.npz", x=A, y=np.arange(5))
    np.savez_compressed(tmp_path / "c.npz", x=A.astype(np.float16), z=np.zeros((0, 3)))
    np.testing.assert_array_equal(ms.load(tmp_path / "a.npy"), A)
    b = ms.load(tmp_path / "b.npz")
    assert list(b) == ["x", "y"] and b["x"].dtype == np.float32
    np.testing.assert_array_equal(b["y"], np.arange(5))
    c = ms.load(tmp_path / "c.npz")
    assert c["x"].dtype == np.float16 and c["z"].shape == (0, 3)
    info = ms.inspect(tmp_path / "b.npz")
    assert info.format == "numpy" and [(t.name, t.shape, t.dtype) for t in info.tensors] == [
        ("x", (3, 4), "float32"),
        ("y", (5,), "int64"),
    ]
    assert ms.scan(tmp_path / "c.npz").verdict == "safe"


def test_save_and_numpy_reads_it(tmp_path: Path) -> None:
    """ms.save writes .npy/.npz that numpy reads with pickle off; object arrays are not written."""
    ms.save(A, tmp_path / "a.npy", metadata={"note": "x"})
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), A)
    ms.save({"w": A, "b": A[0]}, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["b"], A[0])
    with pytest.raises(ms.UnsupportedModelError):
        ms.save(np.array([object()], dtype=object), tmp_path / "o.npy")
    with pytest.raises(ms.UnsupportedModelError):
        ms.save(A, tmp_path / "a.npz")  # one array is a .npy


def test_object_arrays_refused_then_trusted_by_name(tmp_path: Path) -> None:
    """An object array is refused by default; trust=[OBJECT_ARRAYS] unpickles it through the
    allow-list; scan and inspect say what it is."""
    obj = np.array(["a", 1, None, {"k": [1.5]}], dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    np.savez(tmp_path / "o.npz", x=A, o=obj)
    for name in ("o.npy", "o.npz"):
        path = tmp_path / name
        with pytest.raises(ms.UnsafeModelError, match=OBJECT_ARRAYS):
            ms.load(path)
        assert ms.scan(path).verdict == "unsafe"
        info = ms.inspect(path)
        assert info.executes_code and info.globals == [OBJECT_ARRAYS]
    got = ms.load(tmp_path / "o.npy", trust=[OBJECT_ARRAYS])
    assert got.dtype == object and got.tolist() == obj.tolist()
    both = ms.load(tmp_path / "o.npz", trust=[OBJECT_ARRAYS])
    np.testing.assert_array_equal(both["x"], A)
    assert both["o"].tolist() == obj.tolist()


# -- hostile files -------------------------------------------------------------------------


def _npy_bytes(arr: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _payload(marker: Path) -> Any:
    import builtins

    return np.array([Reduce(builtins.exec, py_touch(marker))], dtype=object)


def _hostile(tmp_path: Path, kind: str, marker: Path) -> Path:
    """Object arrays whose pickle calls exec; as .npy, and hidden in an .npz."""
    if kind == "npy":
        path = tmp_path / "evil.npy"
        path.write_bytes(_npy_bytes(_payload(marker)))
    else:
        path = tmp_path / "evil.npz"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("weights.npy", _npy_bytes(A))
            zf.writestr("labels.npy", _npy_bytes(_payload(marker)))
    return path


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_pickle_payload_refused_everywhere(tmp_path: Path, kind: str) -> None:
    """The payload fires under numpy's allow_pickle=True; modelstore refuses it from every entry
    point, even when object arrays are trusted by name (the global is still not allowed)."""
    marker = tmp_path / "fired"
    path = _hostile(tmp_path, kind, marker)
    proc = run_python(f"""
        import numpy as np
        d = np.load({str(path)!r}, allow_pickle=True)
        [d[k] for k in d.files] if hasattr(d, "files") else d
    """)
    assert marker.exists(), proc.stderr[-500:]
    marker.unlink()
    for trust in (False, [OBJECT_ARRAYS], [OBJECT_ARRAYS, "numpy.ndarray"]):
        with pytest.raises(ms.UnsafeModelError):
            ms.load(path, trust=trust)
    with pytest.raises(ms.UnsafeModelError):
        ms.predict(path, A)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and "builtins.exec" in report.globals
    ms.inspect(path)
    assert not marker.exists()


def _header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    text = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((1 << 40,), ms.IntegrityError),  # declares a terabyte, stores 16 bytes
        ((1 << 31, 1 << 31, 1 << 31), ms.UnsafeModelError),  # more elements than any real array
        ((-1,), ms.UnsafeModelError),  # a negative dimension
    ],
)
def test_headers_that_lie_about_sizes(
    tmp_path: Path, shape: tuple[int, ...], expected: type
) -> None:
    """A header declaring far more (or less) than is stored is refused before any allocation."""
    path = tmp_path / "big.npy"
    path.write_bytes(_header(shape) + b"\0" * 16)
    with pytest.raises(expected):
        ms.load(path)
    assert ms.scan(path).verdict in ("unsafe", "unknown")
    with pytest.raises(ms.ModelstoreError):
        ms.inspect(path)


def test_npz_with_other_members_or_duplicates(tmp_path: Path) -> None:
    """An .npz holding a non-.npy member (a pickle beside the arrays) or two members of one
    name is refused: readers could disagree on what it holds."""
    extra = tmp_path / "extra.npz"
    with zipfile.ZipFile(extra, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(A))
        zf.writestr("model.pkl", b"\x80\x04N.")
    dup = tmp_path / "dup.npz"
    with pytest.warns(UserWarning), zipfile.ZipFile(dup, "w") as zf:
        zf.writestr("x.npy", _npy_bytes(A))
        zf.writestr("x.npy", _npy_bytes(A * 2))
    for path in (extra, dup):
        with pytest.raises(ms.UnsafeModelError):
            ms.load(path)
        assert ms.scan(path).verdict == "unsafe"


def test_npz_bomb(tmp_path: Path) -> None:
    """A compressed member that inflates far beyond its size is refused by the zip reader."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", _npy_bytes(np.zeros(50_000_000, np.uint8)))
    with pytest.raises(ms.UnsafeModelError, match="decompression bomb"):
        ms.load(path)

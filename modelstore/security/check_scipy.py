"""Validators for scipy objects in models: sparse matrices and B-splines.

A sparse matrix pickles as its ``__dict__``; scipy's C++ kernels then index ``data`` with
``indices`` and ``indptr`` without checking them (a ``coef_`` with an index past its shape
crashes ``predict``). scipy's own ``check_format(full_check=True)`` is the check, run when
the load ends, plus type checks on the attributes it assumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ModelstoreError
from .check_numpy_dtype import _int

if TYPE_CHECKING:
    from .pickle_load import LoadState

_MAX_DIM = 1 << 40


def _shape_ok(shape: Any) -> bool:
    return (
        isinstance(shape, tuple)
        and len(shape) == 2
        and all(_int(d) and 0 <= int(d) < _MAX_DIM for d in shape)
    )


def _arrays_complete(st: LoadState, obj: Any, names: tuple[str, ...]) -> None:
    import numpy as np

    for name in names:
        value = obj.__dict__.get(name)
        if not isinstance(value, np.ndarray) or type(value) is not np.ndarray:
            raise st.refuse(f"a sparse matrix whose {name} is not an array")
        st.complete(value, "an array")


def check_sparse(st: LoadState, obj: Any) -> None:
    """Index arrays in range of the shape, lengths consistent: scipy's own full check."""
    import numpy as np

    d = obj.__dict__
    fmt = obj.format
    if not _shape_ok(d.get("_shape")):
        raise st.refuse("a sparse matrix with a malformed shape")
    try:
        if fmt in ("csr", "csc", "bsr"):
            _arrays_complete(st, obj, ("data", "indices", "indptr"))
            _check_compressed(st, obj, fmt)
        elif fmt == "coo":
            coords = d.get("coords")
            if not isinstance(coords, tuple) or len(coords) != 2:
                raise st.refuse("a COO matrix with malformed coordinates")
            _arrays_complete(st, obj, ("data",))
            for c in coords:
                if (
                    not isinstance(c, np.ndarray)
                    or c.dtype.kind != "i"
                    or c.shape != d["data"].shape
                ):
                    raise st.refuse("a COO matrix whose coordinates do not match its data")
                st.complete(c, "an array")
            obj._check()
            for c, n in zip(coords, d["_shape"]):
                if c.size and (c.min() < 0 or c.max() >= n):
                    raise st.refuse("a COO matrix with coordinates outside its shape")
        elif fmt == "dia":
            _arrays_complete(st, obj, ("data", "offsets"))
            data, offsets = d["data"], d["offsets"]
            if (
                data.ndim != 2
                or offsets.ndim != 1
                or offsets.dtype.kind != "i"
                or data.shape[0] != offsets.shape[0]
            ):
                raise st.refuse("a DIA matrix whose data and offsets disagree")
            if data.shape[1] > int(d["_shape"][1]):
                raise st.refuse("a DIA matrix whose diagonals are longer than its shape")
        elif fmt == "lil":
            _check_lil(st, obj)
        elif fmt == "dok":
            _check_dok(st, obj)
        else:
            raise st.refuse(f"a sparse matrix of unknown format {fmt!r}")
    except ModelstoreError:
        raise
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
        raise st.refuse(
            f"a sparse {fmt} matrix that fails scipy's own check ({str(e)[:120]})"
        ) from None


def _check_lil(st: LoadState, obj: Any) -> None:
    """LIL as plain Python, before any scipy code touches it: ``tocsr`` writes one length per
    entry of ``rows`` into an array sized by the shape (more rows than the shape overflows)."""
    import numpy as np

    d = obj.__dict__
    rows, data = d.get("rows"), d.get("data")
    n, m = (int(v) for v in d["_shape"])
    for name, arr in (("rows", rows), ("data", data)):
        if type(arr) is not np.ndarray or arr.dtype != object or arr.shape != (n,):
            raise st.refuse(f"a LIL matrix whose {name} is not one list per row of its shape")
        st.complete(arr, "an array")
    for r, v in zip(rows.tolist(), data.tolist()):
        if type(r) is not list or type(v) is not list or len(r) != len(v):
            raise st.refuse("a LIL matrix whose row indices and values disagree")
        last = -1
        for j in r:
            if type(j) is not int or not last < j < m:
                raise st.refuse(
                    "a LIL matrix whose column indices are out of order or outside its shape"
                )
            last = j
        if not all(_scalar(x) for x in v):
            raise st.refuse("a LIL matrix whose values are not numbers")


def _check_dok(st: LoadState, obj: Any) -> None:
    """DOK as plain Python: keys are (row, column) pairs inside the shape, values numbers."""
    entries = obj.__dict__.get("_dict")
    n, m = (int(v) for v in obj.__dict__["_shape"])
    if type(entries) is not dict:
        raise st.refuse("a DOK matrix without its entries")
    for key, value in entries.items():
        if not (
            type(key) is tuple
            and len(key) == 2
            and all(_int(i) for i in key)
            and 0 <= int(key[0]) < n
            and 0 <= int(key[1]) < m
            and _scalar(value)
        ):
            raise st.refuse("a DOK matrix with an entry outside its shape")


def _scalar(x: Any) -> bool:
    import numpy as np

    return type(x) in (int, float, bool, complex) or (
        isinstance(x, np.generic) and type(x).__module__ == "numpy"
    )


def _check_compressed(st: LoadState, obj: Any, fmt: str) -> None:
    """What scipy's C++ kernels assume of CSR/CSC/BSR, checked in full: scipy's own
    ``check_format`` skips its index checks when ``indptr[-1]`` is 0 and prunes first."""
    import numpy as np

    d = obj.__dict__
    data, indices, indptr = d["data"], d["indices"], d["indptr"]
    rows, cols = (int(v) for v in d["_shape"])
    if fmt == "bsr":
        if data.ndim != 3:
            raise st.refuse("a BSR matrix whose data are not blocks")
        r, c = data.shape[1], data.shape[2]
        if r < 1 or c < 1 or rows % r or cols % c:
            raise st.refuse("a BSR matrix whose blocks do not tile its shape")
        major, minor = rows // r, cols // c
    else:
        if data.ndim != 1:
            raise st.refuse("a sparse matrix whose data are not one-dimensional")
        major, minor = (rows, cols) if fmt == "csr" else (cols, rows)
    ok = (
        indices.dtype.kind == "i"
        and indptr.dtype.kind == "i"
        and indices.ndim == 1
        and indptr.ndim == 1
        and indptr.shape[0] == major + 1
        and indices.shape[0] == data.shape[0]
        and int(indptr[0]) == 0
        and int(indptr[-1]) == indices.shape[0]
        and bool(np.all(np.diff(indptr) >= 0))
        and (indices.size == 0 or (int(indices.min()) >= 0 and int(indices.max()) < minor))
    )
    if not ok:
        raise st.refuse(f"a sparse {fmt} matrix whose index arrays disagree with its shape or data")


def check_bspline(st: LoadState, obj: Any) -> None:
    """Knots, coefficients and degree as scipy's BSpline constructor requires them."""
    import numpy as np

    d = obj.__dict__
    t, c, k = d.get("_t", d.get("t")), d.get("_c", d.get("c")), d.get("k")
    if not (isinstance(t, np.ndarray) and isinstance(c, np.ndarray) and _int(k)):
        raise st.refuse("a B-spline without its knots, coefficients or degree")
    st.complete(t, "an array")
    st.complete(c, "an array")
    k = int(k)
    n = t.shape[0] - k - 1
    if not (
        t.ndim == 1
        and t.dtype == np.float64
        and t.flags.c_contiguous
        and 0 <= k < 64
        and n >= k + 1
        and c.ndim >= 1
        and c.shape[0] >= n
        and np.all(np.diff(t) >= 0)
        and _int(d.get("axis", 0))
        and 0 <= int(d.get("axis", 0)) < max(c.ndim, 1)
    ):
        raise st.refuse("a B-spline whose knots, coefficients and degree disagree")


def finals_for(obj: Any) -> list[Any]:
    module = type(obj).__module__
    if module.startswith("scipy.sparse."):
        return [check_sparse]
    if module == "scipy.interpolate._bsplines":
        return [check_bspline]
    return []

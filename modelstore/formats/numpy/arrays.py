"""Reading ``.npy`` headers and ``.npz`` members with checked arithmetic, without numpy's pickle.

An ``.npy`` file is a magic string, a header (a Python dict literal that numpy parses with
``ast.literal_eval`` under a size cap) and the raw data; an object array (``dtype('O')``) stores
a pickle instead of raw data. Here every header is parsed with numpy's own reader, its shape
checked (non-negative ints, a product that fits), and the bytes it declares compared with the
bytes really stored, so a tiny file cannot make the loader allocate gigabytes. An ``.npz`` is a
zip of ``.npy`` members, read by the strict zip reader first (one unambiguous archive, no
duplicates, no bombs, only ``*.npy`` members).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...security.zipcheck import ArchiveError, check_archive

#: numpy's own cap on a header's length (it refuses longer ones by default, too)
MAX_HEADER = 10_000
MAX_DIMS = 64
MAX_ELEMENTS = 1 << 48


class ArrayFileError(Exception):
    """Not a readable array file; ``kind``: "format", "damaged" or "suspicious"."""

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ArrayHeader:
    name: str
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype
    fortran: bool
    data_offset: int
    stored: int  # bytes after the header
    in_zip: bool = False

    @property
    def is_object(self) -> bool:
        return bool(self.dtype.hasobject)

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * int(self.dtype.itemsize)


def read_header(f: IO[bytes], name: str, size: int) -> ArrayHeader:
    """Parse one ``.npy`` header from ``f`` (``size`` bytes in all) and check it."""
    import numpy as np
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f, max_header_size=MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            reader = npformat.read_array_header_2_0
            shape, fortran, dtype = reader(f, max_header_size=MAX_HEADER)
        else:
            raise ArrayFileError(f"{name}: unknown .npy version {version}")
    except ArrayFileError:
        raise
    except (ValueError, TypeError, SyntaxError, OverflowError, MemoryError, RecursionError) as e:
        raise ArrayFileError(f"{name}: not a readable .npy header ({str(e)[:200]})") from None
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise ArrayFileError(
            f"{name}: the header declares an invalid shape {str(shape)[:100]}", "suspicious"
        )
    n = 1
    for d in shape:
        n *= d
    if n > MAX_ELEMENTS:
        raise ArrayFileError(
            f"{name}: the header declares {n} elements, more than any real array", "suspicious"
        )
    dtype = np.dtype(dtype)
    offset = f.tell()
    header = ArrayHeader(name, shape, dtype, bool(fortran), offset, size - offset)
    if not header.is_object and header.nbytes != header.stored:
        kind = "damaged" if header.nbytes > header.stored else "suspicious"
        raise ArrayFileError(
            f"{name}: the header declares {header.nbytes} bytes of data but "
            f"{header.stored} are stored",
            kind,
        )
    return header


def npy_header(path: Path) -> ArrayHeader:
    with open(path, "rb") as f:
        import os

        return read_header(f, path.name, os.fstat(f.fileno()).st_size)


def _npz_member(name: str) -> bool:
    return (
        name.endswith(".npy") and "/" not in name and "\\" not in name and not name.startswith(".")
    )


def npz_headers(path: Path) -> list[ArrayHeader]:
    """The strict zip check, then every member's header."""
    try:
        infos = check_archive(path, expected=_npz_member)
    except ArchiveError as e:
        raise ArrayFileError(e.detail, "damaged" if e.kind == "damaged" else "suspicious") from None
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in infos:
            with zf.open(info) as f:
                header = read_header(f, info.filename, info.file_size)
            header.in_zip = True
            out.append(header)
    return out


def headers(path: Path) -> list[ArrayHeader]:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        return [npy_header(path)]
    if magic[:2] == b"PK":
        return npz_headers(path)
    raise ArrayFileError("neither a .npy array nor a .npz archive of arrays")


def pickle_bytes(path: Path, header: ArrayHeader) -> bytes:
    """The pickle an object array stores after its header (the bytes np.load would unpickle)."""
    if header.in_zip:
        with zipfile.ZipFile(path) as zf, zf.open(header.name) as f:
            f.seek(header.data_offset)
            return f.read()
    with open(path, "rb") as f:
        f.seek(header.data_offset)
        return f.read()

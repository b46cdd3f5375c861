"""A stored (uncompressed) zip member read in place: a seekable window on the archive.

h5py reads an HDF5 file by seeking back and forth; through ``zipfile.ZipExtFile`` every
backward seek restarts the member from its first byte (re-reading and re-checking its CRC),
which made reading a ``.keras`` archive's weights metadata cost seconds. A member stored
without compression is a plain byte range of the archive: this file object reads that range
directly. The archive's structure and CRCs are checked elsewhere (``zipcheck``) before any
member is read; a member that is compressed or encrypted gets ``None`` (use ``zf.open``).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader


class Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of an open file, as a read-only seekable file."""

    def __init__(self, f: Any, start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if n == 0:
            return 0
        got = os.preadv(self._f.fileno(), [view[:n]], self._start + self._pos)
        self._pos += got
        return got


def open_stored(zf: zipfile.ZipFile, name: str) -> Window | None:
    """Member ``name`` of the open archive ``zf`` as a :class:`Window` on the same open file
    (read with ``pread``: zipfile's own position is untouched), if stored uncompressed and
    unencrypted and its local header agrees with the central directory; else None. Use it
    while ``zf`` is open."""
    info = zf.getinfo(name)
    f = zf.fp
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or f is None:
        return None
    try:
        header = os.pread(f.fileno(), _LOCAL.size, info.header_offset)
        if len(header) != _LOCAL.size:
            raise OSError("truncated local header")
        fields = _LOCAL.unpack(header)
        name_len, extra_len = fields[10], fields[11]
        spelled = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        found = os.pread(f.fileno(), name_len, info.header_offset + _LOCAL.size)
        if fields[0] != b"PK\x03\x04" or found != spelled:
            raise OSError("local header does not match the central directory")
        start = info.header_offset + _LOCAL.size + name_len + extra_len
        if start + info.file_size > os.fstat(f.fileno()).st_size:
            raise OSError("the member runs past the end of the archive")
        return Window(f, start, info.file_size)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


# -- end of what the child process runs --
#: This module's source up to the line above, run by the child process that first walks an
#: HDF5 member's structure (``kerasfile.guard_h5``): it reads the member as this process will.
WINDOW_SOURCE = (
    Path(__file__).read_text(encoding="utf-8").split("# -- end of what the child")[0] + "\n"
)

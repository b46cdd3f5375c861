"""A strict reader for zip archives from strangers (``.keras`` files, torch ``.pt`` zips).

Python's :mod:`zipfile` is lenient by design: it finds members through the central directory
and ignores what lies between them, takes the last of two members with one name, accepts data
before the archive (self-extracting files) and after it, and trusts sizes it is told. Two zip
readers can therefore see two different archives in one file, and a scanner that reads one
while the framework reads the other checks nothing. :func:`check_archive` parses the archive
itself and refuses everything two readers could read differently:

- anything before the first local header or after the end record (polyglots), gaps between
  members and overlapping members: the members and the central directory must tile the file;
- a central directory entry that disagrees with its local header (name, flags, method, CRC,
  sizes), a data descriptor that disagrees with the central directory, a zip64 record that
  disagrees with the end record;
- duplicate names, names that leave the archive (``..``, absolute, drive letters, backslashes,
  control characters), a second spelling of a name (the Unicode path extra field);
- symbolic links, devices and FIFOs; encryption and other unknown flag bits; compression
  methods the caller did not allow;
- decompression bombs, judged per member by ratio and for the archive by an absolute cap;
- a CRC that does not match the bytes (verified for every member the caller asks for), and a
  deflate stream that ends early, runs on, or inflates past its declared size.

Any parse error refuses the whole file: a reader that stops at one bad entry and reports the
rest as clean is the bug this module exists to avoid.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from typing import BinaryIO

from .ziprecords import ArchiveError as ArchiveError  # raised here; importers take it from here
from .ziprecords import ArchiveReader, Member

#: A member that inflates more than this many times its stored size is a bomb ...
MAX_RATIO = 200
#: ... once it inflates to more than this (tiny members compress well and harm nobody).
RATIO_FLOOR = 1 << 20
#: The declared size of all members together may not exceed this.
MAX_TOTAL = 64 << 30
#: Stored (0) and deflated (8): what Keras, torch and numpy write.
METHODS = (0, 8)

#: Flag bits a plain archive may carry: deflate options (1, 2), data descriptor (3), UTF-8 (11).
_KNOWN_FLAGS = 0b0000_1000_0000_1110
_CHUNK = 1 << 20


def check_archive(
    path: str | os.PathLike[str],
    *,
    expected: Callable[[str], bool] | None = None,
    max_ratio: float = MAX_RATIO,
    max_total: int = MAX_TOTAL,
    crc: bool | Callable[[str], bool] = True,
    methods: tuple[int, ...] = METHODS,
) -> list[zipfile.ZipInfo]:
    """Check ``path`` is one unambiguous zip archive and return its members in order.

    Parameters
    ----------
    expected : a predicate on member names; a member it refuses makes the archive refused
        (e.g. an extra pickle beside ``data.pkl``). None accepts any safe name.
    max_ratio, max_total : the decompression-bomb limits (per-member ratio, total size).
    crc : verify the CRC of every member (True), of none (False), or of the members a
        predicate selects: verify at least what the loader will read.
    methods : the compression methods allowed.

    Raises
    ------
    ArchiveError (a FormatError) naming the file and the first problem found.
    """
    members, _ = read_archive(
        path, expected=expected, max_ratio=max_ratio, max_total=max_total, crc=crc, methods=methods
    )
    return [m.info for m in members]


def read_archive(
    path: str | os.PathLike[str],
    *,
    keep: Callable[[zipfile.ZipInfo], bool] | None = None,
    expected: Callable[[str], bool] | None = None,
    max_ratio: float = MAX_RATIO,
    max_total: int = MAX_TOTAL,
    crc: bool | Callable[[str], bool] = True,
    methods: tuple[int, ...] = METHODS,
) -> tuple[list[Member], dict[str, bytes]]:
    """:func:`check_archive`, returning each member with its data offset, and the bytes of
    the members ``keep`` selects (by their central directory entry: bound their size there),
    read in the same pass that verifies their CRC (a kept member is always verified): what
    the caller gets is exactly what was checked, with no second zip reader involved."""
    where = os.fspath(path)
    kept: dict[str, bytes] = {}
    try:
        with open(where, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            members = ArchiveReader(f, size, where).read()
            _check_members(where, members, expected, max_ratio, max_total, methods)
            for m in members:
                name = m.info.filename
                if keep is not None and keep(m.info):
                    kept[name] = _verify_data(f, where, m, keep=True)
                elif crc is True or (crc is not False and crc(name)):
                    _verify_data(f, where, m)
    except ArchiveError:
        raise
    except OSError as e:
        raise ArchiveError(
            where, f"the archive cannot be read ({e.strerror or e})", "damaged"
        ) from None
    return members, kept


def _check_members(
    where: str,
    members: list[Member],
    expected: Callable[[str], bool] | None,
    max_ratio: float,
    max_total: int,
    methods: tuple[int, ...],
) -> None:
    seen: set[str] = set()
    total = 0
    for m in members:
        info, name = m.info, m.info.filename
        if name in seen:
            raise ArchiveError(where, f"the archive holds two members named {name!r}")
        seen.add(name)
        if info.flag_bits & ~_KNOWN_FLAGS:
            what = "encrypted" if info.flag_bits & 0x2041 else "flagged with unknown options"
            raise ArchiveError(
                where, f"the member {name!r} is {what} (flags {info.flag_bits:#06x})"
            )
        if info.compress_type not in methods:
            raise ArchiveError(
                where,
                f"the member {name!r} uses compression method {info.compress_type}, "
                f"not one of {list(methods)}",
            )
        if info.compress_type == 0 and info.compress_size != info.file_size:
            raise ArchiveError(
                where, f"the stored member {name!r} declares two different sizes", "damaged"
            )
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "a device, FIFO or socket"
            raise ArchiveError(where, f"the member {name!r} is {what}")
        if expected is not None and not expected(name):
            raise ArchiveError(where, f"the archive holds an unexpected member {name!r}")
        if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * info.compress_size:
            ratio = info.file_size // max(info.compress_size, 1)
            raise ArchiveError(
                where,
                f"the member {name!r} inflates {ratio}x to {info.file_size} bytes "
                f"(a decompression bomb; the limit is {max_ratio}x)",
            )
        total += info.file_size
    if total > max_total:
        raise ArchiveError(
            where,
            f"the archive declares {total} bytes of content, more than the {max_total} allowed",
        )


def _verify_data(f: BinaryIO, where: str, m: Member, keep: bool = False) -> bytes:
    """Read the member's bytes once: its CRC and inflated size must be what the directory
    says. Returns them (inflated) if ``keep``, else b""."""
    info = m.info
    f.seek(m.data_start)
    left, produced, crc = info.compress_size, 0, 0
    inflate = zlib.decompressobj(-15) if info.compress_type == 8 else None
    if keep and inflate is None:  # one read into one buffer: no chunks to join (a copy)
        data = f.read(left)
        if len(data) != left:
            raise ArchiveError(where, f"the member {info.filename!r} is truncated", "damaged")
        if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
            raise _crc_failed(where, info)
        return data
    parts: list[bytes] = []
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise ArchiveError(where, f"the member {info.filename!r} is truncated", "damaged")
        left -= len(chunk)
        if inflate is None:
            produced, crc = produced + len(chunk), zlib.crc32(chunk, crc)
            if keep:
                parts.append(chunk)
            continue
        while chunk:
            if inflate.eof:
                raise ArchiveError(
                    where, f"the member {info.filename!r} has bytes after its compressed stream"
                )
            try:
                out = inflate.decompress(chunk, _CHUNK)
            except zlib.error as e:
                raise ArchiveError(
                    where, f"the member {info.filename!r} does not inflate ({e})", "damaged"
                ) from None
            produced, crc = produced + len(out), zlib.crc32(out, crc)
            if keep:
                parts.append(out)
            if produced > info.file_size:
                raise ArchiveError(
                    where,
                    f"the member {info.filename!r} inflates past its declared "
                    f"{info.file_size} bytes",
                )
            chunk = inflate.unconsumed_tail
        if inflate.unused_data:
            raise ArchiveError(
                where, f"the member {info.filename!r} has bytes after its compressed stream"
            )
    if inflate is not None:
        out = inflate.flush()  # output zlib still held back; bounded by its window
        produced, crc = produced + len(out), zlib.crc32(out, crc)
        if keep:
            parts.append(out)
        if not inflate.eof:
            raise ArchiveError(
                where, f"the compressed stream of {info.filename!r} ends early", "damaged"
            )
    if produced != info.file_size or crc != info.CRC:
        raise _crc_failed(where, info)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _crc_failed(where: str, info: zipfile.ZipInfo) -> ArchiveError:
    return ArchiveError(
        where, f"the member {info.filename!r} fails its CRC check (damaged or altered)", "damaged"
    )

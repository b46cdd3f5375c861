"""The zip records of an archive, parsed strictly: the end records (zip64 included), the central
directory and every local header and data descriptor, each cross-checked against the others.
:mod:`.zipcheck` judges the members this returns."""

from __future__ import annotations

import gc
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from .._gc import HOLDING, hold
from .._gc import MAX_BYTES as PAUSE_BYTES
from ..errors import FormatError

_EOCD = struct.Struct("<4sHHHHIIH")
_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_SIG_EOCD, _SIG_LOCATOR, _SIG_EOCD64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
_SIG_CENTRAL, _SIG_LOCAL, _SIG_DESCRIPTOR = b"PK\x01\x02", b"PK\x03\x04", b"PK\x07\x08"
_ZIP64_EXTRA, _UNICODE_PATH_EXTRA = 0x0001, 0x7075
_DESCRIPTOR_FLAG, _UTF8_FLAG = 0x08, 0x800


class ArchiveError(FormatError):
    """The archive is refused. ``kind`` is "damaged" (CRC, truncation) or "suspicious"
    (anything two zip readers could read differently); ``detail`` omits the path."""

    def __init__(self, path: str, detail: str, kind: str = "suspicious") -> None:
        super().__init__(f"{path}: {detail}")
        self.detail = detail
        self.kind = kind


@dataclass
class Member:
    info: zipfile.ZipInfo
    raw_name: bytes
    data_start: int = 0
    end: int = 0


class ArchiveReader:
    """Parses the end records, the central directory and every local header."""

    def __init__(self, f: BinaryIO, size: int, where: str) -> None:
        self.f, self.size, self.where = f, size, where

    def fail(self, detail: str, kind: str = "suspicious") -> ArchiveError:
        return ArchiveError(self.where, detail, kind)

    def pread(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise self.fail(f"a record at byte {offset} runs past the end of the file", "damaged")
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail("the file is shorter than its own records say", "damaged")
        return data

    def read(self) -> list[Member]:
        cd_offset, cd_size, count, cd_end = self._end_records()
        held: list[bool] = []
        try:
            hold(cd_size <= PAUSE_BYTES, held)  # a record per member: the collector, see .._gc
            members = self._central(cd_offset, cd_size, count)
            members.sort(key=lambda m: m.info.header_offset)
            pos = 0
            for m in members:
                # the members must tile [0, cd_offset) exactly: no gaps, no overlaps. Checked
                # before each local header is read, so each is read from bytes of its own
                # (44,620 entries naming one header whose extra field held 16,383 fields took
                # minutes when every header was read before this check)
                self._tiles(m, pos)
                self._local(m, cd_offset)
                pos = m.end
        finally:
            if held:
                del HOLDING[-1:]  # then the call, nothing in between (see .._gc)
                gc.enable()
        if pos != cd_offset:
            raise self.fail(
                f"the archive holds unreferenced bytes before its central directory (at byte {pos})"
            )
        if cd_offset + cd_size != cd_end:
            raise self.fail("the central directory does not end where the end record begins")
        return members

    def _tiles(self, m: Member, pos: int) -> None:
        if m.info.header_offset != pos:
            what = (
                "data before the first member"
                if pos == 0
                else (
                    "members that overlap"
                    if m.info.header_offset < pos
                    else "unreferenced bytes between members"
                )
            )
            raise self.fail(f"the archive holds {what} (at byte {min(pos, m.info.header_offset)})")

    def _end_records(self) -> tuple[int, int, int, int]:
        tail_len = min(self.size, _EOCD.size + 0xFFFF)
        tail = self.pread(self.size - tail_len, tail_len)
        found = []
        at = tail.rfind(_SIG_EOCD)
        while at >= 0:
            if at + _EOCD.size <= len(tail):
                comment_len = _EOCD.unpack_from(tail, at)[7]
                if at + _EOCD.size + comment_len == len(tail):
                    found.append(self.size - tail_len + at)
            at = tail.rfind(_SIG_EOCD, 0, at)
        if not found:
            if (
                tail.rfind(_SIG_EOCD) >= 0
            ):  # an end record that does not end the file: bytes follow it
                raise self.fail("data follows the end of the zip archive (a second file appended?)")
            raise self.fail(
                "no zip end record at the end of the file (damaged or truncated)", "damaged"
            )
        if len(found) > 1:
            raise self.fail(
                "the file holds two zip end records (a second archive hidden in the comment)"
            )
        eocd = found[0]
        _, disk, cd_disk, on_disk, count, cd_size, cd_offset, _ = _EOCD.unpack(
            self.pread(eocd, _EOCD.size)
        )
        cd_end = eocd
        if eocd >= _LOCATOR.size and self.pread(eocd - _LOCATOR.size, 4) == _SIG_LOCATOR:
            count, cd_size, cd_offset, cd_end = self._zip64(
                eocd, (disk, cd_disk, on_disk, count, cd_size, cd_offset)
            )
        elif 0xFFFF in (disk, cd_disk, on_disk, count) or 0xFFFFFFFF in (cd_size, cd_offset):
            raise self.fail("the end record asks for zip64 records that are not there", "damaged")
        elif disk or cd_disk or on_disk != count:
            raise self.fail("the archive claims to span several disks")
        return cd_offset, cd_size, count, cd_end

    def _zip64(self, eocd: int, plain: tuple[int, ...]) -> tuple[int, int, int, int]:
        loc = eocd - _LOCATOR.size
        _, rec_disk, rec_offset, disks = _LOCATOR.unpack(self.pread(loc, _LOCATOR.size))
        if rec_disk or disks != 1 or rec_offset + _EOCD64.size != loc:
            raise self.fail("the zip64 locator does not point at the record right before it")
        sig, rec_size, _, _, disk, cd_disk, on_disk, count, cd_size, cd_offset = _EOCD64.unpack(
            self.pread(rec_offset, _EOCD64.size)
        )
        if sig != _SIG_EOCD64 or rec_size != _EOCD64.size - 12:
            raise self.fail("the zip64 end record is malformed")
        if disk or cd_disk or on_disk != count:
            raise self.fail("the archive claims to span several disks")
        for small, big, full in zip(
            plain[3:], (count, cd_size, cd_offset), (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        ):
            if small not in (big, full):
                raise self.fail("the zip64 end record disagrees with the end record")
        return count, cd_size, cd_offset, rec_offset

    def _central(self, cd_offset: int, cd_size: int, count: int) -> list[Member]:
        if count * _CENTRAL.size > cd_size:
            raise self.fail(
                f"the end record counts {count} members, more than the central directory holds",
                "damaged",
            )
        cd = self.pread(cd_offset, cd_size)
        members: list[Member] = []
        p = 0
        for _ in range(count):
            if p + _CENTRAL.size > len(cd) or cd[p : p + 4] != _SIG_CENTRAL:
                raise self.fail(f"central directory entry {len(members)} is malformed", "damaged")
            fields = _CENTRAL.unpack_from(cd, p)
            n, e, c = fields[10:13]
            start = p + _CENTRAL.size
            if start + n + e + c > len(cd):
                raise self.fail(
                    f"central directory entry {len(members)} runs past the directory", "damaged"
                )
            raw_name, extra = cd[start : start + n], cd[start + n : start + n + e]
            members.append(
                self._entry(fields, raw_name, extra, cd[start + n + e : start + n + e + c])
            )
            p = start + n + e + c
        if p != len(cd):
            raise self.fail("the central directory holds bytes beyond its counted entries")
        return members

    def _entry(
        self, fields: tuple[int, ...], raw_name: bytes, extra: bytes, comment: bytes
    ) -> Member:
        (
            _,
            made_by,
            needed,
            flags,
            method,
            mtime,
            mdate,
            crc,
            csize,
            usize,
            _,
            _,
            _,
            disk,
            iattr,
            eattr,
            offset,
        ) = fields
        name = self._name(raw_name, flags)
        usize, csize, offset, disk = _zip64_values(
            self, _extras(self, name, extra), (usize, csize, offset, disk)
        )
        if disk:
            raise self.fail(f"the member {name!r} starts on another disk")
        info = zipfile.ZipInfo(name, _dos_time(mdate, mtime))
        info.create_system, info.create_version = made_by >> 8, made_by & 0xFF
        info.extract_version, info.flag_bits, info.compress_type = needed, flags, method
        info.CRC, info.compress_size, info.file_size, info.header_offset = crc, csize, usize, offset
        info.internal_attr, info.external_attr, info.extra, info.comment = (
            iattr,
            eattr,
            extra,
            comment,
        )
        return Member(info, raw_name)

    def _name(self, raw: bytes, flags: int) -> str:
        try:
            name = raw.decode("utf-8") if flags & _UTF8_FLAG else raw.decode("cp437")
        except UnicodeDecodeError:
            raise self.fail(f"the member name {raw[:80]!r} is not valid UTF-8") from None
        problem = bad_name(name)
        if problem:
            raise self.fail(f"the member {name[:200]!r} {problem}")
        return name

    def _local(self, m: Member, cd_offset: int) -> None:
        info = m.info
        head = self.pread(info.header_offset, _LOCAL.size)
        sig, _, flags, method, _, _, crc, csize, usize, n, e = _LOCAL.unpack(head)
        if sig != _SIG_LOCAL:
            raise self.fail(
                f"the member {info.filename!r} has no local header where the directory says",
                "damaged",
            )
        body = self.pread(info.header_offset + _LOCAL.size, n + e)
        if body[:n] != m.raw_name or flags != info.flag_bits or method != info.compress_type:
            raise self.fail(
                f"the local header of {info.filename!r} disagrees with the central directory "
                "(name, flags or compression method)"
            )
        usize, csize = _zip64_values(self, _extras(self, info.filename, body[n:]), (usize, csize))[
            :2
        ]
        stated = (crc, csize, usize)
        if stated != (info.CRC, info.compress_size, info.file_size) and not (
            flags & _DESCRIPTOR_FLAG and stated == (0, 0, 0)
        ):
            raise self.fail(
                f"the local header of {info.filename!r} disagrees with the central directory "
                "(CRC or sizes)"
            )
        m.data_start = info.header_offset + _LOCAL.size + n + e
        m.end = m.data_start + info.compress_size
        if m.end > cd_offset:
            raise self.fail(
                f"the data of {info.filename!r} runs into the central directory", "damaged"
            )
        if flags & _DESCRIPTOR_FLAG:
            m.end += self._descriptor(m, cd_offset)

    def _descriptor(self, m: Member, cd_offset: int) -> int:
        """Length of the data descriptor after ``m``'s data; it must repeat the directory's values."""
        info = m.info
        room = self.pread(m.end, min(24, cd_offset - m.end))
        for sig, wide in ((True, False), (True, True), (False, False), (False, True)):
            fmt = "<" + ("4s" if sig else "") + ("IQQ" if wide else "III")
            if struct.calcsize(fmt) > len(room):
                continue
            values = struct.unpack_from(fmt, room)
            if sig and values[0] != _SIG_DESCRIPTOR:
                continue
            if tuple(values[1:] if sig else values) == (
                info.CRC,
                info.compress_size,
                info.file_size,
            ):
                return struct.calcsize(fmt)
        raise self.fail(
            f"the data descriptor of {info.filename!r} disagrees with the central directory"
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Names every rule below accepts: '/'-separated components of word characters, '-' and '.',
#: none empty, none starting with '.' unless more than dots follow (``.format_version``).
_PLAIN = re.compile(
    r"(?:(?:[\w-][\w.-]*|\.+[\w-][\w.-]*)/)*(?:[\w-][\w.-]*|\.+[\w-][\w.-]*)/?", re.ASCII
)


def bad_name(name: str) -> str | None:
    """Why a member name is refused (it would leave the archive or read ambiguously), or None."""
    if _PLAIN.fullmatch(name):
        return None  # the common case, decided in one match
    if not name:
        return "has an empty name"
    if name.startswith("/") or "\\" in name or ":" in name:
        return "has an absolute, drive-letter or Windows-style path"
    if _CONTROL.search(name):
        return "has control characters in its name"
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' path component"
    return None


def _extras(r: ArchiveReader, name: str, extra: bytes) -> dict[int, bytes]:
    if not extra:
        return {}
    out: dict[int, bytes] = {}
    p = 0
    while p < len(extra):
        if p + 4 > len(extra):
            raise r.fail(f"the extra field of {name!r} is truncated", "damaged")
        key, n = struct.unpack_from("<HH", extra, p)
        if p + 4 + n > len(extra):
            raise r.fail(f"the extra field of {name!r} is truncated", "damaged")
        if key in out and key in (_ZIP64_EXTRA, _UNICODE_PATH_EXTRA):
            raise r.fail(f"the member {name!r} has two zip64 or path extra fields")
        if key == _UNICODE_PATH_EXTRA:
            raise r.fail(
                f"the member {name!r} carries a second spelling of its name (Unicode path field)"
            )
        out[key] = extra[p + 4 : p + 4 + n]
        p += 4 + n
    return out


def _zip64_values(
    r: ArchiveReader, extras: dict[int, bytes], values: tuple[int, ...]
) -> tuple[int, ...]:
    """Replace the 0xFFFFFFFF / 0xFFFF placeholders in (usize, csize[, offset[, disk]]) from the
    zip64 extra field, in the order the format gives them."""
    if 0xFFFFFFFF not in values and 0xFFFF not in values[3:]:
        return values  # no placeholder: nothing to take from the extra field
    data = extras.get(_ZIP64_EXTRA, b"")
    out, p = list(values), 0
    for i, v in enumerate(values):
        full = 0xFFFF if i == 3 else 0xFFFFFFFF
        if v != full:
            continue
        width = 4 if i == 3 else 8
        if p + width > len(data):
            raise r.fail("a zip64 size or offset is missing from its extra field", "damaged")
        out[i] = int.from_bytes(data[p : p + width], "little")
        p += width
    return tuple(out)


def _dos_time(date: int, time: int) -> tuple[int, int, int, int, int, int]:
    return (
        (date >> 9) + 1980,
        (date >> 5) & 0xF,
        date & 0x1F,
        time >> 11,
        (time >> 5) & 0x3F,
        (time & 0x1F) * 2,
    )

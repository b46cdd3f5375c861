"""modelstore's metadata inside a ``.pt`` written by ``ms.save``: ``ARCHIVE/modelstore.json``.

``torch.load`` reads only ``data.pkl`` and the storages of a torch zip, so one more record
is ignored by it and by every tool built on it, while the file alone keeps its config,
labels and signature when it travels without its sidecar. The record is appended after
``torch.save`` wrote the archive and holds the metadata plus ``data_checksum``: the xxh3 of
every byte before the record (the archive's members as torch wrote them), so the file can
tell on its own whether it is intact. The sidecar (``PATH.modelstore.json``) stays the
primary copy; when its checksum does not match the file, :func:`intact` decides between a
damaged file and a stale sidecar (the file rewritten by another tool, such as a plain
``torch.save``): every member's CRC and the record's own checksum must hold.

The record is hostile input like the rest of the file: one record of that exact name under
the archive's root, size-bounded, parsed with the bounded JSON reader, every field typed.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ..._gc import MAX_BYTES as PAUSE_BYTES
from ..._gc import paused
from ...errors import FormatError
from ...security.jsonsafe import loads
from ...security.torchfile import plain_end_record
from ...storage.hashing import format_checksum, new_checksum, update_from_file
from ..base import check_meta

RECORD = "modelstore.json"
MAX_RECORD = 16 << 20


def write_record(path: Path, meta: dict[str, Any]) -> None:
    """Append the record to the torch zip ``path`` (just written by ``torch.save``)."""
    with zipfile.ZipFile(path) as zf:
        root = zf.namelist()[0].partition("/")[0]
        end = zf.start_dir  # the members end where the central directory starts
    hasher = new_checksum()
    update_from_file(hasher, path, 0, end)
    record = {k: v for k, v in meta.items() if k not in ("checksum", "payload_size")}
    record["data_checksum"] = format_checksum(hasher)
    blob = json.dumps(record, sort_keys=True, allow_nan=False).encode()
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(
            zipfile.ZipInfo(f"{root}/{RECORD}", date_time=(1980, 1, 1, 0, 0, 0)),
            blob,
            compress_type=zipfile.ZIP_STORED,
        )


def _record_info(zf: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    found = [i for i in zf.infolist() if i.filename.partition("/")[2] == RECORD]
    if len(found) > 1:
        raise FormatError(
            f"{zf.filename}: the archive holds {len(found)} {RECORD} records; it is damaged or hostile"
        )
    return found[0] if found else None


def _small_directory(path: Path) -> bool:
    """Whether the archive's end record, as torch writes it, gives a central directory of at
    most the collector pause's bound (see ..._gc)."""
    with open(path, "rb") as f:
        end = plain_end_record(f)
    return end is not None and end[1] <= PAUSE_BYTES


def _record_bytes(path: Path) -> bytes | None:
    with zipfile.ZipFile(path) as zf:
        info = _record_info(zf)
        if info is None:
            return None
        if info.file_size > MAX_RECORD or info.compress_type != zipfile.ZIP_STORED:
            raise FormatError(
                f"{path}: its {RECORD} record is not one modelstore writes; it is damaged or hostile"
            )
        return zf.read(info)


def read_record(path: Path) -> dict[str, Any] | None:
    """The metadata record inside the torch zip ``path``, validated, or None without one."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        # a ZipInfo per member: the collector paused for a small central directory (see ..._gc)
        raw = paused(_small_directory(path), _record_bytes, path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise FormatError(f"{path}: cannot read its {RECORD} record ({e})") from None
    if raw is None:
        return None
    meta = loads(raw, where=f"{path}: the {RECORD} record", max_bytes=MAX_RECORD)
    check_meta(path, meta, f"its {RECORD} record")
    if not isinstance(meta.get("data_checksum", ""), str):
        raise FormatError(f"{path}: its {RECORD} record has a malformed 'data_checksum'")
    return dict(meta)


def intact(path: Path) -> dict[str, Any] | None:
    """For a file whose sidecar checksum does not match: the metadata the file carries
    itself ({} for none) when the file is whole (every member's CRC holds, the archive is
    unambiguous, and the record's ``data_checksum`` matches the bytes before it); None when
    it is damaged (or not a torch zip: nothing to tell a rewrite from damage)."""
    from ...security.zipcheck import ArchiveError, check_archive

    if not zipfile.is_zipfile(path):
        return None
    try:
        check_archive(path, crc=True)
        with zipfile.ZipFile(path) as zf:
            info = _record_info(zf)
            offset = info.header_offset if info is not None else None
        meta = read_record(path) if info is not None else {}
    except (ArchiveError, FormatError, zipfile.BadZipFile, OSError, ValueError):
        return None
    expected = (meta or {}).get("data_checksum")
    if expected:
        hasher = new_checksum()
        update_from_file(hasher, path, 0, offset)
        if format_checksum(hasher) != expected:
            return None
    return {k: v for k, v in (meta or {}).items() if k != "data_checksum"}

"""Read ``torch.save`` files without torch: the zip layout, its pickles, its tensor records.

Handles the zip format (``torch.save`` since 1.6) and the legacy stream of pickles, and
refuses archives whose layout could make two readers disagree (duplicate entry names).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .allowlist import DTYPE_SIZES, TORCH_STORAGE_DTYPES
from .pickle_scan import Global, PickleReport, analyse, analyse_source
from .pickle_stream import Source
from .ziprecords import Member

#: ``torch.save(..., _use_new_zipfile_serialization=False)`` starts with this pickled integer.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
#: A pickle record larger than this is not walked (state-dict pickles are kilobytes).
MAX_PICKLE_BYTES = 256 << 20


class TorchFileError(Exception):
    """The file is not a readable torch.save file. ``kind`` is ``"format"`` (another kind of
    file), ``"damaged"`` (corrupt or truncated) or ``"suspicious"`` (a layout that could make
    readers disagree)."""

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def truncated(self) -> bool:
        return self.kind == "damaged"


@dataclass
class TorchPickles:
    """Every pickle stream in a torch file, analysed; ``main`` is the one torch.load returns."""

    kind: str  # "zip" | "legacy"
    streams: dict[str, PickleReport] = field(default_factory=dict)
    main: PickleReport | None = None
    #: zip only: storage key -> (byte offset of its data in the file, size), for the members
    #: stored uncompressed, as the strict reader found them
    storages: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: zip only: the archive's ``byteorder`` record (None without one; b"?" if too long)
    byteorder: bytes | None = None
    #: zip only: its format version record, ``.data/version`` or else ``version`` (as above)
    version: bytes | None = None


def is_torch_zip(path: Path) -> bool:
    """Whether ``path`` looks like a torch.save archive (a guess for choosing the format;
    the strict checks come when it is read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(30 + 4096)
    except OSError:
        return False
    # torch.save writes data.pkl first: its local header names it (no central directory walk)
    if head[:4] == b"PK\x03\x04" and len(head) >= 30:
        n = int.from_bytes(head[26:28], "little")
        if head[30 : 30 + n].endswith(b"/data.pkl"):
            return True
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def plain_end_record(f: BinaryIO) -> tuple[int, int, int] | None:
    """(file size, central directory size, its offset) from an end record with no comment at
    the very end of the open file ``f``, where torch writes it; None for anything else."""
    f.seek(0, 2)
    size = f.tell()
    if size < 22:
        return None
    f.seek(size - 22)
    end = f.read(22)
    if end[:4] != b"PK\x05\x06" or end[20:22] != b"\x00\x00":
        return None
    return size, int.from_bytes(end[12:16], "little"), int.from_bytes(end[16:20], "little")


def small_archive(path: Path, limit: int, pickle_limit: int) -> bool:
    """Whether ``path`` looks like a torch zip whose central directory is at most ``limit``
    bytes and whose ``data.pkl`` (its first member, as torch writes it) at most
    ``pickle_limit``, in a file of at most 64 x ``limit`` (the strict reader CRC-checks every
    member but the storages): three small reads (the end record, the first directory entry),
    to bound work before it starts. A file that only looks so is refused by the strict reader
    where it disagrees with itself; a file that does not look so gets no pause."""
    try:
        with open(path, "rb") as f:
            end = plain_end_record(f)
            if end is None:
                return False  # a comment, or no end record where torch puts it
            size, cd_size, cd_offset = end
            if size > 64 * limit or cd_size > limit or cd_offset + 46 > size:
                return False
            f.seek(cd_offset)
            first = f.read(46 + 256)
    except OSError:
        return False
    name = first[46 : 46 + int.from_bytes(first[28:30], "little")]
    return (
        first[:4] == b"PK\x01\x02"
        and name.endswith(b"/data.pkl")  # the only pickle a torch zip may hold
        and int.from_bytes(first[10:12], "little") == 0  # stored
        and int.from_bytes(first[20:24], "little") <= pickle_limit  # (0xFFFFFFFF: zip64)
    )


def read_pickles(path: Path) -> TorchPickles:
    """Analyse the pickles of a torch file; raises :class:`TorchFileError` if it is not one."""
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_PREFIX))
    if head.startswith(b"PK"):
        return _read_zip(path)
    if head == LEGACY_PREFIX:
        return _read_legacy(path)
    if head[:1] == b"\x80":
        # not torch's layout, but torch.load would unpickle it as a legacy file: read it all
        out = TorchPickles(kind="pickle")
        out.main = out.streams["pickle"] = _analyse(path.read_bytes()[:MAX_PICKLE_BYTES], str(path))
        return out
    raise TorchFileError("neither a torch zip archive nor a legacy torch.save stream")


#: What ``torch.save`` writes under the archive's one root folder: the pickle, format records,
#: and raw storages named by number (plus the JSON metadata record ``ms.save`` appends, which
#: torch never reads and modelstore reads as bounded JSON). Anything else (a second pickle torch would not read but
#: another tool might) is refused.
_TORCH_MEMBER = re.compile(
    r"(data\.pkl|modelstore\.json|version|byteorder|\.format_version|\.storage_alignment|"
    r"\.data/version|\.data/serialization_id|data/\d{1,12})"
)


def _torch_member(name: str) -> bool:
    root, sep, rest = name.partition("/")
    return bool(sep) and "/" not in root and bool(_TORCH_MEMBER.fullmatch(rest))


def _kept_member(info: zipfile.ZipInfo) -> bool:
    """The members read for their bytes: the pickles, up to :data:`MAX_PICKLE_BYTES` each,
    and the few bytes of the byte-order and format-version records."""
    name = info.filename
    if name.endswith(".pkl"):
        return info.file_size <= MAX_PICKLE_BYTES
    return name.endswith(_RECORDS) and info.file_size <= 16


#: Small records kept for the builder: (member name under the root, field of TorchPickles).
_RECORDS = ("/byteorder", "/version", "/.data/version")


def _check_container(path: Path) -> tuple[list[Member], dict[str, bytes]]:
    """The strict zip reader: one unambiguous archive (local headers agree with the central
    directory, nothing before, between or after members, no duplicates, links or bombs),
    members only of torch's own layout under one root and stored uncompressed as torch stores
    them, CRCs checked for all but storages.
    Returns the members and the bytes of the pickles, read as their CRCs were checked."""
    from .zipcheck import ArchiveError, read_archive

    try:
        members, kept = read_archive(
            path,
            keep=_kept_member,
            expected=_torch_member,
            crc=lambda n: "/data/" not in n,
            # torch.save stores every member; a deflated pickle of 1.3 MB inflating 200x to
            # 256 MiB of one-byte opcodes would build ~19 GB of objects (red team)
            methods=(0,),
        )
    except ArchiveError as e:
        code = torchscript_code(path)
        if code:
            raise TorchFileError(torchscript_message(code), "torchscript") from None
        raise TorchFileError(e.detail, e.kind) from None
    roots = {m.info.filename.partition("/")[0] for m in members}
    if len(roots) > 1:
        raise TorchFileError(
            f"the archive holds records under several roots {sorted(roots)}", "suspicious"
        )
    return members, kept


def torchscript_code(path: Path) -> list[str]:
    """The compiled-code members of a TorchScript archive (``torch.jit.save``: ``ROOT/code/``
    beside ``ROOT/constants.pkl``), or [] for any other file. Names only, read from the
    central directory; the archive is refused either way, this only names what it is."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return []
    roots = {n.partition("/")[0] for n in names}
    if len(roots) != 1 or f"{next(iter(roots))}/constants.pkl" not in names:
        return []
    root = next(iter(roots))
    return [n for n in names if n.startswith(f"{root}/code/") and n.endswith(".py")]


def torchscript_message(code: list[str]) -> str:
    shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
    return (
        f"this is TorchScript (torch.jit.save), not a torch.save file: it holds compiled code "
        f"({shown}) that runs when it is loaded, which modelstore never does; use "
        f"torch.jit.load if you trust it (then ms.save(module.state_dict(), 'model.safetensors') "
        f"gives a file anyone can load safely)"
    )


def _check_members(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    _check_bounds(path, infos)
    names = [i.filename for i in infos]
    links = [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]
    if links:
        raise TorchFileError(f"the archive holds symbolic link entries {links}", "suspicious")
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dupes:
        msg = (
            f"the archive holds duplicate entries {dupes}; readers may disagree on which one counts"
        )
        raise TorchFileError(msg, "suspicious")


def _read_zip(path: Path) -> TorchPickles:
    members, data = _check_container(path)  # the pickles' bytes come from the strict reader
    infos = [m.info for m in members]
    out = TorchPickles(kind="zip")
    _check_members(path, infos)
    for m in members:
        rest = m.info.filename.partition("/")[2]
        if rest.startswith("data/") and m.info.compress_type == zipfile.ZIP_STORED:
            out.storages[rest[5:]] = (m.data_start, m.info.file_size)
        elif rest == "byteorder":
            out.byteorder = data.get(m.info.filename, b"?")
        elif rest == ".data/version" or (rest == "version" and out.version is None):
            out.version = data.get(m.info.filename, b"?")
    pkls = [i for i in infos if i.filename.endswith(".pkl")]
    if not pkls:
        raise TorchFileError("a zip archive without data.pkl is not a torch.save file")
    for info in pkls:
        name = info.filename
        if name not in data:
            out.streams[name] = PickleReport(
                error=f"a pickle record of {info.file_size} bytes, more than the "
                f"{MAX_PICKLE_BYTES} modelstore reads (torch keeps tensor data outside it)",
                suspicious=True,
            )
            continue
        out.streams[name] = _analyse(data.pop(name), f"{path}:{name}")
    main = [n for n in out.streams if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(main) != 1:
        raise TorchFileError(f"expected one data.pkl record, found {len(main)}")
    out.main = out.streams[main[0]]
    problem = _storage_problem(out.main, out.storages)
    if problem:
        raise TorchFileError(problem, "suspicious")
    return out


#: Bytes per element of the storage classes the allow-list names (a storage record naming
#: any other class is refused): the legacy typed classes, packed sub-byte quantized ones
#: (counted in bytes), and the untyped class (its element count is in bytes).
_ITEMSIZE: dict[str, int] = {
    **{name: DTYPE_SIZES[dtype] for name, dtype in TORCH_STORAGE_DTYPES.items()},
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}


def _itemsize(stype: Any) -> int | None:
    """Bytes per element of a storage class named in a storage record (None: unknown)."""
    if not isinstance(stype, Global):
        return None
    if stype.qualname == "torch.storage.UntypedStorage":
        return 1
    if stype.module not in ("torch", "torch.cuda"):
        return None
    return _ITEMSIZE.get(stype.name)


def _storage_problem(main: PickleReport, storages: dict[str, tuple[int, int]]) -> str | None:
    """Every storage record must name a member stored uncompressed that holds exactly its
    element count times the element size: ``torch.load(mmap=True)`` reads the stated count
    from the member's offset, so a larger count would read the bytes of whatever follows it
    in the file (other members, the central directory) into the tensor."""
    for p in main.persistent:
        rec = p.pid
        if not (isinstance(rec, tuple) and len(rec) == 5 and rec[0] == "storage"):
            continue  # not a storage record: the scan judges it
        _, stype, key, _, numel = rec
        # fail closed: torch.load(mmap=True) maps numel x its element size from the member's
        # offset whatever the member holds (red team: quint4x2 storages, numel=True, read the
        # next member's header); and nothing the file built is formatted (a key of nested
        # tuples took exponential time to print)
        if type(key) is not str:
            return f"a tensor record names its storage by a {type(key).__name__}, not a string"
        size = _itemsize(stype)
        if size is None:
            what = stype.qualname if isinstance(stype, Global) else type(stype).__name__
            return f"a tensor record names the storage class {what[:80]}, whose element size is unknown"
        if type(numel) is not int or numel < 0:
            return (
                f"a tensor record gives storage {key[:40]!r} an element count that is not a count"
            )
        found = storages.get(key)
        if found is None:
            return (
                f"a tensor record names storage {key[:40]!r}, which is not a member "
                "stored uncompressed in the archive"
            )
        if numel * size != found[1]:
            return (
                f"a tensor record says storage {key[:40]!r} holds {numel} elements of {size} "
                f"bytes, but its member holds {found[1]} bytes"
            )
    return None


def _check_bounds(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse bytes before the first entry or after the end record: a polyglot could carry
    a pickle there for a reader that does not treat the file as a zip."""
    if infos and min(i.header_offset for i in infos) != 0:
        raise TorchFileError("the file has data before the zip archive starts", "suspicious")
    with open(path, "rb") as f:
        if plain_end_record(f) is None:
            msg = "the file has data after the end of the zip archive"
            raise TorchFileError(msg, "suspicious")


def _analyse(data: bytes, where: str) -> PickleReport:
    from .policy import TORCH_POLICY

    return analyse(data, lookup=TORCH_POLICY.entry, persistent_ids=True, where=where)


def _read_legacy(path: Path) -> TorchPickles:
    """torch's legacy format: five pickles in a row (magic number, protocol version, sys info,
    the object, the storage keys), then raw storage bytes. torch.load unpickles all five."""
    from .policy import TORCH_POLICY

    out = TorchPickles(kind="legacy")
    with open(path, "rb") as f:
        source = Source(f, path.stat().st_size)
        for label in ("magic", "protocol", "sys_info", "object", "storage_keys"):
            rep = analyse_source(
                source, f"{path}:{label}", TORCH_POLICY.entry, persistent_ids=True, expect_end=False
            )
            out.streams[label] = rep
            if rep.error:
                break
    out.main = out.streams.get("object")
    return out

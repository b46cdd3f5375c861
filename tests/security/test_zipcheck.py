"""The strict zip reader: hand-built hostile archives (struct level) are refused, real ones pass.

Where it matters, each test first shows that Python's lenient ``zipfile`` reads the hostile
archive without complaint (that is the ambiguity), then that ``check_archive`` refuses it.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import modelstore as ms
from modelstore.security.zipcheck import ArchiveError, check_archive
from modelstore.security.ziprecords import bad_name


def entry(name: str | bytes, payload: bytes, *, method: int = 0, **over: Any) -> dict[str, Any]:
    """One member: its stored bytes plus every header field, each overridable."""
    raw = name.encode() if isinstance(name, str) else name
    stored = zlib.compress(payload)[2:-4] if method == 8 else payload
    e = {
        "name": raw,
        "stored": stored,
        "usize": len(payload),
        "csize": len(stored),
        "crc": zlib.crc32(payload),
        "method": method,
        "flags": 0,
        "attr": 0o100644 << 16,
        "local_extra": b"",
        "central_extra": b"",
    }
    e.update(over)
    for key in ("name", "method", "flags", "crc", "csize", "usize"):
        e.setdefault(f"local_{key}", e[key])
    return e


def build(
    entries: list[dict[str, Any]],
    *,
    prefix: bytes = b"",
    gaps: dict[int, bytes] | None = None,
    suffix: bytes = b"",
    comment: bytes = b"",
    offsets: dict[int, int] | None = None,
    count: int | None = None,
    descriptor: dict[int, bytes] | None = None,
) -> bytes:
    """A zip archive assembled field by field, so any field can lie."""
    out = bytearray(prefix)
    starts = []
    for i, e in enumerate(entries):
        starts.append(len(out))
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            e["local_flags"],
            e["local_method"],
            0,
            0x21,
            e["local_crc"],
            e["local_csize"],
            e["local_usize"],
            len(e["local_name"]),
            len(e["local_extra"]),
        )
        out += e["local_name"] + e["local_extra"] + e["stored"]
        out += (descriptor or {}).get(i, b"")
        out += (gaps or {}).get(i, b"")
    cd_start = len(out)
    for i, e in enumerate(entries):
        offset = (offsets or {}).get(i, starts[i])
        out += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            0x0314,
            20,
            e["flags"],
            e["method"],
            0,
            0x21,
            e["crc"],
            e["csize"],
            e["usize"],
            len(e["name"]),
            len(e["central_extra"]),
            0,
            0,
            0,
            e["attr"],
            offset,
        )
        out += e["name"] + e["central_extra"]
    n = len(entries) if count is None else count
    out += struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(out) - cd_start, cd_start, len(comment)
    )
    return bytes(out + comment + suffix)


def write(tmp_path: Path, data: bytes, name: str = "a.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path, match: str, **kwargs: Any) -> ArchiveError:
    with pytest.raises(ArchiveError, match=match) as e:
        check_archive(path, **kwargs)
    assert isinstance(e.value, ms.FormatError) and str(path) in str(e.value)
    return e.value


def lenient_reads(path: Path) -> list[str]:
    """What Python's zipfile sees (and reads) in the file."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            try:
                zf.read(info)
            except zipfile.BadZipFile:
                pass
        return zf.namelist()


def test_hand_built_archive_passes(tmp_path: Path) -> None:
    """A well-formed stored + deflated archive passes and agrees with zipfile."""
    path = write(
        tmp_path, build([entry("a.txt", b"hello"), entry("d/b.bin", b"\0" * 5000, method=8)])
    )
    infos = check_archive(path)
    assert [(i.filename, i.file_size) for i in infos] == [("a.txt", 5), ("d/b.bin", 5000)]
    assert lenient_reads(path) == ["a.txt", "d/b.bin"]


def test_real_archives_pass(tmp_path: Path) -> None:
    """zipfile's own output (deflate, comment, zip64, data descriptors) passes."""
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/b.txt", b"hello" * 1000)
        zf.writestr("dir/", b"")
        zf.comment = b"made by a test"
        with zf.open("big", "w", force_zip64=True) as f:
            f.write(b"x" * 100)
    assert [i.filename for i in check_archive(path)] == ["a/b.txt", "dir/", "big"]

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += bytes(b)
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:  # writes data descriptors
        zf.writestr("x", b"y" * 5000)
    infos = check_archive(write(tmp_path, bytes(sink.data), "dd.zip"))
    assert infos[0].flag_bits & 0x08


def test_bad_crc_is_damaged(tmp_path: Path) -> None:
    """A member whose bytes do not match its CRC is refused as damaged."""
    path = write(tmp_path, build([entry("a", b"hello", crc=zlib.crc32(b"hellO"))]))
    assert refused(path, "CRC").kind == "damaged"
    assert check_archive(path, crc=False)[0].filename == "a"  # the caller chose not to read it
    assert refused(path, "CRC", crc=lambda name: name == "a")


@pytest.mark.parametrize(
    "flags,what",
    [
        (0x01, "encrypted"),
        (0x40, "encrypted"),
        (0x2000, "encrypted"),
        (0x10, "unknown options"),
        (0x8000, "unknown options"),
    ],
)
def test_odd_flag_bits(tmp_path: Path, flags: int, what: str) -> None:
    """Encryption and unknown flag bits are refused."""
    path = write(tmp_path, build([entry("a", b"x", flags=flags)]))
    refused(path, what)


def test_duplicate_names(tmp_path: Path) -> None:
    """Two members with one name: zipfile silently takes the last; we refuse."""
    path = write(
        tmp_path, build([entry("config.json", b"{}"), entry("config.json", b'{"evil": 1}')])
    )
    with zipfile.ZipFile(path) as zf:
        assert zf.read("config.json") == b'{"evil": 1}'
    refused(path, "two members named 'config.json'")


@pytest.mark.parametrize(
    "field,value",
    [
        ("local_name", b"b.txt"),
        ("local_method", 8),
        ("local_flags", 0x800),
        ("local_crc", 1),
        ("local_usize", 4),
        ("local_csize", 4),
    ],
)
def test_central_directory_disagrees_with_local_header(
    tmp_path: Path, field: str, value: Any
) -> None:
    """Name, flags, method, CRC or sizes that differ between the two headers are refused."""
    path = write(tmp_path, build([entry("a.txt", b"hello", **{field: value})]))
    refused(path, "local header")


def test_data_before_the_first_member(tmp_path: Path) -> None:
    """A pickle prepended to an archive (a polyglot): zipfile reads on; we refuse."""
    payload = pickle.dumps({"harmless": True})
    body = build([entry("data.pkl", b"x")])
    # a self-extracting-style file: offsets in the directory account for the prefix
    shifted = build([entry("data.pkl", b"x")], prefix=payload)
    path = write(tmp_path, shifted)
    assert lenient_reads(path) == ["data.pkl"]
    refused(path, "data before the first member")
    assert body  # the same archive without the prefix is fine
    check_archive(write(tmp_path, body, "b.zip"))


def test_data_after_the_end_record(tmp_path: Path) -> None:
    """Bytes after the end record (with or without a zip64 record) are refused."""
    path = write(tmp_path, build([entry("a", b"x")], suffix=pickle.dumps([1, 2])))
    refused(path, "data follows the end of the zip archive")
    zipfile.ZipFile(path).close()  # zipfile finds the record inside the tail and carries on


def test_gap_between_members(tmp_path: Path) -> None:
    """Unreferenced bytes hidden between two members are refused."""
    path = write(
        tmp_path, build([entry("a", b"x"), entry("b", b"y")], gaps={0: pickle.dumps("hidden")})
    )
    assert lenient_reads(path) == ["a", "b"]
    refused(path, "unreferenced bytes between members")


def test_overlapping_members(tmp_path: Path) -> None:
    """A member whose local header lies inside another member's data is refused."""
    inner = entry("b", b"hidden")
    header = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, inner["crc"], 6, 6, 1, 0
    )
    inner_bytes = header + b"b" + b"hidden"
    outer = entry("a", inner_bytes)
    data = build([outer, inner], offsets={1: 30 + 1})  # b's header is inside a's data
    path = write(tmp_path, data)
    assert lenient_reads(path) == ["a", "b"]
    refused(path, "overlap")


@pytest.mark.parametrize(
    "mode,what", [(0o120777, "symbolic link"), (0o020644, "device"), (0o010644, "FIFO")]
)
def test_special_files(tmp_path: Path, mode: int, what: str) -> None:
    """Symlink, device and FIFO members are refused."""
    path = write(tmp_path, build([entry("link", b"/etc/passwd", attr=mode << 16)]))
    refused(path, what)


@pytest.mark.parametrize(
    "name",
    ["../evil.py", "/etc/evil", "C:evil", "a\\..\\b", "a/./b", "a//b", "a/..", "bell\x07", ""],
)
def test_names_that_leave_the_archive(tmp_path: Path, name: str) -> None:
    """..., absolute, drive, backslash, empty components and control characters are refused."""
    assert bad_name(name)
    path = write(tmp_path, build([entry(name, b"x")]))
    refused(path, "the member")


def test_unicode_path_extra_field(tmp_path: Path) -> None:
    """A second spelling of a name in the Unicode path extra field is refused."""
    extra = struct.pack("<HHB", 0x7075, 9, 1) + struct.pack("<I", zlib.crc32(b"a")) + b"evil"
    path = write(tmp_path, build([entry("a", b"x", central_extra=extra)]))
    refused(path, "second spelling")


def test_decompression_bomb_by_ratio_and_total(tmp_path: Path) -> None:
    """A member inflating far beyond its size, or too much content overall, is refused."""
    path = write(tmp_path, build([entry("zeros", b"\0" * (16 << 20), method=8)]))
    refused(path, "decompression bomb")
    small = write(tmp_path, build([entry("a", b"x" * 1000), entry("b", b"y" * 1000)]), "s.zip")
    refused(small, "more than the 1500 allowed", max_total=1500)


def test_deflate_that_lies_about_its_size(tmp_path: Path) -> None:
    """Inflating past the declared size, or short of it, is refused while reading."""
    e = entry("a", b"z" * 4000, method=8, usize=100, local_usize=100)
    refused(write(tmp_path, build([e])), "inflates past")
    e = entry("a", b"z" * 4000, method=8, usize=5000, local_usize=5000)
    refused(write(tmp_path, build([e]), "b.zip"), "CRC")


def test_truncated_and_miscounted(tmp_path: Path) -> None:
    """A truncated file, or an end record counting entries that are not there, refuses the whole file."""
    data = build([entry("a", b"x" * 100), entry("b", b"y")])
    refused(write(tmp_path, data[:-30]), "end record|past the end|damaged")
    refused(
        write(tmp_path, build([entry("a", b"x"), entry("b", b"y")], count=3), "c.zip"),
        "counts 3 members|malformed",
    )
    refused(
        write(tmp_path, build([entry("a", b"x"), entry("b", b"y")], count=1), "d.zip"),
        "beyond its counted",
    )


def test_two_end_records(tmp_path: Path) -> None:
    """An archive whose comment hides a second end record is ambiguous and refused."""
    inner = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0, 0)
    path = write(tmp_path, build([entry("a", b"x")], comment=inner))
    refused(path, "two zip end records")


def test_zip64_locator_pointing_elsewhere(tmp_path: Path) -> None:
    """A zip64 locator that does not point at the record right before it is refused."""
    data = bytearray(build([entry("a", b"x")]))
    eocd = data.rfind(b"PK\x05\x06")
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1)
    record = struct.pack(
        "<4sQHHIIQQQQ",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        1,
        1,
        eocd - data.find(b"PK\x01\x02"),
        data.find(b"PK\x01\x02"),
    )
    path = write(tmp_path, bytes(data[:eocd] + record + locator + data[eocd:]))
    refused(path, "zip64 locator")


def test_data_descriptor_must_match(tmp_path: Path) -> None:
    """A data descriptor that disagrees with the directory is refused."""
    e = entry("a", b"hello", flags=0x08, local_crc=0, local_csize=0, local_usize=0)
    good = struct.pack("<4sIII", b"PK\x07\x08", e["crc"], 5, 5)
    check_archive(write(tmp_path, build([e], descriptor={0: good})))
    bad = struct.pack("<4sIII", b"PK\x07\x08", e["crc"], 5, 6)
    refused(write(tmp_path, build([e], descriptor={0: bad}), "b.zip"), "data descriptor")


def test_methods_and_stored_sizes(tmp_path: Path) -> None:
    """Unlisted compression methods and stored members with two sizes are refused."""
    refused(write(tmp_path, build([entry("a", b"x", method=12)])), "compression method 12")
    refused(
        write(tmp_path, build([entry("a", b"xy", usize=3, local_usize=3)]), "b.zip"),
        "two different sizes",
    )


def test_unexpected_member(tmp_path: Path) -> None:
    """A name the caller's predicate refuses makes the archive refused."""
    path = write(
        tmp_path, build([entry("archive/data.pkl", b"x"), entry("archive/evil.pkl", b"y")])
    )
    refused(
        path, "unexpected member 'archive/evil.pkl'", expected=lambda n: n == "archive/data.pkl"
    )


# -- torch-style archives ---------------------------------------------------------------------


torch = pytest.importorskip("torch")


def _torch_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf)
    return buf.getvalue()


def torch_members(raw: bytes) -> Callable[[str], bool]:
    """The members torch.save writes for one tensor (what a loader would expect)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = set(zf.namelist())
    return names.__contains__


def test_torch_save_passes(tmp_path: Path) -> None:
    """torch.save's zip (zip64 records, data descriptors, padding) passes as is."""
    raw = _torch_bytes()
    path = write(tmp_path, raw, "m.pt")
    names = [i.filename for i in check_archive(path, expected=torch_members(raw))]
    assert any(n.endswith("/data.pkl") for n in names)


def test_torch_archive_with_unreferenced_pickle(tmp_path: Path) -> None:
    """archive/data.pkl plus an extra archive/evil.pkl: refused by the expected-member predicate."""
    path = write(
        tmp_path,
        build(
            [
                entry("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2)),
                entry("archive/evil.pkl", pickle.dumps("x", protocol=2)),
            ]
        ),
        "m.pt",
    )
    refused(
        path,
        "unexpected member 'archive/evil.pkl'",
        expected=lambda n: n in {"archive/data.pkl", "archive/version"},
    )


def test_torch_save_with_duplicated_data_pkl(tmp_path: Path) -> None:
    """torch.save output with a second data.pkl member appended: zipfile reads the last one."""
    raw = _torch_bytes()
    path = tmp_path / "m.pt"
    path.write_bytes(raw)
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
    with zipfile.ZipFile(path, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate it writes
        zf.writestr(pkl, pickle.dumps({"other": 1}, protocol=2))
    with zipfile.ZipFile(path) as zf:
        assert pickle.loads(zf.read(pkl)) == {"other": 1}
    refused(path, "two members named")


def test_read_archive_keeps_exactly_the_checked_bytes(tmp_path: Path) -> None:
    """``read_archive`` hands back the bytes of the members ``keep`` selects, read in the pass
    that checks their CRC (stored and deflated, one byte to several read chunks): what
    ``zipfile`` reads from the same archive, and nothing for the others."""
    import random

    from modelstore.security.zipcheck import read_archive

    big = random.Random(0).randbytes(2_300_000)  # more than two 1 MiB read chunks
    path = write(
        tmp_path,
        build(
            [
                entry("m/data.pkl", b"\x80\x02N."),
                entry("m/big.pkl", big, method=8),
                entry("m/one.pkl", b"x", method=8),
                entry("m/stored.pkl", big[::-1]),
                entry("m/data/0", b"\0" * 64),
            ]
        ),
    )
    members, kept = read_archive(path, keep=lambda i: i.filename.endswith(".pkl"))
    names = ["m/data.pkl", "m/big.pkl", "m/one.pkl", "m/stored.pkl"]
    assert [m.info.filename for m in members] == [*names, "m/data/0"]
    with zipfile.ZipFile(path) as zf:
        assert kept == {n: zf.read(n) for n in names}


def test_read_archive_checks_what_it_keeps_even_without_crc(tmp_path: Path) -> None:
    """A kept member is always verified, whatever ``crc`` says: a bad CRC, a deflate stream
    that runs past its declared size, or one that stops short, refuses the archive."""
    from modelstore.security.zipcheck import read_archive

    def keep_all(info: zipfile.ZipInfo) -> bool:
        return True

    bad_crc = write(tmp_path, build([entry("a", b"hello", crc=zlib.crc32(b"hellO"))]), "c.zip")
    assert read_archive(bad_crc, crc=False)[1] == {}
    with pytest.raises(ArchiveError, match="CRC"):
        read_archive(bad_crc, keep=keep_all, crc=False)
    past = entry("a", b"z" * 4000, method=8, usize=100, local_usize=100)
    with pytest.raises(ArchiveError, match="inflates past"):
        read_archive(write(tmp_path, build([past]), "p.zip"), keep=keep_all, crc=False)
    short = entry("a", b"z" * 4000, method=8, usize=5000, local_usize=5000)
    with pytest.raises(ArchiveError, match="CRC"):
        read_archive(write(tmp_path, build([short]), "s.zip"), keep=keep_all, crc=False)


def test_a_torch_pickle_is_scanned_from_the_strict_readers_bytes(tmp_path: Path) -> None:
    """A ``.pt`` whose pickle bytes were changed after the CRC was written is refused as
    damaged before anything reads the pickle; one whose ``data.pkl`` was deflated by another
    zip tool (torch stores every member) is refused before it is inflated: a pickle deflated
    200x is 200x the objects (red team: 1.3 MB of file, ~19 GB of scan), though torch itself
    reads it."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(4.0)}, path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\x80\x02}q\x00")  # the pickle's first bytes, in the first member
    raw[at + 2] ^= 1
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ms.IntegrityError, match="CRC"):
        ms.load(tampered)
    assert ms.scan(tampered).verdict != "safe"
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(deflated, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_DEFLATED if info.filename.endswith(".pkl") else zipfile.ZIP_STORED
            dst.writestr(info.filename, src.read(info), compress_type=method)
    assert torch.load(deflated, weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert ms.scan(deflated).verdict != "safe"
    with pytest.raises(ms.ModelstoreError, match="compression method 8"):
        ms.load(deflated)


def test_a_torch_pickle_over_the_size_limit_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``data.pkl`` larger than ``MAX_PICKLE_BYTES`` (256 MiB) is never read into memory:
    scan reports it, load and inspect refuse the file."""
    torch = pytest.importorskip("torch")
    from modelstore.security import torchfile

    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(4.0)}, path)
    monkeypatch.setattr(torchfile, "MAX_PICKLE_BYTES", 16)
    report = torchfile.read_pickles(path)
    assert report.main is not None and "more than the 16 modelstore reads" in (
        report.main.error or ""
    )
    assert ms.scan(path).verdict == "unsafe"
    with pytest.raises(ms.ModelstoreError, match="more than the 16 modelstore reads"):
        ms.inspect(path)
    with warnings.catch_warnings(), pytest.raises(ms.UnsafeModelError, match="more than the 16"):
        warnings.simplefilter("ignore")
        ms.load(path)

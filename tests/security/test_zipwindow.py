"""A stored zip member read in place (``security/zipwindow.py``): the same bytes as zipfile's."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

from modelstore.security.zipwindow import open_stored


def _archive(path: Path, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.json", b"{}")
        zf.writestr(zipfile.ZipInfo("w.h5"), data, compress_type=zipfile.ZIP_STORED)
        zf.writestr("z.bin", data, compress_type=zipfile.ZIP_DEFLATED)


def test_reads_and_seeks_like_zipfile(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(100_000)
    path = tmp_path / "m.keras"
    _archive(path, data)
    with zipfile.ZipFile(path) as zf:
        window = open_stored(zf, "w.h5")
        assert window is not None
        assert window.read() == data
        rng = random.Random(1)
        for _ in range(50):  # backward and forward seeks, reads past the end
            pos, n = rng.randrange(0, 110_000), rng.randrange(0, 5000)
            window.seek(pos)
            assert window.read(n) == data[pos : pos + n]
        window.seek(-10, io.SEEK_END)
        assert window.read() == data[-10:]
        assert open_stored(zf, "z.bin") is None  # compressed: zipfile reads it


def test_a_local_header_that_disagrees_is_not_read_in_place(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    _archive(path, b"x" * 1000)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"w.h5")  # the local header's name (the central directory's comes later)
    raw[at : at + 4] = b"v.h5"
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert open_stored(zf, "w.h5") is None

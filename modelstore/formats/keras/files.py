"""modelstore's metadata inside Keras files: the ``modelstore.json`` entry of a ``.keras``
archive and the ``modelstore`` attribute of an HDF5 file, with the checksums that cover them;
and a correctly suffixed name for Keras' reader."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import FormatError
from ...storage.hashing import format_checksum, new_checksum, update_from_file

META_ENTRY = "modelstore.json"
META_ATTR = "modelstore"


@contextlib.contextmanager
def _with_suffix(path: Path, suffix: str) -> Iterator[str]:
    """Keras picks its reader from the suffix: give it a correctly named link if needed."""
    if path.name.lower().endswith(suffix) or (suffix == ".h5" and path.suffix.lower() == ".hdf5"):
        yield str(path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / f"model{suffix}"
        # /proc/self/fd/N as it is (its target's path may name another file by now)
        os.symlink(path if str(path).startswith("/proc/self/fd/") else path.resolve(), link)
        yield str(link)


#: What a ``.keras`` checksum covers (recorded as ``checksum_covers``): every byte of the
#: archive's members before modelstore's entry, and the central directory's record of each of
#: them (name, offset, sizes, CRC, method), which is what Keras reads the archive by. Files
#: without the field were written when the checksum covered the member bytes alone.
_COVERS = "members+directory"


def _zip_checksum(path: Path, zf: zipfile.ZipFile, *, directory: bool) -> str:
    """The checksum of the Keras archive inside ``path``, modelstore's entry left out."""
    infos = zf.infolist()
    ours = [i for i in infos if i.filename == META_ENTRY]
    end = ours[0].header_offset if ours else zf.start_dir
    hasher = new_checksum()
    update_from_file(hasher, path, 0, end)
    if directory:
        # every field of each member's central-directory record (so every byte of it), and the
        # archive comment: what Keras reads the archive by
        rows = sorted(
            (
                i.header_offset,
                i.filename,
                i.compress_size,
                i.file_size,
                i.CRC,
                i.compress_type,
                list(i.date_time),
                i.create_system,
                i.create_version,
                i.extract_version,
                i.flag_bits,
                i.volume,
                i.internal_attr,
                i.external_attr,
                i.extra.hex(),
                i.comment.hex(),
            )
            for i in infos
            if i.filename != META_ENTRY
        )
        if any(row[0] >= end for row in rows):
            raise FormatError(
                f"{path}: an archive member lies after modelstore's metadata entry; the file was altered"
            )
        hasher.update(json.dumps([rows, zf.comment.hex()]).encode())
    return format_checksum(hasher)


def _embed_zip(path: Path, meta: dict[str, Any]) -> None:
    """Append modelstore.json; its checksum covers the Keras archive before it, bytes and
    central directory (see ``_COVERS``)."""
    with zipfile.ZipFile(path) as zf:
        checksum = _zip_checksum(path, zf, directory=True)
    record = {**meta, "checksum": checksum, "checksum_covers": _COVERS}
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(META_ENTRY, json.dumps(record, sort_keys=True))


def _embed_h5(path: Path, meta: dict[str, Any]) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        record = {**meta, "checksum": _h5_checksum(f)}
        f.attrs[META_ATTR] = json.dumps(record, sort_keys=True)


def _h5_checksum(f: Any) -> str:
    """Checksum of every dataset (name, shape, dtype, bytes) and every attribute but ours."""
    import h5py

    hasher = new_checksum()
    for key in sorted(k for k in f.attrs if k != META_ATTR):
        hasher.update(f"{key}={f.attrs[key]!r}".encode())
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for name in sorted(names):
        d = f[name]
        hasher.update(f"{name}:{d.shape}:{d.dtype}".encode())
        if d.ndim == 0 or d.shape[0] == 0:
            hasher.update(d[()].tobytes())
            continue
        rows = max(1, (16 << 20) // max(1, d.dtype.itemsize * (d.size // d.shape[0] or 1)))
        for start in range(0, d.shape[0], rows):  # bounded memory, whatever the dataset's size
            hasher.update(d[start : start + rows].tobytes())
    return format_checksum(hasher)

"""Writing a safetensors file: the tensors of a module or state dict made savable (contiguous, on
the CPU, each shared tensor once, ties recorded), then written with modelstore's metadata and
the checksum of header and payload in the header, the file's sha256 computed alongside."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UnsupportedModelError
from ...storage.hashing import PendingDigest, format_checksum, hash_file_later, new_checksum
from ..torch import common as _torch
from .file import CHECKSUM_KEY, DTYPES, canonical

#: torch dtype name -> safetensors code, for the dtypes safetensors holds.
_CODES = {name: code for code, (name, _) in DTYPES.items()}


@dataclass(frozen=True)
class Written:
    """What :func:`write_tensors` wrote: the file's sha256 (still being computed when asked
    for ``later``), its size and, when asked for, the xxh3 checksum of the whole file (what a
    shard index records)."""

    sha256: str | PendingDigest
    size: int
    file_checksum: str | None = None


def savable(obj: Any, hint: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors a safetensors file of ``obj`` (a module or a flat dict of tensors) holds:
    contiguous CPU tensors in the state dict's order, each shared tensor once, and the tie
    map (alias -> kept name). Raises UnsupportedModelError for what safetensors cannot hold."""
    sd = _torch.state_dict_of(obj)
    if not (_torch.is_state_dict(sd) or (_torch.is_module(obj) and not sd)):
        raise UnsupportedModelError(hint)
    if "__metadata__" in sd:  # the header's own key: the tensor would be overwritten
        raise UnsupportedModelError(
            "safetensors reserves the name '__metadata__' for the header's metadata; rename "
            "that tensor, or save as .pt"
        )
    bad = sorted(
        {str(t.dtype) for t in sd.values() if str(t.dtype).replace("torch.", "") not in _CODES}
    )
    if bad:
        names = ", ".join(sorted(_CODES))
        raise UnsupportedModelError(
            f"safetensors cannot hold {', '.join(bad)} tensors (it holds {names}); save as .pt"
        )
    tensors, tied = _dedupe(sd)
    return {k: tensors[k] for k in sd if k in tensors}, tied


def write_tensors(
    path: Path,
    tensors: dict[str, Any],
    metadata: dict[str, str],
    *,
    file_checksum: bool = False,
    later: bool = False,
) -> Written:
    """Write ``tensors`` (as :func:`savable` returns them) to ``path`` as a safetensors file
    whose header's ``__metadata__`` holds ``metadata`` plus ``modelstore.checksum``: the
    xxh3 of the canonical header (without that key) and the payload.

    The file's sha256: by default computed while writing, from the same buffers, in a second
    thread (the write waits for it); ``later=True`` reads it back from the written file in a
    background thread instead (a :class:`PendingDigest`: the save returns when the file is
    written, and the tensors, which the caller may change from then on, are not read again)."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {}
    pos = 0
    for k in order:
        t = tensors[k]
        n = t.numel() * t.element_size()
        header[k] = {
            "dtype": _CODES[str(t.dtype).replace("torch.", "")],
            "shape": list(t.shape),
            "data_offsets": [pos, pos + n],
        }
        pos += n
    header["__metadata__"] = {**metadata}
    hasher = new_checksum()
    hasher.update(canonical(header))
    views = [_bytes_of(tensors[k]) for k in order]
    if later and not file_checksum:
        return _write_then_checksum(path, header, hasher, views)
    for v in views:
        hasher.update(v)
    header["__metadata__"][CHECKSUM_KEY] = format_checksum(hasher)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-(8 + len(blob)) % 8)
    whole = new_checksum() if file_checksum else None
    chunks: list[bytes | memoryview] = [struct.pack("<Q", len(blob)), blob, *views]
    if later:
        size = _write_chunks(path, chunks, whole)
        pending = hash_file_later(path)
        return Written(pending, size, format_checksum(whole) if whole is not None else None)
    # the whole file's sha256 (~1.4 GB/s) off the write path: a second thread hashes the same
    # (immutable while we write) chunks as this one writes them; both release the GIL
    digest: list[str] = []
    hashing = threading.Thread(
        target=_sha256_into, args=(chunks, digest), name="modelstore-sha256", daemon=True
    )
    hashing.start()
    try:
        size = _write_chunks(path, chunks, whole)
    finally:
        hashing.join()
    sha = (
        digest[0] if digest else _sha256_of(chunks)
    )  # the thread failed (it cannot, but never trust it)
    return Written(sha, size, format_checksum(whole) if whole is not None else None)


def _write_then_checksum(
    path: Path, header: dict[str, Any], hasher: Any, views: list[memoryview]
) -> Written:
    """Write the file with a placeholder where the header's checksum goes, hashing the
    tensors in a second thread meanwhile (the checksum, ~10 GB/s, was ~10% of a save when it
    ran before the write), then write the checksum into its place. The checksum is the last
    value of the last object in the header, so its place is known from the header's length."""
    placeholder = "0" * len(format_checksum(hasher))
    header["__metadata__"][CHECKSUM_KEY] = placeholder
    text = json.dumps(header, separators=(",", ":")).encode()
    at = len(text) - len(placeholder) - 3  # ...,"modelstore.checksum":"<placeholder>"}}
    if text[at - len(CHECKSUM_KEY) - 4 :] != f'"{CHECKSUM_KEY}":"{placeholder}"}}}}'.encode():
        raise AssertionError("the checksum is not the header's last value")  # cannot happen
    blob = text + b" " * (-(8 + len(text)) % 8)
    digest: list[str] = []
    hashing = threading.Thread(
        target=_checksum_into, args=(hasher, views, digest), name="modelstore-xxh3", daemon=True
    )
    size = 8 + len(blob)
    hashing.start()
    try:
        with open(path, "wb") as f:
            chunks: list[bytes | memoryview] = [struct.pack("<Q", len(blob)), blob, *views]
            for chunk in chunks:
                f.write(chunk)
            hashing.join()
            if not digest:  # the thread failed (it cannot, but never trust it)
                for v in views:
                    hasher.update(v)
                digest.append(format_checksum(hasher))
            f.seek(8 + at)  # the same open file: never the path again
            f.write(digest[0].encode())
    finally:
        hashing.join()
    return Written(hash_file_later(path), size + sum(v.nbytes for v in views), None)


def _checksum_into(hasher: Any, views: list[memoryview], out: list[str]) -> None:
    """Feed ``views`` to ``hasher`` a MiB at a time, letting the writing thread have the
    GIL between pieces (xxhash holds it while hashing)."""
    import time

    step = 1 << 20
    for v in views:
        flat = v.cast("B") if v.ndim != 1 or v.format != "B" else v
        for i in range(0, len(flat), step):
            hasher.update(flat[i : i + step])
            time.sleep(0)
    out.append(format_checksum(hasher))


def _write_chunks(path: Path, chunks: list[bytes | memoryview], whole: Any) -> int:
    """Write ``chunks`` to the new file ``path`` (feeding ``whole``, if any); bytes written."""
    size = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            if whole is not None:
                whole.update(chunk)
            size += len(chunk) if isinstance(chunk, bytes) else chunk.nbytes
    return size


def _sha256_of(chunks: list[bytes | memoryview]) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk)
    return sha.hexdigest()


def _sha256_into(chunks: list[bytes | memoryview], out: list[str]) -> None:
    out.append(_sha256_of(chunks))


def _bytes_of(t: Any) -> memoryview:
    import torch

    flat = t.reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy())


def _dedupe(sd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Contiguous CPU tensors, each shared tensor stored once; ``tied`` maps alias -> kept."""
    seen: dict[tuple[Any, ...], str] = {}
    storages: dict[int, list[str]] = {}
    out: dict[str, Any] = {}
    tied: dict[str, str] = {}
    for name in sorted(sd):
        t = sd[name].detach()
        if t.device.type == "meta":
            raise UnsupportedModelError(
                f"tensor {name!r} is on the meta device and has no data to save"
            )
        key = (
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
            t.dtype,
        )
        if t.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        storages.setdefault(t.untyped_storage().data_ptr(), []).append(name)
        out[name] = t
    for names in storages.values():
        shared = len(names) > 1
        for n in names:
            t = out[n].to("cpu")
            # distinct views of one storage must not be written as overlapping regions
            out[n] = t.clone() if shared or not t.is_contiguous() else t.contiguous()
    return out, tied

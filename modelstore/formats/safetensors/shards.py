"""Sharded safetensors checkpoints: writing, loading, inspecting and scanning them.

The layout and the index (read as hostile input) are described in :mod:`.index`.
torch is imported inside functions only.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..._info import Finding, ScanReport, TensorInfo
from ...errors import (
    FormatError,
    IntegrityError,
    ModelExistsError,
    ModelNotFoundError,
    StorageError,
    UnsafeModelError,
)
from ...security import unreadable
from ...storage.files import atomic_paths, write_json, writer_lock
from ...storage.hashing import check_checksum, file_checksum, file_sha256, remember_sha256
from ..base import Inspection, LoadRequest
from ..torch import common as _torch
from ..torch import dtype as _dtype
from .index import (
    _RESERVED,
    INDEX_SUFFIX,
    SHARD_SUFFIX,
    Index,
    open_shard,
    pack,
    read_index,
    shard_path,
    shard_target,
)


def write_sharded(
    model: Any,
    path: Path,
    meta: dict[str, Any],
    *,
    limit: int,
    dtype: str | None,
    overwrite: bool,
    hint: str,
) -> Path:
    """``save(..., max_shard_size=)``: see the module docstring. Returns the index's path."""
    from .file import META_KEY
    from .write import savable, write_tensors

    folder, prefix = shard_target(path)
    index_path = folder / (prefix + INDEX_SUFFIX)
    if not overwrite and index_path.exists():
        msg = f"{index_path}: already exists and overwrite=False; pick another name or pass overwrite=True"
        raise ModelExistsError(errno.EEXIST, msg, str(index_path))
    payload = model if dtype is None else _dtype.cast_for_save(model, dtype, meta, index_path)
    tensors, tied = savable(payload, hint)
    if tied:
        meta["tied"] = tied
    sizes = {k: t.numel() * t.element_size() for k, t in tensors.items()}
    groups = pack(sizes, limit)
    names = [
        f"{prefix}-{i:05d}-of-{len(groups):05d}{SHARD_SUFFIX}" for i in range(1, len(groups) + 1)
    ]
    if not folder.is_dir():
        try:
            folder.mkdir()
        except FileExistsError:
            pass
        except OSError as e:
            raise StorageError(
                e.errno, f"{folder}: cannot create the folder: {e.strerror}", str(folder)
            ) from None
    shard_meta: dict[str, Any] = {
        k: meta[k] for k in ("modelstore", "framework", "framework_version") if k in meta
    }
    records: dict[str, dict[str, Any]] = {}
    single = folder / (prefix + SHARD_SUFFIX)  # an older single-file save of the same name
    with writer_lock(index_path), atomic_paths(*[folder / n for n in names], index_path) as temps:
        for number, (name, keys, tmp) in enumerate(zip(names, groups, temps), 1):
            header_meta: dict[str, Any] = {
                **shard_meta,
                "format": "safetensors",
                "shard": {"index": index_path.name, "number": number, "of": len(names)},
            }
            written = write_tensors(
                tmp,
                {k: tensors[k] for k in keys},
                {"format": "pt", META_KEY: json.dumps(header_meta, sort_keys=True)},
                file_checksum=True,
            )
            records[name] = {
                "checksum": written.file_checksum,
                "sha256": written.sha256 if isinstance(written.sha256, str) else written.sha256(),
                "size": written.size,
            }
        index = {
            "metadata": {"total_size": sum(sizes.values()), "modelstore": meta, "shards": records},
            "weight_map": {k: name for name, keys in zip(names, groups) for k in keys},
        }
        write_json(temps[-1], index)
    for name, rec in records.items():
        remember_sha256(folder / name, rec["sha256"])
    _remove_stale(folder, prefix, set(names))
    if path.name == single.name and single.is_file() and not single.is_symlink():
        # NAME.safetensors now means the shards: the older single file would shadow them
        single.unlink(missing_ok=True)
    return index_path


def _remove_stale(folder: Path, prefix: str, keep: set[str]) -> None:
    """Shards an earlier save with another shard count left, which the new index does not name."""
    pattern = re.compile(re.escape(prefix) + r"-\d{5}-of-\d{5}" + re.escape(SHARD_SUFFIX))
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.name not in keep:
            try:
                entry.unlink()
            except OSError:
                pass


# -- loading ---------------------------------------------------------------------------------


def load_index(index: Path, request: LoadRequest) -> Any:
    """``load`` of a sharded checkpoint (the pipeline has gated and retries on a change):
    shards are checked and memory-mapped one at a time, through one descriptor each."""
    from .file import DTYPES, load_tensors, read_header

    idx = read_index(index)
    paths = {name: shard_path(index, name) for name in idx.shards}
    headers = {}
    for name, p in paths.items():
        with open_shard(index, name) as f:
            headers[name] = read_header(p, f)
    layout = _layout(idx, headers, DTYPES)

    def parts() -> Iterator[dict[str, Any]]:
        for name in idx.shards:
            p = paths[name]
            with open_shard(index, name) as f:  # one descriptor: checked, hashed and mapped
                check_shard(
                    index,
                    p,
                    idx.records.get(name),
                    verify=request.verify,
                    pinned=request.pinned,
                    file=f,
                )
                tensors = load_tensors(p, f)
            part: dict[str, Any] = {}
            for key in idx.keys_of(name):
                if key not in tensors:
                    raise IntegrityError(
                        f"{p}: the shard no longer holds {key!r}; it changed while it was read"
                    )
                part[key] = tensors[key]
            yield part

    return _torch.build_from_parts(layout, parts, request, index)


def _layout(idx: Index, headers: dict[str, Any], dtypes: dict[str, Any]) -> dict[str, Any]:
    """Every tensor the index lists, as a meta tensor of its shape and dtype (no data read)."""
    import torch

    out: dict[str, Any] = {}
    for key, name in idx.weight_map.items():
        entry = headers[name].entries.get(key)
        if entry is None:
            msg = (
                f"{idx.path}: the index puts {key!r} in {name}, but that shard does not hold it; "
                f"the shard or the index is damaged, or they come from different saves"
            )
            raise IntegrityError(msg)
        out[key] = torch.empty(
            entry["shape"], dtype=getattr(torch, dtypes[entry["dtype"]][0]), device="meta"
        )
    return out


def check_shard(
    index: Path,
    path: Path,
    record: dict[str, Any] | None,
    *,
    verify: bool,
    pinned: bool,
    file: BinaryIO,
) -> None:
    """Check one shard just before it is read: against the sha256 the index records when the
    index is pinned; else (``verify``) against the index's size and checksum, or failing
    those the checksum in the shard's own header. ``file`` is the shard opened by
    :func:`open_shard`: what is checked is what is then mapped."""
    from .file import checksum_of, read_header

    rec = record or {}
    if pinned:
        want = rec.get("sha256")
        if not want:
            msg = (
                f"{index}: sha256= pins the index, but it records no sha256 for the shard {path.name}, "
                f"so the pin cannot cover it; load it without sha256="
            )
            raise IntegrityError(msg)
        actual = file_sha256(file)
        if actual != want:
            msg = (
                f"{path}: sha256 is {actual}, not the {want} the pinned index {index.name} records. "
                f"The shard is not the one you pinned; do not load it"
            )
            raise IntegrityError(msg)
        return
    if not verify:
        return
    size = os.fstat(file.fileno()).st_size
    if rec.get("size") is not None and size != rec["size"]:
        msg = (
            f"{path}: {size} bytes, but the index {index.name} records {rec['size']}; "
            f"the shard is truncated or from another save"
        )
        raise IntegrityError(msg)
    if rec.get("checksum"):
        check_checksum(path, rec["checksum"], file_checksum(path, file), f"the index {index.name}")
        return
    h = read_header(path, file)
    own = h.modelstore_meta()
    if own and isinstance(own.get("checksum"), str):  # the header's own: canonical header + payload
        check_checksum(path, own["checksum"], checksum_of(h, file), "its header")


# -- inspect, scan, metadata ----------------------------------------------------------------------


def inspect_index(index: Path) -> Inspection:
    """What ``inspect`` reports from the index and the shard headers only."""
    from .file import DTYPES, read_header

    idx = read_index(index)
    tensors: list[TensorInfo] = []
    size = 0
    framework = None
    for name in idx.shards:
        p = shard_path(index, name)
        with open_shard(index, name) as f:
            h = read_header(p, f)
        size += h.file_size
        framework = framework or {
            "pt": "torch",
            "tf": "tensorflow",
            "np": "numpy",
            "flax": "flax",
        }.get(h.metadata.get("format", ""))
        for key in idx.keys_of(name):
            e = h.entries.get(key)
            if e is None:
                raise IntegrityError(
                    f"{index}: the index puts {key!r} in {name}, but that shard does not hold it"
                )
            b, end = e["data_offsets"]
            tensors.append(TensorInfo(key, tuple(e["shape"]), DTYPES[e["dtype"]][0], end - b))
    meta = idx.meta or {}
    info: dict[str, Any] = {
        k: v
        for k, v in idx.metadata.items()
        if k not in _RESERVED
        and isinstance(v, (str, int, float, bool))
        and k not in (meta.get("tied") or {})
    }
    info["shards"] = len(idx.shards)
    if type(idx.metadata.get("total_size")) is int:
        info["total_size"] = idx.metadata["total_size"]
    return Inspection(
        framework=meta.get("framework") or framework or ("torch" if not idx.shards else None),
        tensors=tensors,
        num_params=sum(t.numel for t in tensors),
        meta=idx.meta,
        extra_metadata=info,
        size_bytes=size,
    )


def scan_index(index: Path) -> ScanReport:
    """ "safe" when the index is well formed and every shard's header parses (tensors and
    string metadata only); else "unknown" with a finding per problem."""
    from .file import read_header

    try:
        idx = read_index(index)
    except UnsafeModelError as e:  # leads outside its folder: an attack, not damage
        return ScanReport(
            str(index), "safetensors", "unsafe", [Finding("index", "critical", str(e))]
        )
    except (FormatError, IntegrityError, ModelNotFoundError, StorageError) as e:
        kind = "damaged" if isinstance(e, IntegrityError) else "format"
        return unreadable(index, "safetensors", kind, str(e), subject="index")
    findings: list[Finding] = []
    for name in idx.shards:
        try:
            with open_shard(index, name) as f:
                header = read_header(shard_path(index, name), f)
            missing = [k for k in idx.keys_of(name) if k not in header.entries]
            if missing:
                raise IntegrityError(
                    f"{index}: the index puts {missing[0]!r} in {name}, but that shard does not hold it"
                )
        except UnsafeModelError as e:
            findings.append(Finding(name, "critical", str(e)))
        except (FormatError, IntegrityError, ModelNotFoundError, StorageError) as e:
            kind = "format" if isinstance(e, FormatError) else "damaged"
            findings += unreadable(index, "safetensors", kind, str(e), subject=name).findings
    if findings:
        unsafe = any(f.severity == "critical" for f in findings)
        return ScanReport(str(index), "safetensors", "unsafe" if unsafe else "unknown", findings)
    what = f"{len(idx.shards)} safetensors shards: tensors and string metadata only; nothing to execute"
    return ScanReport(str(index), "safetensors", "safe", [Finding("index", "info", what)])

"""Sharded safetensors checkpoints, laid out as Hugging Face lays them out: the index.

``save(model, path, max_shard_size="2GB")`` writes ``model-00001-of-00003.safetensors`` ...
and ``model.safetensors.index.json``::

    {"metadata": {"total_size": 123456,                 # bytes of tensor data, as HF counts it
                  "modelstore": {...},                  # what build_meta() records, "tied", "cast"
                  "shards": {"model-00001-of-00003.safetensors":
                                 {"checksum": "xxh3_128:...", "sha256": "...", "size": 40960}}},
     "weight_map": {"fc1.weight": "model-00001-of-00003.safetensors", ...}}

Each shard is a plain safetensors file (``{"format": "pt"}`` in its header, so Hugging Face
loaders accept it) with its own ``modelstore.checksum``. Shards are written to temporary
files, fsynced and renamed first, the index last; shards of an earlier save that the new
index no longer names are removed after it.

``load`` reads the index as hostile input: shard names must be plain file names in the
index's folder, every tensor it lists must be in its shard. Shards are verified and
memory-mapped one at a time, just before their tensors are needed. Indexes without
modelstore metadata (``huggingface_hub.save_torch_state_dict``, transformers) load too.

torch is imported inside functions only; this module is imported on first use.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import (
    ArgumentError,
    FormatError,
    ModelNotFoundError,
    StorageError,
)
from ...security.confine import check_name, confine, open_confined, read_confined
from ...security.jsonsafe import loads
from ..base import check_meta

INDEX_SUFFIX = ".safetensors.index.json"
SHARD_SUFFIX = ".safetensors"
DEFAULT_PREFIX = "model"
#: An index is a name -> file map: far below this even for the largest models.
MAX_INDEX = 64 << 20
#: Entries of an index's "metadata" that are not the writer's own (HF puts ties there).
_RESERVED = {"total_size", "total_parameters", "modelstore", "shards", "format"}
_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


# -- finding an index ------------------------------------------------------------------------


def is_index(path: Path) -> bool:
    return path.name.lower().endswith(INDEX_SUFFIX)


def entry_file(names: list[str]) -> str | None:
    """The index of a checkpoint folder holding ``names``: ``model.safetensors.index.json``,
    else its only ``*.safetensors.index.json`` (several: FormatError asking for one)."""
    default = DEFAULT_PREFIX + INDEX_SUFFIX
    if default in names:
        return default
    found = sorted(n for n in names if n.lower().endswith(INDEX_SUFFIX))
    if len(found) > 1:
        msg = f"the folder holds several shard indexes ({', '.join(found)}); pass the one to load"
        raise FormatError(msg)
    return found[0] if found else None


def alternatives(name: str) -> list[str]:
    """A sharded save to ``NAME.safetensors`` writes ``NAME.safetensors.index.json``."""
    if name.lower().endswith(SHARD_SUFFIX) and not name.lower().endswith(INDEX_SUFFIX):
        return [name + ".index.json"]
    return []


# -- reading an index (hostile input) ----------------------------------------------------------


@dataclass
class Index:
    """A parsed, validated shard index."""

    path: Path
    weight_map: dict[str, str]
    metadata: dict[str, Any]
    meta: dict[str, Any] | None  # modelstore's metadata, "tied" added from HF's entries
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    sha256: str = ""  # of the very bytes parsed (what a pin is compared with)
    _by_shard: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def shards(self) -> list[str]:
        """Every shard file the weight map names, in file-name order."""
        return sorted(set(self.weight_map.values()))

    def keys_of(self, shard: str) -> list[str]:
        """The tensors the weight map puts in ``shard``, in weight-map order."""
        if not self._by_shard:
            for key, name in self.weight_map.items():
                self._by_shard.setdefault(name, []).append(key)
        return self._by_shard.get(shard, [])


def check_shard_name(index: Path, name: str) -> None:
    """A shard must be a plain ``*.safetensors`` file name: the one confinement check's name
    rules (no ``..``, nothing absolute, no encoded or Windows separators; ConfinementError),
    and no folders either (FormatError), so an index can only point into its own folder."""
    parts = check_name(name, what="the shard", source=index)
    if len(parts) != 1 or parts[0] != name:
        msg = (
            f"{index}: the index names the shard {name!r}, which is not a plain file name in the "
            f"index's folder; Hugging Face indexes name shards beside the index"
        )
        raise FormatError(msg)
    if not name.lower().endswith(SHARD_SUFFIX):
        raise FormatError(
            f"{index}: the index names the shard {name!r}; shards must be .safetensors files"
        )


def read_index(path: Path) -> Index:
    """Parse and validate ``path``; FormatError for anything malformed. The index is a
    companion of its folder (found there, or naming files there): confined to it like a
    shard, opened without following links, parsed with the bounded JSON reader."""
    if not os.path.lexists(path):
        msg = f"{path}: no such shard index. Check the path (relative paths start at {os.getcwd()})"
        raise ModelNotFoundError(errno.ENOENT, msg, str(path))
    try:
        raw = read_confined(
            path.parent,
            path.name,
            what="the shard index",
            source=path.parent,
            hf_cache=True,
            max_bytes=MAX_INDEX,
        )
    except OSError as e:
        if isinstance(e, (ModelNotFoundError, StorageError)):
            raise
        raise StorageError(e.errno, f"{path}: cannot read: {e.strerror}", str(path)) from None
    data = loads(raw, where=f"{path}: the shard index", max_bytes=MAX_INDEX)
    if not isinstance(data, dict):
        raise FormatError(
            f"{path}: the shard index must hold a JSON object, not {type(data).__name__}"
        )
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise FormatError(
            f"{path}: the shard index has no 'weight_map' object mapping tensor names to shard files"
        )
    for key, name in weight_map.items():
        if not isinstance(name, str) or not key:
            raise FormatError(
                f"{path}: the weight_map entry {key!r} must name a shard file, not {name!r}"
            )
    for name in set(weight_map.values()):
        check_shard_name(path, name)
    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise FormatError(f"{path}: the shard index's 'metadata' must be a JSON object")
    meta = metadata.get("modelstore")
    where = f"the index {path.name}"
    if meta is not None:
        if not isinstance(meta, dict):
            raise FormatError(f"{path}: the modelstore metadata in {where} is not a JSON object")
        check_meta(path, meta, where)
        meta = dict(meta)
    records = _records(path, metadata.get("shards"), strict=meta is not None)
    ties = {
        k: v
        for k, v in metadata.items()
        if k not in _RESERVED and isinstance(v, str) and k not in weight_map and v in weight_map
    }
    if ties and not (meta or {}).get("tied"):  # huggingface_hub records the names it dropped
        meta = {**(meta or {}), "tied": ties}
    return Index(
        path, dict(weight_map), metadata, meta, records, sha256=hashlib.sha256(raw).hexdigest()
    )


def _records(path: Path, shards: Any, *, strict: bool) -> dict[str, dict[str, Any]]:
    if shards is None or (not strict and not isinstance(shards, dict)):
        return {}
    bad = FormatError(f"{path}: the index's 'shards' records are malformed")
    if not isinstance(shards, dict):
        raise bad
    out: dict[str, dict[str, Any]] = {}
    for name, rec in shards.items():
        if not isinstance(rec, dict):
            raise bad
        checksum, sha, size = rec.get("checksum"), rec.get("sha256"), rec.get("size")
        if (
            (checksum is not None and not isinstance(checksum, str))
            or (
                sha is not None
                and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha))
            )
            or (size is not None and not (type(size) is int and 0 <= size < 2**63))
        ):
            raise bad
        out[name] = {"checksum": checksum, "sha256": sha, "size": size}
    return out


def index_files(index_path: Path) -> list[str]:
    """The shard file names ``index_path`` references (validated plain names in its folder,
    sorted): what to fetch beside the index. Reads only the index."""
    return read_index(index_path).shards


def shard_path(index: Path, name: str) -> Path:
    """The shard ``name`` beside ``index``, after the one confinement check (a link may only
    lead inside the folder or, in a Hugging Face cache snapshot, to that repository's blobs;
    no hard links, FIFOs or devices). Returns the path by its name in the folder, for
    messages; read it with :func:`open_shard`."""
    try:
        confine(index.parent, name, what="the shard", source=index, main=index, hf_cache=True)
    except ModelNotFoundError:
        msg = f"{index}: the shard {name} it lists is missing from {index.parent}; the checkpoint is incomplete"
        raise ModelNotFoundError(errno.ENOENT, msg, str(index.parent / name)) from None
    return index.parent / name


def open_shard(index: Path, name: str) -> BinaryIO:
    """The shard ``name`` opened after the confinement check, without following links: every
    read of a shard (header, checksum, memory map) goes through this one descriptor."""
    try:
        return open_confined(
            index.parent, name, what="the shard", source=index, main=index, hf_cache=True
        )
    except ModelNotFoundError:
        msg = f"{index}: the shard {name} it lists is missing from {index.parent}; the checkpoint is incomplete"
        raise ModelNotFoundError(errno.ENOENT, msg, str(index.parent / name)) from None


# -- saving ----------------------------------------------------------------------------------


def parse_size(value: Any) -> int:
    """``max_shard_size`` in bytes: an int, or a string like ``"500MB"``, ``"2GB"`` (powers of
    ten, as Hugging Face counts), ``"1.5GiB"`` (powers of two), ``"10KB"``."""
    if isinstance(value, bool):
        raise ArgumentError(
            f"max_shard_size must be a number of bytes or a size like '2GB', not {value!r}"
        )
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        unit = m.group(2).upper() or "B"
        if unit not in _UNITS:
            raise ArgumentError(
                f"max_shard_size={value!r}: unknown unit {m.group(2)!r}; use B, KB, MB, GB, TB, "
                f"KiB, MiB, GiB or TiB"
            )
        n = int(float(m.group(1)) * _UNITS[unit])
    else:
        raise ArgumentError(
            f"max_shard_size must be a number of bytes or a size like '2GB', not {value!r}"
        )
    if n < 1:
        raise ArgumentError(f"max_shard_size={value!r} must be at least one byte")
    return n


def shard_target(path: Path) -> tuple[Path, str]:
    """(folder, prefix) for a sharded save to ``path``: an existing folder or a name without a
    suffix is the folder (prefix "model"); ``NAME.safetensors.index.json`` and
    ``NAME.safetensors`` put ``NAME-0000i-of-0000n.safetensors`` in their folder."""
    name = path.name
    low = name.lower()
    if path.is_dir() or (not path.suffix and not path.exists()):
        folder, prefix = path, DEFAULT_PREFIX
    elif low.endswith(INDEX_SUFFIX):
        folder, prefix = path.parent, name[: -len(INDEX_SUFFIX)]
    elif low.endswith(SHARD_SUFFIX):
        folder, prefix = path.parent, name[: -len(SHARD_SUFFIX)]
    elif not path.suffix:
        msg = f"{path}: is a file; a sharded save needs a folder, a NAME.safetensors or a NAME{INDEX_SUFFIX}"
        raise StorageError(errno.EEXIST, msg, str(path))
    else:
        msg = (
            f"{path}: max_shard_size= writes sharded safetensors: give a folder, a NAME.safetensors "
            f"or a NAME{INDEX_SUFFIX}, not a {path.suffix} file"
        )
        raise ArgumentError(msg)
    if not prefix:
        raise ArgumentError(f"{path}: the shard files need a name before {INDEX_SUFFIX}")
    parent = folder if folder.is_dir() else folder.parent
    if not parent.is_dir():
        msg = f"{folder}: the folder {parent} does not exist; create it first"
        raise StorageError(errno.ENOENT, msg, str(folder))
    return folder, prefix


def pack(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Hugging Face's packing: greedy in key order; a tensor larger than ``limit`` gets a shard
    of its own (placed when it is met, the open shard continuing after it)."""
    shards: list[list[str]] = []
    current: list[str] = []
    used = 0
    for key, size in sizes.items():
        if size > limit:
            shards.append([key])
            continue
        if current and used + size > limit:
            shards.append(current)
            current, used = [], 0
        current.append(key)
        used += size
    if current:
        shards.append(current)
    return shards

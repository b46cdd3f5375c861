"""Sharded safetensors checkpoints, laid out as Hugging Face lays them out.

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
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ._info import Finding, ModelInfo, ScanReport, TensorInfo
from ._io import (
    atomic_paths,
    check_checksum,
    file_checksum,
    file_sha256,
    remember_sha256,
    write_json,
    writer_lock,
)
from .errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    ModelExistsError,
    ModelNotFoundError,
    StorageError,
    UnsafeModelError,
    UnsupportedModelError,
)
from .security.confine import check_name, confine, open_confined, read_confined
from .security.jsonsafe import loads

INDEX_SUFFIX = ".safetensors.index.json"
SHARD_SUFFIX = ".safetensors"
DEFAULT_PREFIX = "model"
#: An index is a name -> file map: far below this even for the largest models.
MAX_INDEX = 64 << 20
#: Entries of an index's "metadata" that are not the writer's own (HF puts ties there).
_RESERVED = {"total_size", "total_parameters", "modelstore", "shards", "format"}
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


# -- finding an index ------------------------------------------------------------------------


def find_index(path: Path) -> Path | None:
    """The shard index ``path`` names, or None if it names none.

    A folder: its ``model.safetensors.index.json``, else its only ``*.safetensors.index.json``
    (several: FormatError asking for the one to use). A ``*.safetensors.index.json`` file:
    itself. A ``NAME.safetensors`` that does not exist beside an existing
    ``NAME.safetensors.index.json`` (what ``save("NAME.safetensors", max_shard_size=...)``
    writes): that index.
    """
    if path.is_dir():
        default = path / (DEFAULT_PREFIX + INDEX_SUFFIX)
        if default.is_file():
            return default
        found = sorted(p for p in path.iterdir() if p.name.lower().endswith(INDEX_SUFFIX) and p.is_file())
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            msg = f"{path}: holds several shard indexes ({names}); pass the one to load, e.g. {found[0]}"
            raise FormatError(msg)
        return found[0] if found else None
    name = path.name.lower()
    if name.endswith(INDEX_SUFFIX):
        return path
    if name.endswith(SHARD_SUFFIX) and not path.exists():
        sibling = path.with_name(path.name + ".index.json")
        if sibling.is_file():
            return sibling
    return None


def index_for(path: Any) -> Path | None:
    """:func:`find_index` for whatever a public call was given (None for non-paths: the
    caller's own checks then report them)."""
    try:
        p = Path(os.fspath(path))
    except (TypeError, ValueError):
        return None
    try:
        return find_index(p)
    except FormatError:
        raise
    except (OSError, ValueError):  # unreadable or a name the OS refuses: the caller reports it
        return None


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
        msg = (f"{index}: the index names the shard {name!r}, which is not a plain file name in the "
               f"index's folder; Hugging Face indexes name shards beside the index")
        raise FormatError(msg)
    if not name.lower().endswith(SHARD_SUFFIX):
        raise FormatError(f"{index}: the index names the shard {name!r}; shards must be .safetensors files")


def read_index(path: Path) -> Index:
    """Parse and validate ``path``; FormatError for anything malformed. The index is a
    companion of its folder (found there, or naming files there): confined to it like a
    shard, opened without following links, parsed with the bounded JSON reader."""
    if not os.path.lexists(path):
        msg = f"{path}: no such shard index. Check the path (relative paths start at {os.getcwd()})"
        raise ModelNotFoundError(errno.ENOENT, msg, str(path))
    try:
        raw = read_confined(path.parent, path.name, what="the shard index", source=path.parent,
                            hf_cache=True, max_bytes=MAX_INDEX)
    except OSError as e:
        if isinstance(e, (ModelNotFoundError, StorageError)):
            raise
        raise StorageError(e.errno, f"{path}: cannot read: {e.strerror}", str(path)) from None
    data = loads(raw, where=f"{path}: the shard index", max_bytes=MAX_INDEX)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: the shard index must hold a JSON object, not {type(data).__name__}")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise FormatError(f"{path}: the shard index has no 'weight_map' object mapping tensor names to shard files")
    for key, name in weight_map.items():
        if not isinstance(name, str) or not key:
            raise FormatError(f"{path}: the weight_map entry {key!r} must name a shard file, not {name!r}")
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
        from ._api import check_meta

        check_meta(path, meta, where)
        meta = dict(meta)
    records = _records(path, metadata.get("shards"), strict=meta is not None)
    ties = {k: v for k, v in metadata.items()
            if k not in _RESERVED and isinstance(v, str) and k not in weight_map and v in weight_map}
    if ties and not (meta or {}).get("tied"):  # huggingface_hub records the names it dropped
        meta = {**(meta or {}), "tied": ties}
    return Index(path, dict(weight_map), metadata, meta, records, sha256=hashlib.sha256(raw).hexdigest())


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
        if (checksum is not None and not isinstance(checksum, str)) or (
                sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha))) or (
                size is not None and not (type(size) is int and 0 <= size < 2**63)):
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
        return open_confined(index.parent, name, what="the shard", source=index, main=index, hf_cache=True)
    except ModelNotFoundError:
        msg = f"{index}: the shard {name} it lists is missing from {index.parent}; the checkpoint is incomplete"
        raise ModelNotFoundError(errno.ENOENT, msg, str(index.parent / name)) from None


# -- saving ----------------------------------------------------------------------------------


def parse_size(value: Any) -> int:
    """``max_shard_size`` in bytes: an int, or a string like ``"500MB"``, ``"2GB"`` (powers of
    ten, as Hugging Face counts), ``"1.5GiB"`` (powers of two), ``"10KB"``."""
    if isinstance(value, bool):
        raise ArgumentError(f"max_shard_size must be a number of bytes or a size like '2GB', not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        unit = m.group(2).upper() or "B"
        if unit not in _UNITS:
            raise ArgumentError(f"max_shard_size={value!r}: unknown unit {m.group(2)!r}; use B, KB, MB, GB, TB, "
                                f"KiB, MiB, GiB or TiB")
        n = int(float(m.group(1)) * _UNITS[unit])
    else:
        raise ArgumentError(f"max_shard_size must be a number of bytes or a size like '2GB', not {value!r}")
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
        msg = (f"{path}: max_shard_size= writes sharded safetensors: give a folder, a NAME.safetensors "
               f"or a NAME{INDEX_SUFFIX}, not a {path.suffix} file")
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


def save_sharded(model: Any, path: Path, *, max_shard_size: Any, format: str | None = None,
                 config: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                 labels: list[Any] | None = None, sample_input: Any = None, overwrite: bool = True,
                 dtype: Any = None, **options: Any) -> ModelInfo:
    """``save(..., max_shard_size=)``: see the module docstring."""
    from . import _api, _dtype
    from ._registry import REGISTRY
    from .backends import safetensors_

    limit = parse_size(max_shard_size)
    if format not in (None, "safetensors"):
        raise ArgumentError(f"{path}: max_shard_size= writes sharded safetensors; format={format!r} cannot be sharded")
    if options:
        raise ArgumentError(f"{path}: unknown options for a sharded save: {sorted(options)}")
    folder, prefix = shard_target(path)
    index_path = folder / (prefix + INDEX_SUFFIX)
    if not overwrite and index_path.exists():
        msg = f"{index_path}: already exists and overwrite=False; pick another name or pass overwrite=True"
        raise ModelExistsError(errno.EEXIST, msg, str(index_path))
    backend = REGISTRY.get("safetensors")
    if not backend.can_save(model):
        msg = f"{path}: a {type(model).__qualname__} cannot be saved as sharded safetensors; {backend.save_hint(model)}"
        raise UnsupportedModelError(msg)
    backend.require(index_path, "saving sharded safetensors")
    meta = _api.build_meta(backend, model, config=config, metadata=metadata, labels=labels,
                           sample_input=sample_input)
    payload = model if dtype is None else _dtype.cast_for_save(backend, model, dtype, meta, index_path)
    tensors, tied = safetensors_.savable(payload, backend.save_hint(model))
    if tied:
        meta["tied"] = tied
    sizes = {k: t.numel() * t.element_size() for k, t in tensors.items()}
    groups = pack(sizes, limit)
    names = [f"{prefix}-{i:05d}-of-{len(groups):05d}{SHARD_SUFFIX}" for i in range(1, len(groups) + 1)]
    if not folder.is_dir():
        try:
            folder.mkdir()
        except FileExistsError:
            pass
        except OSError as e:
            raise StorageError(e.errno, f"{folder}: cannot create the folder: {e.strerror}", str(folder)) from None
    shard_meta: dict[str, Any] = {k: meta[k] for k in ("modelstore", "framework", "framework_version") if k in meta}
    records: dict[str, dict[str, Any]] = {}
    with writer_lock(index_path), atomic_paths(*[folder / n for n in names], index_path) as temps:
        for number, (name, keys, tmp) in enumerate(zip(names, groups, temps), 1):
            header_meta: dict[str, Any] = {**shard_meta, "format": "safetensors",
                           "shard": {"index": index_path.name, "number": number, "of": len(names)}}
            written = safetensors_.write_tensors(
                tmp, {k: tensors[k] for k in keys},
                {"format": "pt", safetensors_.META_KEY: json.dumps(header_meta, sort_keys=True)},
                file_checksum=True)
            records[name] = {"checksum": written.file_checksum, "sha256": written.sha256, "size": written.size}
        index = {
            "metadata": {"total_size": sum(sizes.values()), "modelstore": meta, "shards": records},
            "weight_map": {k: name for name, keys in zip(names, groups) for k in keys},
        }
        write_json(temps[-1], index)
    for name, rec in records.items():
        remember_sha256(folder / name, rec["sha256"])
    _remove_stale(folder, prefix, set(names))
    _api._remember(model, meta)
    return inspect_sharded(index_path)


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


def load_sharded(index: Path, *, model: Any = None, format: str | None = None, device: str | None = None,
                 trust: Any = False, strict: bool = True, verify: bool = True, sha256: str | None = None,
                 **options: Any) -> Any:
    """``load`` of a sharded checkpoint: see the module docstring."""
    from . import _api, _dtype
    from ._registry import REGISTRY

    if format not in (None, "safetensors"):
        raise ArgumentError(f"{index}: a shard index holds safetensors shards; format={format!r} does not apply")
    trust_arg = _api.checked_trust(trust)
    dtype = options.pop("dtype", None)
    if dtype is not None:
        dtype = _dtype.dtype_name(dtype, index)
    if options:
        raise ArgumentError(f"{index}: unknown options for a sharded load: {sorted(options)}")
    REGISTRY.get("safetensors").require(index, "loading sharded safetensors")
    # a save renames its shards, then its index: a reader caught between them sees shards
    # that do not match the index it read (or miss); start again if the index moved on
    return _api.read_consistently(
        index, lambda: _load_once(index, model, device, trust_arg, strict, verify, sha256, dtype),
        retry_on=(IntegrityError, ModelNotFoundError))


def _load_once(index: Path, model: Any, device: str | None, trust: bool | list[str], strict: bool,
               verify: bool, pin: str | None, dtype: str | None) -> tuple[Any, dict[str, Any] | None]:
    from ._api import _reading
    from ._io import check_pin
    from .backends import _torch, safetensors_
    from .backends._base import LoadRequest

    idx = read_index(index)
    if pin is not None:
        check_pin(index, pin, actual=idx.sha256)  # the bytes parsed are the bytes pinned
    paths = {name: shard_path(index, name) for name in idx.shards}
    with _reading(index, "read the shard headers of"):
        headers = {}
        for name, p in paths.items():
            with open_shard(index, name) as f:
                headers[name] = safetensors_.read_header(p, f)
        layout = _layout(idx, headers)
    request = LoadRequest(model=model, device=device, trust=trust, strict=strict, meta=idx.meta,
                          options={"dtype": dtype} if dtype else {})

    def parts() -> Iterator[dict[str, Any]]:
        for name in idx.shards:
            p = paths[name]
            with open_shard(index, name) as f:  # one descriptor: checked, hashed and mapped
                check_shard(index, p, idx.records.get(name), verify=verify, pinned=pin is not None, file=f)
                tensors = safetensors_.load_tensors(p, f)
            part: dict[str, Any] = {}
            for key in idx.keys_of(name):
                if key not in tensors:
                    raise IntegrityError(f"{p}: the shard no longer holds {key!r}; it changed while it was read")
                part[key] = tensors[key]
            yield part

    with _reading(index, "load"):
        return _torch.build_from_parts(layout, parts, request, index), idx.meta


def _layout(idx: Index, headers: dict[str, Any]) -> dict[str, Any]:
    """Every tensor the index lists, as a meta tensor of its shape and dtype (no data read)."""
    import torch

    from .backends.safetensors_ import DTYPES

    out: dict[str, Any] = {}
    for key, name in idx.weight_map.items():
        entry = headers[name].entries.get(key)
        if entry is None:
            msg = (f"{idx.path}: the index puts {key!r} in {name}, but that shard does not hold it; "
                   f"the shard or the index is damaged, or they come from different saves")
            raise IntegrityError(msg)
        out[key] = torch.empty(entry["shape"], dtype=getattr(torch, DTYPES[entry["dtype"]][0]), device="meta")
    return out


def check_shard(index: Path, path: Path, record: dict[str, Any] | None, *, verify: bool, pinned: bool,
                file: BinaryIO) -> None:
    """Check one shard just before it is read: against the sha256 the index records when the
    index is pinned; else (``verify``) against the index's size and checksum, or failing
    those the checksum in the shard's own header. ``file`` is the shard opened by
    :func:`open_shard`: what is checked is what is then mapped."""
    rec = record or {}
    if pinned:
        want = rec.get("sha256")
        if not want:
            msg = (f"{index}: sha256= pins the index, but it records no sha256 for the shard {path.name}, "
                   f"so the pin cannot cover it; load it without sha256=")
            raise IntegrityError(msg)
        actual = file_sha256(file)
        if actual != want:
            msg = (f"{path}: sha256 is {actual}, not the {want} the pinned index {index.name} records. "
                   f"The shard is not the one you pinned; do not load it")
            raise IntegrityError(msg)
        return
    if not verify:
        return
    size = os.fstat(file.fileno()).st_size
    if rec.get("size") is not None and size != rec["size"]:
        msg = (f"{path}: {size} bytes, but the index {index.name} records {rec['size']}; "
               f"the shard is truncated or from another save")
        raise IntegrityError(msg)
    if rec.get("checksum"):
        check_checksum(path, rec["checksum"], file_checksum(path, file), f"the index {index.name}")
        return
    from .backends import safetensors_

    h = safetensors_.read_header(path, file)
    own = h.modelstore_meta()
    if own and isinstance(own.get("checksum"), str):  # the header's own: canonical header + payload
        check_checksum(path, own["checksum"], safetensors_.checksum_of(h, file), "its header")


# -- inspect, scan, metadata ----------------------------------------------------------------------


def inspect_sharded(index: Path) -> ModelInfo:
    """ModelInfo of a sharded checkpoint from its index and shard headers only."""
    from ._api import _reading
    from .backends import safetensors_

    idx = read_index(index)
    tensors: list[TensorInfo] = []
    size = 0
    framework = None
    with _reading(index, "inspect"):
        for name in idx.shards:
            p = shard_path(index, name)
            with open_shard(index, name) as f:
                h = safetensors_.read_header(p, f)
            size += h.file_size
            framework = framework or {"pt": "torch", "tf": "tensorflow", "np": "numpy",
                                      "flax": "flax"}.get(h.metadata.get("format", ""))
            for key in idx.keys_of(name):
                e = h.entries.get(key)
                if e is None:
                    raise IntegrityError(f"{index}: the index puts {key!r} in {name}, but that shard does not hold it")
                b, end = e["data_offsets"]
                tensors.append(TensorInfo(key, tuple(e["shape"]), safetensors_.DTYPES[e["dtype"]][0], end - b))
    meta = idx.meta or {}
    info: dict[str, Any] = {k: v for k, v in idx.metadata.items()
                            if k not in _RESERVED and isinstance(v, (str, int, float, bool)) and k not in
                            (meta.get("tied") or {})}
    info["shards"] = len(idx.shards)
    if type(idx.metadata.get("total_size")) is int:
        info["total_size"] = idx.metadata["total_size"]
    info.update(meta.get("metadata") or {})
    return ModelInfo(
        path=str(index),
        format="safetensors",
        framework=meta.get("framework") or framework or ("torch" if not idx.shards else None),
        size_bytes=size,
        sha256=idx.sha256,
        tensors=tensors,
        num_params=sum(t.numel for t in tensors),
        metadata=info,
        labels=meta.get("labels"),
        signature=meta.get("signature"),
        executes_code=False,
        globals=[],
    )


def scan_sharded(index: Path) -> ScanReport:
    """"safe" when the index is well formed and every shard's header parses (tensors and
    string metadata only); else "unknown" with a finding per problem."""
    from .backends import safetensors_
    from .security import unreadable

    try:
        idx = read_index(index)
    except UnsafeModelError as e:  # leads outside its folder: an attack, not damage
        return ScanReport(str(index), "safetensors", "unsafe", [Finding("index", "critical", str(e))])
    except (FormatError, IntegrityError, ModelNotFoundError, StorageError) as e:
        kind = "damaged" if isinstance(e, IntegrityError) else "format"
        return unreadable(index, "safetensors", kind, str(e), subject="index")
    findings: list[Finding] = []
    for name in idx.shards:
        try:
            with open_shard(index, name) as f:
                header = safetensors_.read_header(shard_path(index, name), f)
            missing = [k for k in idx.keys_of(name) if k not in header.entries]
            if missing:
                raise IntegrityError(f"{index}: the index puts {missing[0]!r} in {name}, but that shard does not hold it")
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


def scan_if_sharded(path: Any) -> ScanReport | None:
    """``scan`` of a sharded checkpoint, or None if ``path`` names no shard index."""
    try:
        index = index_for(path)
    except FormatError as e:
        return ScanReport(os.fspath(path), "unknown", "unknown", [Finding("folder", "warning", str(e))])
    return scan_sharded(index) if index is not None else None


def recorded_meta(index: Path) -> dict[str, Any]:
    """What modelstore recorded in the index (empty for foreign indexes)."""
    return dict(read_index(index).meta or {})

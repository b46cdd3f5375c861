"""safetensors: the default format for PyTorch weights (see :mod:`.file` for the layout).

A ``*.safetensors.index.json`` (or a folder holding one) is a sharded checkpoint
(:mod:`.index`, :mod:`.shards`); the pipeline drives both through this one backend.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._info import ScanReport
from ...errors import ArgumentError
from ...storage.hashing import PendingDigest, check_checksum
from ..base import Backend, Inspection, LoadRequest, PredictRequest
from ..torch import common as _torch
from ..torch import dtype as _dtype
from ..torch import hf as _hf
from ..torch.predict import predict as _predict
from ..torch.quantized import refuse_unsavable as refuse_quantized
from . import index as _index
from .file import (  # the names other modules know this format by
    CHECKSUM_KEY as CHECKSUM_KEY,
)
from .file import (
    DTYPES as DTYPES,
)
from .file import (
    MAX_HEADER as MAX_HEADER,
)
from .file import (
    META_KEY as META_KEY,
)
from .file import (
    Header as Header,
)
from .file import (
    checksum_of as checksum_of,
)
from .file import (
    header_from_reader as header_from_reader,
)
from .file import (
    inspection_of as inspection_of,
)
from .file import (
    load_tensors as load_tensors,
)
from .file import (
    read_header as read_header,
)
from .file import (
    scan_header as scan_header,
)
from .write import (
    savable as savable,
)
from .write import (
    write_tensors as write_tensors,
)

#: The weights file of a ``save_pretrained`` folder of one file.
_HF_FILE = "model.safetensors"


@dataclass(frozen=True)
class SaveOptions(_dtype.SaveOptions):
    """``dtype``: cast floating-point tensors before writing. ``max_shard_size``: write
    Hugging Face style shards of at most this many bytes (``"2GB"``, ``"1.5GiB"``, an int)."""

    max_shard_size: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_shard_size is not None:
            object.__setattr__(self, "max_shard_size", _index.parse_size(self.max_shard_size))


class SafetensorsBackend(Backend):
    """Tensors in a JSON-headed flat file; the default for torch modules and state dicts.
    A ``*.safetensors.index.json`` (or a folder holding one) is a sharded checkpoint."""

    name = "safetensors"
    framework = "torch"
    suffixes = (".safetensors", _index.INDEX_SUFFIX)
    risk = "safe"
    extra = "torch"
    requires = ("torch",)
    reads_one_file = True
    embeds_metadata = True
    casts = True
    SaveOptions = SaveOptions
    LoadOptions = _dtype.LoadOptions

    def single_file(self, path: Path) -> bool:
        # a Hugging Face folder's weights are read with the config.json beside them
        return not _index.is_index(path) and not _hf.config_companion(path)

    def entry_file(self, names: list[str]) -> str | None:
        found = _index.entry_file(names)
        if found is None and _HF_FILE in names:  # a save_pretrained folder of one file
            return _HF_FILE
        return found

    def alternatives(self, name: str) -> list[str]:
        return _index.alternatives(name)

    def companions(self, path: Path) -> list[str]:
        shards = _index.read_index(path).shards if _index.is_index(path) else []
        return shards + _hf.config_companion(path)

    def optional_companions(self, path: Path) -> list[str]:
        return _hf.optional_config(path)

    def accepts(self, path: Path, head: bytes) -> bool:
        return head[:1] == b"{" if _index.is_index(path) else self.sniff(path, head)

    def sniff(self, path: Path, head: bytes) -> bool:
        if len(head) < 9:
            return False
        (n,) = struct.unpack("<Q", head[:8])
        return head[8:9] == b"{" and n <= MAX_HEADER

    def can_save(self, obj: Any) -> bool:
        return _torch.is_module(obj) or _torch.is_state_dict(obj)

    def can_predict(self, obj: Any) -> bool:
        return _torch.is_module(obj)

    def object_hint(self, obj: Any) -> str | None:
        return _torch.training_state_hint(obj)

    def save_hint(self, obj: Any) -> str:
        hint = _torch.training_state_hint(obj)
        if hint:
            return hint
        if isinstance(obj, dict):
            return "safetensors holds a flat mapping of names to tensors; save training checkpoints and nested dicts as .pt"
        return "it holds torch modules and dicts of tensors"

    def describe(self, obj: Any) -> dict[str, Any]:
        return _torch.describe(obj)

    # -- write ---------------------------------------------------------------------------
    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | PendingDigest | None:
        refuse_quantized(obj, target, self.name)
        if options.dtype is not None:
            obj = _dtype.cast_for_save(obj, options.dtype, meta, target)
        tensors, tied = savable(obj, self.save_hint(obj))
        if tied:
            meta = {**meta, "tied": tied}
        return write_tensors(
            tmp, tensors, {"format": "pt", META_KEY: json.dumps(meta, sort_keys=True)}, later=True
        ).sha256

    def write_files(
        self, obj: Any, target: Path, meta: dict[str, Any], options: Any, overwrite: bool
    ) -> Path | None:
        from .pretrained import saves_pretrained, write_pretrained

        refuse_quantized(obj, target, self.name)
        if saves_pretrained(obj, target) and options.dtype is None:
            return write_pretrained(obj, target, meta, options, overwrite)
        if options.max_shard_size is None:
            if _index.is_index(target):
                raise ArgumentError(
                    f"{target}: an index names shards; pass max_shard_size= to write them"
                )
            return None
        from .shards import write_sharded

        return write_sharded(
            obj,
            target,
            meta,
            limit=options.max_shard_size,
            dtype=options.dtype,
            overwrite=overwrite,
            hint=self.save_hint(obj),
        )

    # -- read ----------------------------------------------------------------------------
    def read_meta(self, path: Path) -> dict[str, Any] | None:
        if _index.is_index(path):
            return _index.read_index(path).meta
        return read_header(path).modelstore_meta()

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        expected = meta.get("checksum")
        if not expected or _index.is_index(path):  # shards are checked as they are read
            return
        check_checksum(path, expected, checksum_of(read_header(path)), "its header")

    def scan(self, path: Path) -> ScanReport:
        if _index.is_index(path):
            from .shards import scan_index

            return scan_index(path)
        return scan_header(path, lambda: read_header(path))

    def load(self, path: Path, request: LoadRequest) -> Any:
        hf_config = _hf.config_for(path, request)
        if hf_config is not None:
            request.config = hf_config
        if _index.is_index(path):
            from .shards import load_index

            return load_index(path, request)
        return _torch.build_module(_hf.base_model_keys(load_tensors(path), request), request, path)

    def inspect(self, path: Path) -> Inspection:
        if _index.is_index(path):
            from .shards import inspect_index

            found = inspect_index(path)
        else:
            found = inspection_of(read_header(path))
        _hf.describe(path, found)
        return found

    def inspect_remote(
        self, name: str, size: int, read: Callable[[int, int], bytes]
    ) -> Inspection | None:
        """A remote single file from its header alone (two range requests, never the tensors)."""
        if _index.is_index(Path(name)):
            return None
        return inspection_of(header_from_reader(name, size, read))

    def scan_remote(
        self, name: str, size: int, read: Callable[[int, int], bytes]
    ) -> ScanReport | None:
        if _index.is_index(Path(name)):
            return None
        return scan_header(name, lambda: header_from_reader(name, size, read))

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Any:
        from ..onnx.export import export_torch

        return export_torch(model, path, sample_input, opset, dynamic_batch)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        return _predict(model, inputs, request)

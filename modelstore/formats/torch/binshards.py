"""Sharded ``torch.save`` checkpoints: ``pytorch_model.bin.index.json`` and its ``.bin`` shards.

transformers 4 (``save_pretrained(safe_serialization=False)``) and huggingface_hub
(``save_torch_state_dict(safe_serialization=False)``) write::

    {"metadata": {"total_size": 80564},
     "weight_map": {"bert.embeddings.word_embeddings.weight": "pytorch_model-00001-of-00005.bin", ...}}

Every shard is a pickle, so every shard goes through the one pickle gate: the index is
read as hostile input (bounded JSON, shard names plain ``*.bin`` names in the index's
folder), then each shard is opened once through the confinement check, scanned against the
tensor allow-list and loaded by ``torch.load(weights_only=True)`` from that same descriptor,
so the bytes scanned are the bytes loaded. Every tensor the weight map lists must be in the
shard it names.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._info import Finding, ScanReport, TensorInfo
from ...errors import FormatError, IntegrityError, ModelNotFoundError, UnsafeModelError
from ...security import classify, enforce, unreadable
from ...security.confine import check_name, open_confined, read_confined
from ...security.jsonsafe import loads
from ...security.policy import TORCH_POLICY
from ...security.torchfile import TorchFileError, read_pickles
from ...security.torchrecords import tensor_records

BIN_INDEX = ".bin.index.json"
DEFAULT_INDEX = "pytorch_model.bin.index.json"
DEFAULT_FILE = "pytorch_model.bin"
MAX_INDEX = 64 << 20


def is_index(path: Path) -> bool:
    return path.name.lower().endswith(BIN_INDEX)


def entry_file(names: list[str]) -> str | None:
    """The main file of a folder of ``torch.save`` weights under Hugging Face's names:
    ``pytorch_model.bin.index.json``, else the only ``*.bin.index.json``, else
    ``pytorch_model.bin`` (never a side file such as ``training_args.bin``)."""
    if DEFAULT_INDEX in names:
        return DEFAULT_INDEX
    found = sorted(n for n in names if n.lower().endswith(BIN_INDEX))
    if len(found) > 1:
        raise FormatError(
            f"the folder holds several shard indexes ({', '.join(found)}); pass the one to load"
        )
    if found:
        return found[0]
    return DEFAULT_FILE if DEFAULT_FILE in names else None


@dataclass
class BinIndex:
    path: Path
    weight_map: dict[str, str]
    sha256: str

    @property
    def shards(self) -> list[str]:
        return sorted(set(self.weight_map.values()))

    def keys_of(self, shard: str) -> list[str]:
        return [k for k, v in self.weight_map.items() if v == shard]


def read_index(path: Path) -> BinIndex:
    """Parse and validate the index (FormatError for anything malformed; ConfinementError for
    a shard name that leads out of the folder)."""
    raw = read_confined(
        path.parent, path.name, what="the shard index", source=path.parent, max_bytes=MAX_INDEX
    )
    data = loads(raw, where=f"{path}: the shard index", max_bytes=MAX_INDEX)
    if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
        raise FormatError(
            f"{path}: the shard index has no 'weight_map' object mapping tensor names to shard files"
        )
    weight_map = data["weight_map"]
    for key, name in weight_map.items():
        if not key or not isinstance(name, str):
            raise FormatError(
                f"{path}: the weight_map entry {key!r} must name a shard file, not {name!r}"
            )
    for name in set(weight_map.values()):
        parts = check_name(name, what="the shard", source=path)
        if parts != (name,):
            raise FormatError(
                f"{path}: the index names the shard {name!r}, which is not a plain file name "
                f"in the index's folder"
            )
        if not name.lower().endswith(".bin") or name == path.name:
            raise FormatError(
                f"{path}: the index names the shard {name!r}; shards of a .bin index are .bin files"
            )
    return BinIndex(path, dict(weight_map), hashlib.sha256(raw).hexdigest())


@contextmanager
def opened_shard(index: Path, name: str) -> Iterator[Path]:
    """A path that reaches the shard as opened once through the confinement check (on Linux
    ``/proc/self/fd/N``): scanning and loading it read the same file."""
    with open_confined(index.parent, name, what="the shard", source=index, main=index) as f:
        fd_path = Path(f"/proc/self/fd/{f.fileno()}")
        yield fd_path if fd_path.exists() else index.parent / name


#: Verdicts of shards scanned by the gate, by the identity of the file scanned, so the load
#: that follows (which opens each shard again) re-scans only a shard that changed meanwhile.
#: Bounded; an entry counts only for a file of the same device, inode, size, mtime and ctime
#: (any write or rename over it changes ctime, which no caller can set back).
_SCANNED: OrderedDict[tuple[int, ...], ScanReport] = OrderedDict()
_SCANNED_MAX = 256
_LOCK = threading.Lock()


def _identity(data: Path) -> tuple[int, ...]:
    st = os.stat(data)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def scan_shard(index: Path, name: str, data: Path) -> ScanReport:
    key = _identity(data)
    with _LOCK:
        known = _SCANNED.get(key)
    if known is not None:
        return known
    report = _scan_shard(index, name, data)
    with _LOCK:
        _SCANNED[key] = report
        while len(_SCANNED) > _SCANNED_MAX:
            _SCANNED.popitem(last=False)
    return report


def _scan_shard(index: Path, name: str, data: Path) -> ScanReport:
    try:
        pickles = read_pickles(data)
    except TorchFileError as e:
        return unreadable(index.parent / name, "torch", e.kind, f"{name}: {e}", subject=name)
    streams = [(f"{name}:{label}", rep) for label, rep in pickles.streams.items()]
    return classify(index.parent / name, "torch", streams, TORCH_POLICY.entry)


def scan(index: Path) -> ScanReport:
    """Every shard's pickles against the tensor allow-list, as one report for the index."""
    try:
        parsed = read_index(index)
    except UnsafeModelError as e:  # a shard name leading out of the folder
        return unreadable(index, "torch", "suspicious", str(e))
    except FormatError as e:
        return unreadable(index, "torch", "format", str(e))
    findings: list[Finding] = []
    globals_: list[str] = []
    for name in parsed.shards:
        try:
            with opened_shard(index, name) as data:
                rep = scan_shard(index, name, data)
        except UnsafeModelError as e:
            rep = unreadable(index.parent / name, "torch", "suspicious", str(e))
        except ModelNotFoundError as e:
            rep = unreadable(index.parent / name, "torch", "damaged", str(e), subject=name)
        # subjects stay the globals themselves (what trust=[...] names); the reason names the shard
        findings += [
            Finding(
                f.subject, f.severity, f.reason if name in f.reason else f"in {name}: {f.reason}"
            )
            for f in rep.findings
        ]
        globals_ += [g for g in rep.globals if g not in globals_]
    verdict = (
        "unsafe"
        if any(f.severity == "critical" for f in findings)
        else ("unknown" if findings else "safe")
    )
    return ScanReport(str(index), "torch", verdict, findings, globals_)  # type: ignore[arg-type]


def load(
    index: Path, trust: Any, load_file: Callable[[Path], Any], pinned: bool = False
) -> dict[str, Any]:
    """The state dict of every shard, each scanned and then loaded from the same descriptor.
    A pinned index is refused: it records no digest of its shards, so ``sha256=`` would
    cover the index alone (red team: a shard swapped under the same pin loaded)."""
    parsed = read_index(index)
    if pinned:
        msg = (
            f"{index}: sha256= pins the index, but a .bin index records no sha256 for its "
            f"shards ({', '.join(parsed.shards[:3])}), so the pin cannot cover them; load it "
            f"without sha256=, or convert it to safetensors shards (ms.convert), whose index "
            f"records one per shard"
        )
        raise IntegrityError(msg)
    sd: dict[str, Any] = {}
    for name in parsed.shards:
        with opened_shard(index, name) as data:
            if trust is not True:
                enforce(scan_shard(index, name, data), trust)
            part = load_file(data)
        if not isinstance(part, dict):
            raise FormatError(
                f"{index}: the shard {name} holds a {type(part).__name__}, not a state dict"
            )
        wanted = parsed.keys_of(name)
        absent = [k for k in wanted if k not in part]
        if absent:
            more = f" (+{len(absent) - 5} more)" if len(absent) > 5 else ""
            msg = (
                f"{index}: the shard {name} lacks {', '.join(absent[:5])}{more}, which the index "
                f"puts there; the checkpoint is damaged or was assembled from different saves"
            )
            raise IntegrityError(msg)
        sd.update((k, part[k]) for k in wanted)
    return sd


def inspect(index: Path) -> tuple[list[TensorInfo], int, list[str], int]:
    """(tensors, parameters, globals, bytes of index and shards) from the shards' pickles."""
    parsed = read_index(index)
    tensors: list[TensorInfo] = []
    globals_: list[str] = []
    num = 0
    size = index.stat().st_size
    for name in parsed.shards:
        wanted = set(parsed.keys_of(name))
        with opened_shard(index, name) as data:
            size += os.stat(data).st_size
            try:
                pickles = read_pickles(data)
            except TorchFileError as e:
                raise FormatError(
                    f"{index}: the shard {name} is not a readable torch.save file: {e}"
                ) from None
        main = pickles.main
        if main is None or main.error:
            raise FormatError(f"{index}: the shard {name}'s pickle cannot be read statically")
        seen: set[Any] = set()
        for info, ident in tensor_records(main.result):
            if info.name in wanted:
                tensors.append(info)
                if ident not in seen:
                    seen.add(ident)
                    num += info.numel
        globals_ += [
            g for rep in pickles.streams.values() for g in rep.globals if g not in globals_
        ]
    return tensors, num, globals_, size

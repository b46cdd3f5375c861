"""Build the tensors of a scanned ``.pt`` from the scan's own symbolic result.

The gate already walked ``data.pkl`` once (``security.torchfile.read_pickles``): its result is
a graph of plain values, containers and :class:`~...security.pickle_scan.Call` records. For
the files ``torch.save`` writes for state dicts and training checkpoints, every call in that
graph is one of four: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` (with their empty hook dicts), and the storage records are
persistent ids naming a member of the archive. This module turns exactly that graph into
objects, so the pickle is read once instead of twice (the second time by torch's own
pure-Python ``weights_only`` unpickler, ~45 µs per tensor here):

* the file is mapped once, copy-on-write (``UntypedStorage.from_file(shared=False)``, what
  ``torch.load(mmap=True)`` does), and each storage is a slice of that map at the offset the
  strict zip reader found for its member; a member must be stored uncompressed and hold
  exactly ``numel x itemsize`` bytes;
* each tensor's offset, sizes and strides are checked against its storage before
  ``Tensor.set_`` sees them;
* the graph is walked once, shared nodes stay shared (tied weights, views of one storage).

Anything else (another call, a global as a value, a tensor subclass, a big-endian file, a
device other than the CPU, a graph deeper than :data:`MAX_DEPTH`) is not built here:
:func:`build` returns :data:`NOT_PLAIN` and the caller loads the file with
``torch.load(weights_only=True)`` as before. Nothing here imports or calls a name read from
the file: the four callables are this module's own.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ...errors import UnsafeModelError
from ...security.allowlist import TORCH_STORAGE_DTYPES
from ...security.pickle_scan import Call, Global, PersId, SymDict
from ...security.torchfile import TorchPickles

#: Returned by :func:`build` for a file it leaves to ``torch.load``.
NOT_PLAIN: Any = object()
#: Containers nested deeper than this are left to ``torch.load`` (its unpickler is iterative).
MAX_DEPTH = 200
#: Tensors with more dimensions are left to ``torch.load`` (which allows 64).
MAX_DIMS = 16
#: The newest archive format version built here (``kMaxSupportedFileFormatVersion`` of torch
#: 2.13); ``torch.save`` writes 3.
MAX_VERSION = 10

_TENSOR = "torch._utils._rebuild_tensor_v2"
_PARAMETER = "torch._utils._rebuild_parameter"
_ORDERED = "collections.OrderedDict"
_ATOMS = (type(None), bool, int, float, str)
#: Storage classes of plain dtypes (quantized storages are rebuilt by other calls).
_DTYPES = {k: v for k, v in TORCH_STORAGE_DTYPES.items() if not v.startswith(("qint", "quint"))}
#: Larger offsets, sizes, strides or element counts are left to ``torch.load``: no real
#: tensor comes near them, and torch's own arithmetic on them is not ours to trust.
_LIMIT = 1 << 48


class _NotPlain(Exception):
    pass


def build(path: Path, pickles: TorchPickles, device: str | None) -> Any:
    """The object ``torch.load(path, weights_only=True, mmap=True, map_location="cpu")``
    returns, or :data:`NOT_PLAIN`."""
    main = pickles.main
    if (
        pickles.kind != "zip"
        or main is None
        or main.error
        or main.misuse
        or device not in (None, "cpu")
        or sys.byteorder != "little"
        or pickles.byteorder not in (None, b"little")
        or not _readable_version(pickles.version)
    ):
        return NOT_PLAIN
    try:
        return _Builder(path, pickles).value(main.result, 0)
    except (_NotPlain, RecursionError):
        return NOT_PLAIN


#: Elements a file's tensor views may declare past those their storages hold, in all (an
#: expanded buffer is benign; red team: a 778-byte file's view of 2**31 elements over 4
#: bytes made a cast allocate 4 GiB and a conversion 8 GiB).
REPEAT_LIMIT = 1 << 24


def repeats(path: Path, count: int, stored: int) -> UnsafeModelError:
    """The refusal of a tensor view that declares more elements than its storage holds."""
    return UnsafeModelError(
        f"{path}: a tensor declares {count:,} elements over a storage of {stored:,} (a view "
        f"that repeats its data, with a stride of 0 or overlapping strides): casting, "
        f"converting or saving it would allocate all of them. Save tensors that own their "
        f"data (.contiguous() or .clone() before saving)"
    )


class RepeatBudget:
    """What one model's tensor views declare past the elements their storages hold, in all
    (a stride of 0, or many views of one storage; red team E: 512 slices of one storage,
    2.1 MB, made a cast allocate 2.2 GiB), against :data:`REPEAT_LIMIT`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spent = 0
        self.views: dict[int, int] = {}  # a storage -> the elements its views declare

    def add(self, storage: int, count: int, stored: int) -> None:
        """Count a view of ``count`` elements of the storage ``storage`` of ``stored``."""
        before = self.views.get(storage, 0)
        self.views[storage] = before + count
        self.spent += max(before + count - stored, 0) - max(before - stored, 0)
        if self.spent > REPEAT_LIMIT:
            raise repeats(self.path, before + count, stored)


def refuse_repeats(obj: Any, path: Path, budget: RepeatBudget | None = None) -> None:
    """Refuse ``obj`` (what ``torch.load`` returned) if its tensors, in dicts, lists and
    tuples, declare over :data:`REPEAT_LIMIT` elements past their storages' (views that
    repeat their data: :func:`repeats`), counted into ``budget`` (one for a model's
    shards). Each tensor and container is looked at once, sparse tensors through their
    indices and values; over a million of them are refused (red team: the walk stopped
    there, and skipped sparse tensors and ``.bin`` shards)."""
    import torch

    budget = budget if budget is not None else RepeatBudget(path)
    kinds = (torch.Tensor, dict, list, tuple)  # (numbers and strings hold no tensor)
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if len(seen) > 1_000_000:
            raise UnsafeModelError(
                f"{path}: its tensors and containers hold over a million objects, more than "
                f"modelstore checks; load it with trust=True if you trust its author"
            )
        if isinstance(item, torch.Tensor):
            if item.is_meta:
                continue
            if item.layout is torch.sparse_coo:
                stack.extend((item._indices(), item._values()))
                continue
            if item.layout is not torch.strided:  # compressed sparse layouts: their parts
                parts = ("crow_indices", "col_indices", "ccol_indices", "row_indices", "values")
                for part in parts:
                    try:
                        stack.append(getattr(item, part)())
                    except (RuntimeError, AttributeError):
                        continue
                continue
            storage = item.untyped_storage()
            stored = storage.nbytes() // max(item.element_size(), 1)
            budget.add(storage.data_ptr() or id(storage), item.numel(), stored)
        elif isinstance(item, dict):
            stack.extend(v for v in item.values() if isinstance(v, kinds))
        elif isinstance(item, (list, tuple)):
            stack.extend(v for v in item if isinstance(v, kinds))


class _Builder:
    def __init__(self, path: Path, pickles: TorchPickles) -> None:
        import torch

        self.torch = torch
        self.path = path
        self.repeats = RepeatBudget(path)
        self.records = pickles.storages
        self.file: Any = None  # the whole file, mapped on first use
        self.storages: dict[str, tuple[Any, Any, int]] = {}  # key -> (storage, dtype, numel)
        self.memo: dict[int, Any] = {}

    def value(self, v: Any, depth: int) -> Any:
        t = type(v)
        if t in _ATOMS:
            return v
        if depth > MAX_DEPTH:
            raise _NotPlain
        key = id(v)
        if key in self.memo:
            return self.memo[key]
        if t is tuple:
            out: Any = tuple([self.value(x, depth + 1) for x in v])
        elif t is list:
            out = self.memo[key] = []  # before the items: a list may hold itself
            out.extend([self.value(x, depth + 1) for x in v])
            return out
        elif t is SymDict:
            out = self.memo[key] = {}
            self._fill(out, v.items, depth)
            return out
        elif t is Call:
            return self._call(v, key, depth)
        else:  # a global, a persistent id out of place, a set, bytes: torch.load's business
            raise _NotPlain
        self.memo[key] = out
        return out

    def _fill(self, out: dict[Any, Any], items: list[tuple[Any, Any]], depth: int) -> None:
        for k, x in items:
            if type(k) not in _ATOMS:  # keys as the scan allows them, and hashable as built
                raise _NotPlain
            out[k] = self.value(x, depth + 1)

    def _call(self, c: Call, key: int, depth: int) -> Any:
        name = c.func_name
        if c.new or c.kwargs or c.appends or c.payload is not None:
            raise _NotPlain
        if name == _ORDERED:
            if c.args != () or (c.state is not None and not _metadata_only(c)):
                raise _NotPlain
            out: Any = OrderedDict()
            self.memo[key] = out
            self._fill(out, c.items, depth)
            if c.state is not None:  # what torch's unpickler does: inst.__dict__.update(state)
                out.__dict__["_metadata"] = self.value(c.state.items[0][1], depth + 1)
            return out
        if c.items or c.state is not None:
            raise _NotPlain
        args = c.args
        if name == _TENSOR and type(args) is tuple and len(args) == 6 and _no_hooks(args[5]):
            out = self._tensor(*args[:5])
        elif name == _PARAMETER and type(args) is tuple and len(args) == 3 and _no_hooks(args[2]):
            data, grad = self.value(args[0], depth + 1), args[1]
            if type(data) is not self.torch.Tensor or type(grad) is not bool:
                raise _NotPlain
            out = self.torch.nn.Parameter(data, requires_grad=grad)
        else:
            raise _NotPlain
        out._backward_hooks = OrderedDict()  # as torch's _rebuild_* set it: an empty dict
        self.memo[key] = out
        return out

    def _tensor(self, pid: Any, offset: Any, size: Any, stride: Any, grad: Any) -> Any:
        storage, dtype, numel = self._storage(pid)
        if (
            type(offset) is not int
            or type(grad) is not bool
            or not _ints(size)
            or not _ints(stride)
            or len(size) != len(stride)
            or not 0 <= offset < _LIMIT
        ):
            raise _NotPlain
        count = 1
        for n in size:
            count *= n
        if count >= _LIMIT:
            raise _NotPlain
        if count:  # the last element it reaches must lie inside the storage
            if offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= numel:
                raise _NotPlain
        elif offset > numel:
            raise _NotPlain
        self.repeats.add(id(storage), count, numel)  # (a storage object per key: cached)
        if grad and not (dtype.is_floating_point or dtype.is_complex):
            raise _NotPlain  # torch refuses it too
        t = self.torch.empty((0,), dtype=dtype).set_(storage, offset, size, stride)
        if grad:
            t.requires_grad_(True)
        return t

    def _storage(self, pid: Any) -> tuple[Any, Any, int]:
        if type(pid) is not PersId:
            raise _NotPlain
        rec = pid.pid
        if not (type(rec) is tuple and len(rec) == 5 and rec[0] == "storage"):
            raise _NotPlain
        _, stype, key, location, numel = rec
        if (
            type(stype) is not Global
            or stype.module != "torch"
            or stype.name not in _DTYPES
            or type(key) is not str
            or type(location) is not str
            or type(numel) is not int
        ):
            raise _NotPlain
        dtype = getattr(self.torch, _DTYPES[stype.name], None)
        if not isinstance(dtype, self.torch.dtype):
            raise _NotPlain
        known = self.storages.get(key)
        if known is not None:
            if known[1] != dtype or known[2] != numel:  # one member read as two types
                raise _NotPlain
            return known
        record = self.records.get(key)
        if record is None or not 0 <= numel < _LIMIT or record[1] != numel * dtype.itemsize:
            raise _NotPlain
        if self.file is None:
            size = self.path.stat().st_size
            self.file = self.torch.UntypedStorage.from_file(
                str(self.path), shared=False, nbytes=size
            )
        start, nbytes = record
        if start + nbytes > self.file.nbytes():
            raise _NotPlain
        found = (self.file[start : start + nbytes], dtype, numel)
        self.storages[key] = found
        return found


def _readable_version(record: bytes | None) -> bool:
    """A format version torch reads (it refuses a file without one, or newer than it knows;
    2.13 reads 1 to 10): anything else is torch.load's to refuse."""
    text = (record or b"").strip()
    return text.isdigit() and len(text) <= 2 and 1 <= int(text) <= MAX_VERSION


def _ints(v: Any) -> bool:
    """Sizes or strides of at most :data:`MAX_DIMS` entries (real weights have a few; more are
    left to torch.load, outside the collector's pause: 64-entry records cost ~50 µs each)."""
    return (
        type(v) is tuple
        and len(v) <= MAX_DIMS
        and all(type(n) is int and 0 <= n < _LIMIT for n in v)
    )


def _no_hooks(v: Any) -> bool:
    """The empty ``OrderedDict()`` torch writes for a tensor's backward hooks."""
    return (
        type(v) is Call
        and v.func_name == _ORDERED
        and v.args == ()
        and not (v.items or v.appends or v.kwargs or v.new or v.state is not None)
    )


def _metadata_only(c: Call) -> bool:
    """A state dict's BUILD state: ``{"_metadata": ...}`` and nothing else, when BUILD ran
    (entries added to that dict afterwards never reach the object)."""
    state = c.state
    return (
        type(state) is SymDict
        and c.state_size == 1
        and len(state.items) >= 1
        and state.items[0][0] == "_metadata"
    )

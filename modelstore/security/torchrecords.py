"""What a scanned torch pickle holds, read from its symbolic result without torch: the tensor
records (name, dtype, shape, storage) ``inspect`` lists, and the plain values beside them.
Both walks stop at a :class:`~.._walk.WalkBudget` and never format what the file built."""

from __future__ import annotations

from typing import Any

from .._info import TensorInfo
from .._walk import WalkBudget
from .allowlist import DTYPE_SIZES, TORCH_STORAGE_DTYPES
from .pickle_scan import Call, Global, PersId, mapping_items

#: Tensors with more dimensions are not read as tensor records (torch allows 64).
MAX_DIMS = 64


_REBUILD_TENSOR = {
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_qtensor",  # same leading (storage, offset, size): quantized weights
}
_REBUILD_WRAPPED = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}


def _tensor_fields(value: Any) -> tuple[str, tuple[int, ...], tuple[Any, ...]] | None:
    """(dtype, shape, storage identity) if ``value`` rebuilds a tensor, else None."""
    if not isinstance(value, Call):
        return None
    fn = value.func_name
    args = value.args if isinstance(value.args, tuple) else ()
    if fn in _REBUILD_WRAPPED and args:
        return _tensor_fields(args[0])
    if fn == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3:
        return _tensor_fields(Call(args[0], args[2]))
    if fn not in _REBUILD_TENSOR or len(args) < 3:
        return None
    storage, offset, size = args[0], args[1], args[2]
    if (
        not isinstance(storage, PersId)
        or not isinstance(storage.pid, tuple)
        or len(storage.pid) < 3
    ):
        return None
    stype = storage.pid[1]
    dtype = "unknown"
    if isinstance(stype, Global):
        dtype = TORCH_STORAGE_DTYPES.get(stype.name, stype.name)
    if fn == "torch._utils._rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], Global):
        dtype = args[6].name
    if not (
        isinstance(size, tuple)
        and len(size) <= MAX_DIMS
        and all(type(d) is int and 0 <= d < 1 << 63 for d in size)
    ):
        return None  # not a shape torch could rebuild (a 200,000-entry "shape" of 2**62s
        # made the element count quadratic: red team)
    shape: tuple[int, ...] = size
    return dtype, shape, (storage.pid[2], offset, shape)


def tensor_records(
    result: Any, prefix: str = "", depth: int = 0, budget: WalkBudget | None = None
) -> list[tuple[TensorInfo, tuple[Any, ...]]]:
    """Every tensor in a symbolic state dict or checkpoint, with a dotted name (as far as
    the walk's :class:`~.._walk.WalkBudget` goes in a graph that shares containers)."""
    out: list[tuple[TensorInfo, tuple[Any, ...]]] = []
    budget = WalkBudget() if budget is None else budget
    if not budget.spend(prefix) or depth > 32:  # charged first: every call costs a visit
        return out
    fields = _tensor_fields(result)
    if fields is not None:
        dtype, shape, ident = fields
        n = 1
        for d in shape:
            n *= d
        info = TensorInfo(
            prefix.rstrip(".") or "<tensor>", shape, dtype, n * DTYPE_SIZES.get(dtype, 0)
        )
        return [(info, ident)]
    items = mapping_items(result)
    if items is not None:
        for k, v in items:
            if budget.left < 0:  # stop here, not only in each child: a dict may hold itself
                break  # under a thousand keys (red team: minutes for 1.6 KB)
            out.extend(tensor_records(v, f"{prefix}{key_name(k)}.", depth + 1, budget))
    elif isinstance(result, (list, tuple)):
        for i, v in enumerate(result):
            if budget.left < 0:
                break
            out.extend(tensor_records(v, f"{prefix}{i}.", depth + 1, budget))
    return out


def key_name(key: Any) -> str:
    """A dict key as it appears in a dotted name: strings and small ints as themselves, any
    other key by its type (formatting a key the file built can be exponential: a list made
    of itself twice, forty times over, through the memo; red team)."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and -(10**18) < key < 10**18:
        return str(int(key))
    return f"<{type(key).__name__}>"


def plain_value(value: Any, depth: int = 0, budget: WalkBudget | None = None) -> Any:
    """Turn a symbolic value back into JSON-able Python where it is plain data, else None
    (None too once the walk's budget is spent)."""
    budget = WalkBudget() if budget is None else budget
    if not budget.spend() or depth > 16:  # charged first: every call costs a visit
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if budget.left < 0:
                break
            out.append(plain_value(v, depth + 1, budget))
        return out
    items = mapping_items(value)
    if items is not None:
        found = {}
        for k, v in items:
            if budget.left < 0:
                break
            if isinstance(k, (str, int)):
                found[key_name(k)] = plain_value(v, depth + 1, budget)
        return found
    return None

"""Pickle and joblib files: the one reader for ``scan``, ``inspect`` and gated ``load``.

``joblib.dump`` writes a pickle in which each numpy array is a ``NumpyArrayWrapper`` whose raw
bytes follow its ``BUILD`` opcode in the file (an object array: a whole pickle of its own,
inline); the file may be zlib/gzip/bz2/lzma/xz compressed. The scanner and the loader read
those bytes with the same rules, so they always agree on where the next opcode starts:

- an array's item size is the digits of its dtype's type code (``f8`` -> 8, ``U3`` -> 12), and
  a dtype's state may not change it (:mod:`.check_numpy` refuses that while loading);
- only a plain object dtype (``O``) is followed by an inline pickle; other dtypes that hold
  objects are refused;
- an alignment pad is one byte ``p`` (at most the declared alignment) then ``p`` bytes;
- array bytes may not start inside a pickle frame.

Plain ``pickle.dump`` files are the same minus the wrappers.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import MAX_DIMS, MAX_ELEMENTS
from .joblib_arrays import _STATE_KEYS, _read_padding
from .pickle_scan import (
    Call,
    Global,
    PickleReport,
    SymbolicUnpickler,
    analyse_source,
    mapping_items,
)
from .pickle_stream import Limits, PickleStreamError, Source, compression_of, open_source

if TYPE_CHECKING:
    pass

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
#: the array classes joblib records in a wrapper (as pickle spells them)
_WRAPPER_CLASSES = frozenset({"numpy.ndarray", "numpy.matrix", "numpy.memmap"})
#: Arrays up to this size are kept by the scanner (to show ``classes_`` in inspect).
KEEP_BYTES = 64 << 10
_CODE = re.compile(r"^[<>|=]?([a-zA-Z?])(\d{1,12})$")


class PickleFileError(Exception):
    """The file cannot be read as a (possibly compressed) pickle."""


def looks_like_pickle(head: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO; joblib files may be compressed."""
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or compression_of(
        head
    ) is not None


def itemsize_of_code(code: str) -> tuple[str, int] | None:
    """(kind, item size) from a dtype type code as numpy pickles it, or None."""
    m = _CODE.match(code)
    if not m:
        return None
    kind, digits = m.group(1), int(m.group(2))
    return kind, digits * 4 if kind == "U" else digits


# -- the loader's side ------------------------------------------------------------------------


def load_file(
    path: Path, trusted: list[str], where: str | None = None, limits: Limits | None = None
) -> Any:
    """Unpickle a pickle or joblib file through the restricted unpickler.

    Raises UnsafeModelError for anything refused or crafted (frames, trailing pickles, bombs),
    IntegrityError for a damaged or truncated stream."""
    from ..errors import IntegrityError, UnsafeModelError
    from .pickle_load import restricted_load

    where = where or str(path)
    limits = limits or Limits.from_env()
    try:
        with open(path, "rb") as f:
            source = open_source(path, f, limits)
            return restricted_load(source, where, trusted=trusted, limits=limits)
    except PickleStreamError as e:
        if e.kind == "suspicious":
            msg = f"{where}: refusing to load: the file is crafted ({e}). Nothing from the file was executed"
            raise UnsafeModelError(msg, []) from None
        msg = f"{where}: the pickle could not be read ({e}); the file is damaged or truncated. Fetch it again"
        raise IntegrityError(msg) from None


# -- the scanner's side -----------------------------------------------------------------------


def _symbolic_code(dtype: Any) -> str | None:
    if not isinstance(dtype, Call) or dtype.func_name not in (
        "numpy.dtype",
        "numpy.core.multiarray.dtype",
    ):
        return None
    args = dtype.args if isinstance(dtype.args, tuple) else ()
    return args[0] if args and isinstance(args[0], str) else None


def _plain_struct(dtype: Call, depth: int = 0) -> bool:
    """Whether a symbolic structured dtype's fields are all plain (no objects, no nesting the
    scanner cannot size)."""
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    fields = mapping_items(state[4]) if len(state) > 4 else None
    if not fields:
        return True
    for _, spec in fields:
        sub = spec[0] if isinstance(spec, tuple) and spec else None
        code = _symbolic_code(sub)
        info = itemsize_of_code(code) if code else None
        if (
            info is None
            or info[0] == "O"
            or (
                info[0] == "V"
                and (depth >= 4 or not isinstance(sub, Call) or not _plain_struct(sub, depth + 1))
            )
        ):
            return False
    return True


def scan_wrapper(reader: SymbolicUnpickler, call: Call) -> Any:
    """After a wrapper's BUILD: skip (or keep, if small) its array bytes, or scan its inline
    object-array pickle, exactly as :func:`build_wrapper` reads them."""
    if call.func_name != WRAPPER:
        return None
    state = wrapper_state(call)
    if state is None:  # what the loader refuses (build_wrapper)
        raise PickleStreamError("a joblib array record of an unknown layout", "suspicious")
    sub = state.get("subclass")
    if not (isinstance(sub, Global) and sub.qualname in _WRAPPER_CLASSES) or state.get(
        "order"
    ) not in ("C", "F"):
        # what the loader refuses (build_wrapper): a class or order joblib does not record
        raise PickleStreamError(
            "a joblib array record of a class or order joblib never writes", "suspicious"
        )
    fields = wrapper_fields(call)
    if fields is None:
        raise PickleStreamError(
            "a joblib array record whose shape or dtype the scanner cannot size", "suspicious"
        )
    shape, code, itemsize, alignment = fields
    count = 1
    for d in shape:
        count *= d
    if itemsize == 0 and count:  # what the loader refuses (build_wrapper)
        raise PickleStreamError(
            f"a joblib array of {count} items of zero bytes (joblib never writes one)",
            "suspicious",
        )
    kind = code.lstrip("<>|=")[0]
    if kind == "O":
        reader.raw_read(0)
        inner = reader.nested()
        call.payload = inner.load()
        inner.expect_frame_end()
        return None
    if kind == "V" and not _plain_struct(_dtype_call(call)):
        raise PickleStreamError(
            "a joblib array of a structured dtype the scanner cannot size", "suspicious"
        )
    _read_padding(reader.raw_read, alignment)
    nbytes = count * itemsize
    left = reader.source.remaining()
    if left is not None and nbytes > left:
        raise PickleStreamError(
            f"an array claims {nbytes} bytes but only {left} remain (truncated?)"
        )
    if nbytes <= KEEP_BYTES:
        call.payload = reader.raw_read(nbytes)
    else:
        step = 16 << 20
        while nbytes > 0:
            reader.raw_read(min(step, nbytes))
            nbytes -= step
    return None


def _dtype_call(call: Call) -> Call:
    return (wrapper_state(call) or {}).get("dtype")  # type: ignore[return-value]


def wrapper_state(call: Call) -> dict[str, Any] | None:
    """A wrapper's state as the loader checks it (build_wrapper): a mapping of joblib's own
    keys, with shape, dtype and order; None for any other layout. Built once per state
    object and size: the records of a file may share one memoised state, and rebuilding it
    per record made a scan O(records x entries) (red team: 2,000 records sharing a state of
    699,050 duplicate entries took 75 s)."""
    obj = call.state
    items = mapping_items(obj)
    if items is None or (isinstance(obj, Call) and obj.args):
        # dict(pairs) / OrderedDict(pairs): the scan would not see the pairs the loader's dict
        # has (red team: an alignment key made the two read different bytes); joblib writes
        # a plain dict
        return None
    cached = getattr(obj, "_wrapper_state", None)
    if cached is not None and cached[0] == len(items):
        return cached[1]  # type: ignore[no-any-return]
    state: dict[str, Any] | None = {}
    for k, v in items:
        if type(k) is not str or k not in _STATE_KEYS:
            state = None
            break
        state[k] = v  # type: ignore[index]
    if state is not None and not {"shape", "dtype", "order"} <= state.keys():
        state = None
    obj._wrapper_state = (len(items), state)  # items only ever grow (SETITEMS)
    return state


def _state_keeps_size(dtype: Call, itemsize: int) -> bool:
    """A dtype's BUILD state names its item size (``elsize``): joblib reads items of that size,
    so a state that changes it from the spelled code is one the scanner cannot size (load
    refuses it: numpy's constructor never builds such a dtype)."""
    state = dtype.state
    if state is None:
        return True
    fixed = (_symbolic_code(dtype) or "").lstrip("<>|=")[:1] not in (
        "U",
        "S",
        "V",
    )  # numpy writes -1 for these
    return (
        isinstance(state, tuple)
        and len(state) >= 6
        and type(state[5]) is int
        and (state[5] == itemsize or (fixed and state[5] == -1))
    )


def wrapper_fields(target: Call) -> tuple[tuple[int, ...], str, int, int | None] | None:
    """(shape, dtype code, item size, alignment) of a symbolic NumpyArrayWrapper, or None."""
    state = wrapper_state(target)
    if state is None:
        return None
    shape = state.get("shape")
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and 0 <= d <= MAX_ELEMENTS for d in shape)
    ):
        return None  # (red team: a huge int as every dimension made the product cost minutes)
    code = _symbolic_code(state.get("dtype"))
    info = itemsize_of_code(code) if code else None
    dtype = state.get("dtype")
    if info is None or not isinstance(dtype, Call) or not _state_keeps_size(dtype, info[1]):
        return None
    alignment = state.get("numpy_array_alignment_bytes")
    if alignment is not None and type(alignment) is not int:
        return None
    return shape, code, info[1], alignment  # type: ignore[return-value]


@dataclass
class ScannedPickle:
    report: PickleReport
    compression: str | None
    arrays: int


def scan_file(path: Path, lookup: Any = None, limits: Limits | None = None) -> ScannedPickle:
    """Walk a pickle / joblib file as the loader would read it."""
    from .policy import GENERAL

    limits = limits or Limits.from_env()
    counter = [0]

    def hook(reader: SymbolicUnpickler, call: Call) -> Any:
        if call.func_name == WRAPPER:
            counter[0] += 1
        return scan_wrapper(reader, call)

    with open(path, "rb") as f:
        try:
            source: Source = open_source(path, f, limits)
        except PickleStreamError as e:
            report = PickleReport(error=str(e), suspicious=e.kind == "suspicious")
            return ScannedPickle(report, compression_of(f.read(8)), 0)
        report = analyse_source(source, str(path), lookup or GENERAL.entry, on_build=hook)
    return ScannedPickle(report, source.compression, counter[0])


# -- values of small arrays, for inspect ----------------------------------------------------------


def array_value(target: Any, limit: int = 1000) -> list[Any] | None:
    """The values of a small wrapped array (numbers or strings), decoded without numpy."""
    if not isinstance(target, Call) or target.func_name != WRAPPER or target.payload is None:
        return None
    fields = wrapper_fields(target)
    if fields is None:
        return None
    shape, code, itemsize, _ = fields
    if len(shape) != 1 or shape[0] > limit:
        return None
    data = target.payload
    if not isinstance(data, (bytes, bytearray)):
        return _object_array_values(data)
    kind = code.lstrip("<>|=")[0]
    big = code.startswith(">")
    codes = {
        ("i", 8): "q",
        ("i", 4): "i",
        ("i", 2): "h",
        ("i", 1): "b",
        ("u", 8): "Q",
        ("u", 4): "I",
        ("u", 2): "H",
        ("u", 1): "B",
        ("f", 8): "d",
        ("f", 4): "f",
        ("b", 1): "?",
    }
    if kind == "U":
        width = itemsize // 4
        text = data.decode("utf-32-be" if big else "utf-32-le", errors="replace")
        return [text[i * width : (i + 1) * width].rstrip("\x00") for i in range(shape[0])]
    fmt = codes.get((kind, itemsize))
    if fmt is None or len(data) != shape[0] * itemsize:
        return None
    return list(struct.unpack(f"{'>' if big else '<'}{shape[0]}{fmt}", data))


def _object_array_values(result: Any) -> list[Any] | None:
    # numpy's _reconstruct(...) + BUILD state (version, shape, dtype, fortran, list of items)
    if isinstance(result, Call) and isinstance(result.state, tuple) and len(result.state) == 5:
        values = result.state[4]
        if isinstance(values, list) and all(isinstance(v, (str, int, float, bool)) for v in values):
            return values
    return None

"""How joblib lays out a numpy array in the stream, read by the restricted unpickler: a
``NumpyArrayWrapper`` whose ``BUILD`` is followed by an optional alignment pad and then the raw
bytes (or, for an object array, a whole pickle of its own). :mod:`.joblibfile` reads the
same layout symbolically for ``scan``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _np, check_shape, dtype_in_use
from .pickle_stream import PickleStreamError

if TYPE_CHECKING:
    from .pickle_load import RestrictedUnpickler

_STATE_KEYS = frozenset(
    {"subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"}
)


def _read_padding(read: Any, alignment: Any) -> None:
    if alignment is None:
        return
    if type(alignment) is not int or not 0 < alignment <= 64:
        raise PickleStreamError("an array with a malformed alignment", "suspicious")
    pad = read(1)[0]
    if pad > alignment:
        raise PickleStreamError(
            f"an array padding of {pad} bytes for an alignment of {alignment}", "suspicious"
        )
    if pad:
        read(pad)


def build_wrapper(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    """joblib's wrapper receives its state: read the array it stands for, with the rules
    above, and put the array where the wrapper was."""
    np = _np()
    st = reader.state
    if (
        not isinstance(state, dict)
        or not state.keys() <= _STATE_KEYS
        or not ("shape" in state and "dtype" in state and "order" in state)
    ):
        raise st.refuse("a joblib array record of an unknown layout")
    subclass = state.get("subclass")
    # joblib records the array's exact type: ndarray, or np.matrix / np.memmap (the very
    # numpy classes, compared by identity); numpy 2's joblib.load hands back an ndarray
    # for all three, and so does this reader (a matrix on numpy 1, below, as joblib does)
    if not (subclass is np.ndarray or subclass is np.matrix or subclass is np.memmap) or state[
        "order"
    ] not in ("C", "F"):
        raise st.refuse("a joblib array record of a class or order joblib never writes")
    shape = state["shape"]
    count = check_shape(st, shape, "a joblib array")
    dtype = dtype_in_use(st, state["dtype"], "a joblib array")
    if dtype.kind == "O" and dtype.fields is None:
        reader.raw_read(0)  # the inline pickle may not start inside a frame either
        inner = reader.nested()
        array = inner.load()
        inner.expect_frame_end()
        if type(array) is not np.ndarray or array.dtype.kind != "O" or array.size != count:
            raise st.refuse("a joblib object array whose inline pickle is not that array")
        return array
    if dtype.hasobject:
        raise st.refuse("a joblib array of a structured dtype holding objects")
    if dtype.itemsize == 0 and count:  # numpy would size it as 1 byte per item, never read
        raise st.refuse(f"a joblib array of {count} items of zero bytes (joblib never writes one)")
    _read_padding(reader.raw_read, state.get("numpy_array_alignment_bytes"))
    nbytes = count * dtype.itemsize
    left = reader.source.remaining()
    if left is not None and nbytes > left:
        raise PickleStreamError(
            f"an array claims {nbytes} bytes but only {left} remain (truncated?)"
        )
    if left is None:  # a compressed stream: its length is unknown, read what is really there
        array = np.frombuffer(bytearray(_read_all(reader, nbytes)), dtype=dtype, count=count)
    else:  # the bytes are in the file (checked above): read them straight into the array
        array = np.empty(count, dtype=dtype)
        if array.nbytes != nbytes:  # every byte of the array is read from the file
            raise st.refuse("a joblib array whose size numpy and the record disagree on")
        if nbytes:
            reader.raw_readinto(array.view(np.uint8))
    array = (
        array.reshape(shape[::-1]).transpose() if state["order"] == "F" else array.reshape(shape)
    )
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    if subclass is np.matrix and hasattr(array, "__array_prepare__"):  # numpy 1.x
        if array.ndim > 2:
            raise st.refuse("a joblib matrix of more than two dimensions")
        array = array.view(np.matrix)
    return array


def _read_all(reader: RestrictedUnpickler, nbytes: int) -> bytes:
    """``nbytes`` of raw data, read in chunks so a false length allocates nothing up front."""
    chunks, have, step = [], 0, 16 << 20
    while have < nbytes:
        part = reader.raw_read(min(step, nbytes - have))
        chunks.append(part)
        have += len(part)
    return b"".join(chunks)

"""Validators for numpy's pickle callables and states: arrays and masked arrays here, dtypes in
:mod:`.check_numpy_dtype`, random generators in :mod:`.check_numpy_random`; ``CALLS`` and
``build_for`` are the table of all of them.

numpy trusts its own pickles: a dtype ``BUILD`` state whose flags say an object dtype holds
no objects, a structured dtype whose fields reach past its item size, an object array built
from raw bytes, a Mersenne Twister position past its key — each is a crash or worse. Every
state here is checked against what numpy's own public constructors make, before numpy sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _np, build_dtype, call_dtype, check_shape, dtype_in_use
from .check_numpy_random import (
    build_bit_generator,
    build_generator,
    build_randomstate,
    build_seed_sequence,
    call_bit_generator,
    call_generator,
    call_randomstate,
    call_seed_sequence,
)

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler


# -- arrays -----------------------------------------------------------------------------------


def _array_classes() -> tuple[Any, ...]:
    np = _np()
    return (np.ndarray, np.matrix)


def call_reconstruct(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``_reconstruct(ndarray, (0,), b'b')``: the empty array numpy's BUILD then fills."""
    if (
        len(args) != 3
        or not any(args[0] is c for c in _array_classes())
        or args[1] != (0,)
        or args[2] not in (b"b", "b")
    ):
        raise st.refuse("numpy's _reconstruct called with arguments numpy never writes")
    return st.expect_build(func(args[0], (0,), b"b"))


def call_mareconstruct(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    np = _np()
    if (
        len(args) != 4
        or args[0] is not np.ma.MaskedArray
        or args[1] is not np.ndarray
        or args[2] != (0,)
        or args[3] not in (b"b", "b")
    ):
        raise st.refuse("numpy.ma's _mareconstruct called with arguments numpy never writes")
    return st.expect_build(func(*args))


def check_raw(st: LoadState, shape: Any, dtype: Any, raw: Any, what: str) -> int:
    """Element data for ``shape`` x ``dtype``: a list of exactly that many items for object
    dtypes, else bytes of exactly the right length (never objects from raw bytes)."""
    n = check_shape(st, shape, what)
    if dtype.hasobject:
        if dtype.fields is not None or dtype.subdtype is not None:
            raise st.refuse(f"{what} is a structured array holding objects")
        if not isinstance(raw, list) or len(raw) != n:
            raise st.refuse(
                f"{what} of {n} objects has {len(raw) if isinstance(raw, list) else 'no'} items"
            )
        if n:
            st.claim(raw, what)  # numpy copies the list's pointers into each array
    elif not isinstance(raw, (bytes, bytearray)) or len(raw) != n * dtype.itemsize:
        got = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
        raise st.refuse(f"{what} needs {n * dtype.itemsize} bytes of data, the file has {got}")
    return n


def _array_state(st: LoadState, state: Any, what: str) -> tuple[Any, ...]:
    if not (
        isinstance(state, tuple)
        and len(state) == 5
        and state[0] == 1
        and isinstance(state[3], (bool, int))
    ):
        raise st.refuse(f"{what} state of an unknown layout")
    dtype = dtype_in_use(st, state[2], what)
    check_raw(st, state[1], dtype, state[4], what)
    return state


def build_array(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    np = _np()
    st = reader.state
    if isinstance(target, np.ma.MaskedArray):
        return build_masked(reader, target, state)
    target.__setstate__(_array_state(st, state, "an array"))
    return target


def build_masked(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    np = _np()
    st = reader.state
    if not (isinstance(state, tuple) and len(state) == 7):
        raise st.refuse("a masked array state of an unknown layout")
    _array_state(st, state[:5], "a masked array")
    n = check_shape(st, state[1], "a masked array")
    mask_size = np.ma.make_mask_descr(state[2]).itemsize
    if not isinstance(state[5], (bytes, bytearray)) or len(state[5]) not in (0, n * mask_size):
        raise st.refuse("a masked array whose mask does not match its shape")
    fill = state[6]  # numpy makes an array of the dtype from it: one item, or as many as given
    if fill is not None and (
        not (
            _plain_fill(fill)
            or (
                isinstance(fill, (np.generic, np.ndarray))
                and fill.shape == ()
                and not fill.dtype.hasobject
            )
        )
        or state[2].itemsize > MAX_FILL_ITEM
    ):
        raise st.refuse("a masked array whose fill value is not one plain value of a small dtype")
    target.__setstate__(state)
    return target


#: The largest item a masked array's fill value may have (numpy allocates one of them)
MAX_FILL_ITEM = 1 << 16


def _plain_fill(v: Any) -> bool:
    return type(v) in (int, float, complex, bool) or (
        type(v) in (str, bytes) and len(v) <= MAX_FILL_ITEM
    )


def call_frombuffer(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """Protocol 5's ``_frombuffer(buffer, dtype, shape, order)``: plain dtypes only."""
    if len(args) != 4 or args[3] not in ("C", "F"):
        raise st.refuse("numpy's _frombuffer called with arguments numpy never writes")
    dtype = dtype_in_use(st, args[1], "an array")
    if dtype.hasobject:
        raise st.refuse("an array of objects built from raw bytes (forged object pointers)")
    # check_raw for a dtype without objects, inline (it runs once per array of a forest)
    raw = args[0]
    n = check_shape(st, args[2], "an array")
    if not isinstance(raw, (bytes, bytearray)):
        raise st.refuse(
            f"an array needs {n * dtype.itemsize} bytes of data, the file has {type(raw).__name__}"
        )
    if len(raw) != n * dtype.itemsize:
        raise st.refuse(
            f"an array needs {n * dtype.itemsize} bytes of data, the file has {len(raw)}"
        )
    return func(raw, dtype, args[2], args[3])


def call_scalar(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    np = _np()
    if len(args) not in (1, 2):
        raise st.refuse("numpy's scalar called with arguments numpy never writes")
    dtype = dtype_in_use(st, args[0], "a numpy scalar")
    if dtype.hasobject:
        if dtype != np.dtype("O") or len(args) != 2:
            raise st.refuse("a numpy object scalar of a structured dtype")
        return args[1]  # numpy returns the object itself
    data = args[1] if len(args) == 2 else b""
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise st.refuse(f"a numpy {dtype} scalar needs {dtype.itemsize} bytes")
    st.charge(dtype.itemsize, "a numpy scalar")  # copies its bytes (memo-shared ones too)
    return func(dtype, data)


CALLS = {
    "numpy:dtype": call_dtype,
    "numpy._core.multiarray:_reconstruct": call_reconstruct,
    "numpy._core.multiarray:scalar": call_scalar,
    "numpy._core.numeric:_frombuffer": call_frombuffer,
    "numpy.ma.core:_mareconstruct": call_mareconstruct,
    "numpy.random._pickle:__bit_generator_ctor": call_bit_generator,
    "numpy.random._pickle:__randomstate_ctor": call_randomstate,
    "numpy.random._pickle:__generator_ctor": call_generator,
    "numpy.random.bit_generator:__pyx_unpickle_SeedSequence": call_seed_sequence,
}


def build_for(t: type) -> Any:
    """The BUILD validator for a numpy type, or None."""
    np = _np()
    if issubclass(t, np.dtype):
        return build_dtype
    if issubclass(t, np.ndarray):
        return build_array if (t in (np.ndarray, np.matrix) or t is np.ma.MaskedArray) else None
    if issubclass(t, np.random.BitGenerator):
        return build_bit_generator
    if t is np.random.RandomState:
        return build_randomstate
    if t is np.random.Generator:
        return build_generator
    if t is np.random.SeedSequence:
        return build_seed_sequence
    return None

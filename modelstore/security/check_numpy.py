"""Validators for numpy's pickle callables and states: dtypes, arrays, masked arrays, random
generators.

numpy trusts its own pickles: a dtype ``BUILD`` state whose flags say an object dtype holds
no objects, a structured dtype whose fields reach past its item size, an object array built
from raw bytes, a Mersenne Twister position past its key — each is a crash or worse. Every
state here is checked against what numpy's own public constructors make, before numpy sees it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import ModelstoreError

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler

#: Largest element count of one array a file may declare (the bytes must be in the file too).
MAX_ELEMENTS = 1 << 44
MAX_DIMS = 32
_CODE = re.compile(r"^[<>|=]?([a-zA-Z?])(\d{1,12})$")


def _np() -> Any:
    import numpy

    return numpy


def _int(v: Any) -> bool:
    return type(v) is int or (
        hasattr(v, "dtype") and getattr(v, "shape", None) == () and v.dtype.kind in "iu"
    )


def check_shape(st: LoadState, shape: Any, what: str) -> int:
    """A tuple of sane non-negative ints; returns the element count."""
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(_int(d) and int(d) >= 0 for d in shape)
    ):
        raise st.refuse(f"{what} has a malformed shape {str(shape)[:80]}")
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise st.refuse(f"{what} declares {n} elements")
    return n


def dtype_in_use(st: LoadState, dtype: Any, what: str) -> Any:
    """A dtype the stream built (validated when its state was set) that now gets used."""
    np = _np()
    if not isinstance(dtype, np.dtype):
        raise st.refuse(f"{what} has a dtype that is a {type(dtype).__name__}")
    st.complete(dtype, "a dtype")
    return dtype


# -- numpy.dtype ------------------------------------------------------------------------------


def call_dtype(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``numpy.dtype(code, align, copy)``: always a fresh copy (the interned float64 dtype
    must never be a BUILD target), from a plain type code."""
    np = _np()
    if not 1 <= len(args) <= 3:
        raise st.refuse("numpy.dtype called with an unexpected number of arguments")
    code = args[0]
    if isinstance(code, bytes):
        code = code.decode("ascii", "replace")
    if not isinstance(code, str) or not _CODE.match(code):
        raise st.refuse(
            f"numpy.dtype called with {type(args[0]).__name__} {str(args[0])[:40]!r}, not a type code"
        )
    align = bool(args[1]) if len(args) > 1 and isinstance(args[1], (bool, int)) else False
    try:
        result = np.dtype(code, align, True)
    except (TypeError, ValueError) as e:
        raise st.refuse(f"numpy.dtype({code!r}) is not a dtype ({e})") from None
    st.expect_build(result)
    return result


def _candidate(st: LoadState, target: Any, state: Any) -> Any:
    """The dtype numpy's public constructors build from ``state``'s description."""
    np = _np()
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise st.refuse("a dtype state of an unknown layout")
    _, endian, subarray, names, fields, elsize, alignment, flags = state[:8]
    if endian not in ("<", ">", "|", "=") or not (_int(elsize) and _int(alignment) and _int(flags)):
        raise st.refuse("a dtype state with malformed fields")
    if subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2):
            raise st.refuse("a dtype state with a malformed sub-array")
        base = dtype_in_use(st, subarray[0], "a sub-array dtype")
        check_shape(st, subarray[1], "a sub-array dtype")
        return np.dtype((base, subarray[1]))
    if names is not None or fields is not None:
        if not (
            isinstance(names, tuple)
            and isinstance(fields, dict)
            and all(type(n) is str for n in names)
        ):
            raise st.refuse("a structured dtype state with malformed names or fields")
        formats, offsets, titles = [], [], []
        for n in names:
            spec = fields.get(n)
            if not (isinstance(spec, tuple) and len(spec) in (2, 3) and _int(spec[1])):
                raise st.refuse(f"a structured dtype state with a malformed field {n[:40]!r}")
            formats.append(dtype_in_use(st, spec[0], "a field's dtype"))
            offsets.append(int(spec[1]))
            titles.append(spec[2] if len(spec) == 3 else None)
        desc: dict[str, Any] = {
            "names": list(names),
            "formats": formats,
            "offsets": offsets,
            "itemsize": int(elsize),
        }
        if any(t is not None for t in titles):
            desc["titles"] = titles
        return np.dtype(desc, align=bool(int(flags) & 0x80))
    kind = target.kind
    if kind in "USV":
        size = int(elsize) // 4 if kind == "U" else int(elsize)
        cand = np.dtype(f"{kind}{size}")
    elif kind in "Mm":
        meta = state[8] if len(state) == 9 else None
        if not (
            isinstance(meta, tuple)
            and len(meta) == 2
            and meta[0] is None
            and isinstance(meta[1], tuple)
            and len(meta[1]) == 4
        ):
            raise st.refuse("a datetime dtype state with malformed metadata")
        unit, num, den, events = meta[1]
        if not (
            isinstance(unit, bytes)
            and unit.isascii()
            and _int(num)
            and 0 < num < 1 << 31
            and den == 1
            and events == 1
        ):
            raise st.refuse("a datetime dtype state with a malformed unit")
        text = unit.decode()
        cand = np.dtype(
            f"{kind}8" if text == "generic" else f"{kind}8[{num if num != 1 else ''}{text}]"
        )
    else:
        cand = np.dtype(target.str)
    if endian in "<>" and cand.byteorder not in ("|",):
        cand = cand.newbyteorder(endian)
    return cand


def build_dtype(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    """Set a dtype's state only if it is exactly what numpy's constructor makes from the same
    description: flags, item size, offsets and object-ness cannot disagree."""
    st = reader.state
    try:
        cand = _candidate(st, target, state)
    except ModelstoreError:
        raise
    except (TypeError, ValueError) as e:
        raise st.refuse(f"a dtype state numpy itself would not build ({str(e)[:120]})") from None
    if (
        type(cand) is not type(target)
        or cand.itemsize != target.itemsize
        or cand.__reduce__()[2] != state
    ):
        raise st.refuse(f"a dtype state that disagrees with the dtype it describes ({cand})")
    target.__setstate__(state)
    if target != cand or target.flags != cand.flags or target.itemsize != cand.itemsize:
        raise st.refuse("a dtype state numpy applied differently from its description")
    return target


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
    target.__setstate__(state)
    return target


def call_frombuffer(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """Protocol 5's ``_frombuffer(buffer, dtype, shape, order)``: plain dtypes only."""
    if len(args) != 4 or args[3] not in ("C", "F"):
        raise st.refuse("numpy's _frombuffer called with arguments numpy never writes")
    dtype = dtype_in_use(st, args[1], "an array")
    if dtype.hasobject:
        raise st.refuse("an array of objects built from raw bytes (forged object pointers)")
    check_raw(st, args[2], dtype, args[0], "an array")
    return func(args[0], dtype, args[2], args[3])


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
    return func(dtype, data)


# -- random generators ------------------------------------------------------------------------

_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def _bit_generator_class(st: LoadState, value: Any) -> Any:
    np = _np()
    table = {name: getattr(np.random, name) for name in _BIT_GENERATORS}
    if isinstance(value, str) and value in table:
        return table[value]
    for cls in table.values():
        if value is cls:
            return cls
    raise st.refuse(f"an unknown random bit generator {str(value)[:40]!r}")


def call_bit_generator(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    if len(args) > 1:
        raise st.refuse("__bit_generator_ctor called with arguments numpy never writes")
    cls = _bit_generator_class(st, args[0] if args else "MT19937")
    return st.expect_build(cls())


def _generator_arg(st: LoadState, args: tuple[Any, ...], what: str) -> Any:
    """The bit generator a RandomState/Generator wraps: built in this stream, or a name
    (with numpy's own ctor as the optional second argument, never another callable)."""
    np = _np()
    if not 1 <= len(args) <= 2:
        raise st.refuse(f"{what} called with arguments numpy never writes")
    if len(args) == 2 and not st.is_value(args[1], "numpy.random._pickle:__bit_generator_ctor"):
        raise st.refuse(f"{what} given a constructor that is not numpy's")
    bg = args[0]
    if isinstance(bg, np.random.BitGenerator):
        st.complete(bg, "a random bit generator")
        return bg
    return _bit_generator_class(st, bg)()


def call_randomstate(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    np = _np()
    return st.expect_build(np.random.RandomState(_generator_arg(st, args, "__randomstate_ctor")))


def call_generator(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    np = _np()
    return st.expect_build(np.random.Generator(_generator_arg(st, args, "__generator_ctor")))


def _uint_array(st: LoadState, value: Any, dtype: str, length: int, what: str) -> None:
    np = _np()
    if not (
        isinstance(value, np.ndarray)
        and value.dtype == np.dtype(dtype)
        and value.shape == (length,)
    ):
        raise st.refuse(f"a random generator state whose {what} is not {length} x {dtype}")
    st.complete(value, "an array")


def _small(value: Any, bound: int) -> bool:
    return _int(value) and 0 <= int(value) < bound


def check_bit_state(st: LoadState, name: str, state: Any) -> None:
    """The state dict numpy's bit generators accept, with every index within its buffer."""
    if (
        not isinstance(state, dict)
        or state.get("bit_generator") != name
        or not isinstance(state.get("state"), dict)
    ):
        raise st.refuse(f"a malformed {name} state")
    inner = state["state"]
    if name == "MT19937":
        _uint_array(st, inner.get("key"), "uint32", 624, "key")
        if not _small(inner.get("pos"), 625):
            raise st.refuse("a Mersenne Twister state whose position is outside its key")
        return
    if name == "Philox":
        _uint_array(st, inner.get("counter"), "uint64", 4, "counter")
        _uint_array(st, inner.get("key"), "uint64", 2, "key")
        _uint_array(st, state.get("buffer"), "uint64", 4, "buffer")
        if not _small(state.get("buffer_pos"), 5):
            raise st.refuse("a Philox state whose buffer position is outside its buffer")
    elif name == "SFC64":
        _uint_array(st, inner.get("state"), "uint64", 4, "state")
    elif not (_small(inner.get("state"), 1 << 128) and _small(inner.get("inc"), 1 << 128)):
        raise st.refuse(f"a {name} state with malformed words")
    if not (_small(state.get("has_uint32"), 2) and _small(state.get("uinteger"), 1 << 32)):
        raise st.refuse(f"a {name} state with a malformed buffered word")


def build_bit_generator(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    np = _np()
    st = reader.state
    if not (isinstance(state, tuple) and len(state) == 2):
        raise st.refuse("a random bit generator state of an unknown layout")
    check_bit_state(st, type(target).__name__, state[0])
    seed = state[1]
    if seed is not None:
        if not isinstance(seed, np.random.SeedSequence):
            raise st.refuse("a random bit generator whose seed is not a SeedSequence")
        st.complete(seed, "a SeedSequence")
    target.__setstate__(state)
    return target


def build_randomstate(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    st = reader.state
    if not isinstance(state, dict):
        raise st.refuse("a RandomState state that is not a dict")
    name = type(target._bit_generator).__name__
    check_bit_state(st, name, {k: v for k, v in state.items() if k not in ("has_gauss", "gauss")})
    if not (
        _small(state.get("has_gauss", 0), 2) and isinstance(state.get("gauss", 0.0), (float, int))
    ):
        raise st.refuse("a RandomState state with a malformed cached gaussian")
    target.__setstate__(state)
    return target


def build_generator(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    if state is not None:
        raise reader.state.refuse("a Generator state numpy never writes")
    return target


def _check_seed_state(st: LoadState, state: Any) -> None:
    """A SeedSequence's pool must match its declared size (the C code indexes it by that size)."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise st.refuse("a SeedSequence state of an unknown layout")
    entropy, spawned, pool, pool_size, spawn_key = state
    if not (_small(pool_size, 1 << 16) and int(pool_size) >= 4):
        raise st.refuse("a SeedSequence with a malformed pool size")
    _uint_array(st, pool, "uint32", int(pool_size), "pool")
    if not (
        _small(spawned, 1 << 62)
        and isinstance(spawn_key, tuple)
        and all(_small(k, 1 << 64) for k in spawn_key)
    ):
        raise st.refuse("a SeedSequence with a malformed spawn key")
    if entropy is not None and not _small(entropy, 1 << 4096):
        if not isinstance(entropy, (list, tuple)) or not all(_small(e, 1 << 4096) for e in entropy):
            raise st.refuse("a SeedSequence with malformed entropy")


def call_seed_sequence(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``__pyx_unpickle_SeedSequence(SeedSequence, checksum, state-or-None)``; a state that
    comes later by BUILD is checked there."""
    np = _np()
    if len(args) != 3 or args[0] is not np.random.SeedSequence or not _int(args[1]):
        raise st.refuse("SeedSequence's unpickle helper called with arguments numpy never writes")
    if args[2] is None:
        return st.expect_build(func(*args), required=True)
    _check_seed_state(st, args[2])
    return func(*args)


def build_seed_sequence(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    _check_seed_state(reader.state, state)
    target.__setstate__(state)
    return target


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

"""Validators for numpy's random generators in pickles: bit generators, ``RandomState``,
``Generator`` and ``SeedSequence``, each state checked so every index stays within its buffer
(a Mersenne Twister position past its key is a crash)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check_numpy_dtype import _int, _np

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler


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

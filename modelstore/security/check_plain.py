"""Validators for the standard library's pickle callables: containers, scalars, dates, numbers,
and ``copyreg``'s "make an empty instance" helpers.

Each one is an API the file may call with any arguments, so each accepts only the argument
shapes Python's own pickles use: containers from materialised lists (never an iterator or a
``range`` that expands to gigabytes), ``bytes`` never from an int (``bytes(3 << 30)``), numbers
from short text (``Fraction("1e999999999")`` computes a billion-digit power).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .allowlist import CONSTRUCT, VALUE
from .pickle_keys import check_keys, safe_key

if TYPE_CHECKING:
    from .pickle_load import LoadState

_BIG = (1 << 61) - 1
_TEXT_CODECS = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"})
_FRACTION = re.compile(r"^\s*[+-]?\d{1,400}(/\d{1,400})?\s*$")
_DECIMAL = re.compile(
    r"^\s*[+-]?(\d{0,400}(\.\d{0,400})?([eE][+-]?\d{1,7})?|NaN|sNaN|Infinity|Inf)\s*$", re.I
)
_MATERIAL = (list, tuple, set, frozenset, dict)


def _n_args(st: LoadState, name: str, args: tuple[Any, ...], lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        raise st.refuse(f"{name} called with {len(args)} arguments")


def _small_int(v: Any) -> bool:
    return type(v) is int and -_BIG < v < _BIG


def _number(v: Any) -> bool:
    return _small_int(v) or type(v) is float or type(v) is bool


def _container(kind: type, keyed: bool) -> Any:
    def call(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
        _n_args(st, kind.__name__, args, 0, 1)
        if args:
            if not isinstance(args[0], _MATERIAL):
                raise st.refuse(
                    f"{kind.__name__}() of a {type(args[0]).__name__}, not a materialised container"
                )
            if keyed:
                check_keys(args[0].keys() if isinstance(args[0], dict) else args[0], st.where)
            # a pointer per item; a set's table costs ~64 bytes per item
            st.charge((64 if keyed else 8) * len(args[0]), f"{kind.__name__}()")
        return func(*args)

    return call


def _dict_like(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, func.__name__, args, 0, 1)
    if args:
        src = args[0]
        if isinstance(src, dict):
            check_keys(src.keys(), st.where)
        elif isinstance(src, (list, tuple)) and all(
            isinstance(p, tuple) and len(p) == 2 for p in src
        ):
            check_keys((p[0] for p in src), st.where)
        else:
            raise st.refuse(f"{func.__name__}() of a {type(src).__name__}")
        st.charge(48 * len(src), f"{func.__name__}()")  # a dict costs ~48 bytes per entry
    return func(*args)


def _counter(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``Counter`` pickles ``Counter(dict(self))``; given a list it counts the items (red team:
    40,000 pairs of ints whose tuples share one hash, 639 KB, took ``ms.load`` 40 s)."""
    if args and not isinstance(args[0], dict):
        raise st.refuse(f"Counter() of a {type(args[0]).__name__} (it pickles a dict)")
    return _dict_like(st, func, args)


def _bytes_like(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, func.__name__, args, 0, 3)
    if args:
        src = args[0]
        if isinstance(src, str):
            if len(args) < 2:
                raise st.refuse(f"{func.__name__}() of text without a text encoding")
            _text_codec(st, func.__name__, args[1:])
            st.charge(3 * len(src), f"{func.__name__}()")  # encoded: up to 4 bytes a character
        elif isinstance(src, list):
            if not all(type(b) is int and 0 <= b < 256 for b in src):
                raise st.refuse(f"{func.__name__}() of a list that is not bytes")
        elif not isinstance(src, (bytes, bytearray)):
            raise st.refuse(
                f"{func.__name__}() of a {type(src).__name__} (an int would allocate that many bytes)"
            )
        st.charge(len(src), f"{func.__name__}()")
    return func(*args)


def _scalar(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, func.__name__, args, 0, 2)
    for a in args:
        if not (_number(a) or (isinstance(a, (str, bytes)) and len(a) <= 4400)):
            raise st.refuse(f"{func.__name__}() of a {type(a).__name__}")
    return func(*args)


def _str(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "str", args, 0, 3)
    if args and not isinstance(args[0], (str, bytes, bytearray)) and not _number(args[0]):
        raise st.refuse(f"str() of a {type(args[0]).__name__}")
    if len(args) > 1:  # str(data, encoding, errors) decodes: text codecs only (bz2_codec inflates)
        _text_codec(st, "str", args[1:])
    if args and isinstance(args[0], (str, bytes, bytearray)):
        st.charge(len(args[0]), "str()")
    return func(*args)


_ERROR_HANDLERS = frozenset(
    {"strict", "ignore", "replace", "surrogateescape", "surrogatepass", "backslashreplace"}
)


def _text_codec(st: LoadState, what: str, args: tuple[Any, ...]) -> None:
    """``args`` is ``(encoding[, errors])``: a plain text encoding and a built-in error handler."""
    encoding, errors = args[0], (args[1] if len(args) > 1 else "strict")
    if (
        not isinstance(encoding, str)
        or encoding.lower() not in _TEXT_CODECS
        or not isinstance(errors, str)
        or errors not in _ERROR_HANDLERS
    ):
        raise st.refuse(f"{what}() with a codec that is not a plain text encoding")


def _slice_range(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, func.__name__, args, 0 if func is slice else 1, 3)
    if not all(a is None or _small_int(a) for a in args):
        raise st.refuse(f"{func.__name__}() of values that are not small integers")
    return func(*args)


def _no_args(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, func.__name__, args, 0, 0)
    return func()


def _encode(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``_codecs.encode(text, 'latin1')``: protocol 2's spelling of bytes. Text codecs only:
    ``zlib_codec``/``bz2_codec`` would decompress, ``punycode`` is slow on crafted input."""
    _n_args(st, "_codecs.encode", args, 1, 3)
    encoding = args[1] if len(args) > 1 else "utf-8"
    if (
        not isinstance(args[0], str)
        or not isinstance(encoding, str)
        or encoding.lower() not in _TEXT_CODECS
        or (len(args) == 3 and args[2] != "strict")
    ):
        raise st.refuse("_codecs.encode called with a codec that is not a plain text encoding")
    st.charge(4 * len(args[0]), "_codecs.encode()")  # up to 4 bytes per character
    return func(*args)


def _defaultdict(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "defaultdict", args, 0, 2)
    factory = args[0] if args else None
    allowed = (
        "builtins:list",
        "builtins:dict",
        "builtins:set",
        "builtins:int",
        "builtins:float",
        "builtins:str",
        "builtins:tuple",
    )
    if factory is not None and not any(st.is_value(factory, a) for a in allowed):
        raise st.refuse("a defaultdict whose default factory is not a builtin container")
    if len(args) == 2:
        return func(factory, _dict_like(st, dict, args[1:]))
    return func(factory)


def _deque(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "deque", args, 0, 2)
    if args and not isinstance(args[0], (list, tuple)):
        raise st.refuse(f"deque() of a {type(args[0]).__name__}")
    if len(args) == 2 and not (args[1] is None or (_small_int(args[1]) and args[1] >= 0)):
        raise st.refuse("deque() with a malformed maxlen")
    if args:
        st.charge(8 * len(args[0]), "deque()")
    return func(*args)


_DATE_SIZES = {"datetime": 10, "date": 4, "time": 6}


def _datetime(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """Dates from their packed bytes (C validates the fields) or plain ints; a tzinfo only
    as a fixed ``datetime.timezone`` the stream built."""
    import datetime

    name = func.__name__
    if name == "timezone":
        _n_args(st, name, args, 1, 2)
        if not isinstance(args[0], datetime.timedelta) or (
            len(args) == 2 and not isinstance(args[1], str)
        ):
            raise st.refuse("timezone() of something that is not an offset")
        return func(*args)
    if name == "timedelta":
        if not all(_small_int(a) or type(a) is float for a in args) or len(args) > 7:
            raise st.refuse("timedelta() of values that are not numbers")
        return func(*args)
    # date, time and datetime pickle as their packed fields, plus an optional tzinfo
    _n_args(st, name, args, 1, 2)
    raw = args[0].encode("latin1") if isinstance(args[0], str) else args[0]
    if not isinstance(raw, bytes) or len(raw) != _DATE_SIZES[name]:
        raise st.refuse(f"{name}() of something other than its packed fields")
    tz = args[1] if len(args) == 2 else None
    if tz is not None and not isinstance(tz, datetime.timezone):
        raise st.refuse(f"{name}() with a tzinfo that is not a fixed timezone")
    return func(raw, *args[1:])


def _decimal(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "Decimal", args, 1, 1)
    value = args[0]
    if not ((isinstance(value, str) and _DECIMAL.match(value)) or _small_int(value)):
        raise st.refuse("Decimal() of text that is not a bounded number")
    result = func(value)
    if result.is_finite() and abs(result.adjusted()) > 100_000:
        raise st.refuse("Decimal() with an exponent beyond 100000")
    return result


def _fraction(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "Fraction", args, 1, 2)
    if len(args) == 1 and isinstance(args[0], str):
        if not _FRACTION.match(args[0]):
            raise st.refuse(
                "Fraction() of text that is not a bounded ratio (exponents are refused)"
            )
    elif not all(type(a) is int and a.bit_length() <= 1400 for a in args):
        raise st.refuse("Fraction() of values that are not bounded integers")
    return func(*args)


# -- copyreg: empty instances of allowed classes -------------------------------------------------


def _construct_class(st: LoadState, cls: Any, how: str) -> Any:
    entry = st.entry_of(cls)
    if entry is None or not isinstance(cls, type) or entry.kind not in (CONSTRUCT, "trusted"):
        name = getattr(cls, "__qualname__", type(cls).__name__)
        raise st.refuse(f"{how} of {name}, which is not a class the stream may create")
    if entry.kind == "trusted" and cls.__new__ is not _OBJECT_NEW:  # the class's own code runs
        st.before_trusted()
    return cls


def _newobj(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    if not args:
        raise st.refuse("copyreg.__newobj__ without a class")
    cls = _construct_class(st, args[0], "copyreg.__newobj__")
    if len(args) > 1:
        raise st.refuse(f"copyreg.__newobj__ passes arguments to {cls.__qualname__}.__new__")
    return st.expect_build(cls.__new__(cls))


def _newobj_ex(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    _n_args(st, "copyreg.__newobj_ex__", args, 3, 3)
    cls = _construct_class(st, args[0], "copyreg.__newobj_ex__")
    if args[1] != () or args[2] != {}:
        raise st.refuse(f"copyreg.__newobj_ex__ passes arguments to {cls.__qualname__}.__new__")
    return st.expect_build(cls.__new__(cls))


_OBJECT_NEW: Any = object.__new__
_BASES = (
    "builtins:object",
    "builtins:dict",
    "builtins:list",
    "builtins:set",
    "builtins:tuple",
    "builtins:frozenset",
    "builtins:int",
    "builtins:float",
    "builtins:str",
    "builtins:bytes",
)


def _reconstructor(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """Protocol 0/1's ``_reconstructor(cls, base, state)``: an instance of an allowed class
    from a builtin base and a plain value of that base."""
    _n_args(st, "copyreg._reconstructor", args, 3, 3)
    cls, base, state = args
    cls = _construct_class(st, cls, "copyreg._reconstructor")
    if not any(st.is_value(base, b) for b in _BASES) or not issubclass(cls, base):
        raise st.refuse(
            f"copyreg._reconstructor of {cls.__qualname__} from a base it does not have"
        )
    if base is object:
        if state is not None:
            raise st.refuse("copyreg._reconstructor with a state for a plain object")
        return st.expect_build(object.__new__(cls))
    if type(state) is not base:
        raise st.refuse(
            f"copyreg._reconstructor of a {base.__name__} subclass from a {type(state).__name__}"
        )
    if isinstance(state, (dict, set, frozenset)):
        check_keys(state.keys() if isinstance(state, dict) else state, st.where)
    if hasattr(state, "__len__"):
        st.charge(16 * len(state), "copyreg._reconstructor")
    obj = base.__new__(cls, state)
    if base.__init__ is not object.__init__:
        base.__init__(obj, state)
    return st.expect_build(obj)


def _partial_target(st: LoadState, func: Any) -> Any:
    import types

    entry = st.entry_of(func)
    if (
        entry is None
        or entry.kind != VALUE
        or not isinstance(func, (types.FunctionType, types.BuiltinFunctionType))
    ):
        name = getattr(func, "__qualname__", type(func).__name__)
        raise st.refuse(f"functools.partial over {name}, which is not an allowed pure function")
    return func


def _partial(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
    """``partial(f)``, its arguments set later by BUILD: ``f`` must be a *value* entry (a pure
    function a model stores), never a class or a callable entry."""
    _n_args(st, "functools.partial", args, 1, 1)
    return st.expect_build(func(_partial_target(st, args[0])))


def build_partial(reader: Any, target: Any, state: Any) -> Any:
    st = reader.state
    if not (isinstance(state, tuple) and len(state) == 4):
        raise st.refuse("a functools.partial state of an unknown layout")
    fn, args, kwds, namespace = state
    if (
        fn is not target.func
        or not isinstance(args, tuple)
        or not (kwds is None or isinstance(kwds, dict))
        or not (namespace is None or isinstance(namespace, dict))
    ):
        raise st.refuse("a functools.partial state that changes its function or is malformed")
    for mapping in (kwds or {}, namespace or {}):
        if not all(type(k) is str for k in mapping):
            raise st.refuse("a functools.partial state with keyword names that are not strings")
    target.__setstate__(state)
    return target


CALLS = {
    **{
        f"builtins:{n}": _container(t, keyed)
        for n, t, keyed in (
            ("set", set, True),
            ("frozenset", frozenset, True),
            ("list", list, False),
            ("tuple", tuple, False),
        )
    },
    "builtins:dict": _dict_like,
    "builtins:bytes": _bytes_like,
    "builtins:bytearray": _bytes_like,
    "builtins:int": _scalar,
    "builtins:float": _scalar,
    "builtins:complex": _scalar,
    "builtins:bool": _scalar,
    "builtins:str": _str,
    "builtins:slice": _slice_range,
    "builtins:range": _slice_range,
    "builtins:object": _no_args,
    "_codecs:encode": _encode,
    "collections:OrderedDict": _dict_like,
    "collections:Counter": _counter,
    "collections:defaultdict": _defaultdict,
    "collections:deque": _deque,
    **{f"datetime:{n}": _datetime for n in ("datetime", "date", "time", "timedelta", "timezone")},
    "decimal:Decimal": _decimal,
    "fractions:Fraction": _fraction,
    "functools:partial": _partial,
    "copyreg:__newobj__": _newobj,
    "copyreg:__newobj_ex__": _newobj_ex,
    "copyreg:_reconstructor": _reconstructor,
}

__all__ = ["CALLS", "safe_key"]

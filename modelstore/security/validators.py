"""Which validator guards each allowed callable and each type a stream may set state on.

Every ``call`` entry of the allow-list maps to one validator (a test checks that none is
missing; a missing one refuses, it never falls back to calling the object unchecked). A
``BUILD`` goes to the validator of the target's type: numpy and scikit-learn's Cython types
have their own; Python classes (estimators) get :func:`default_build`, which applies the state
the way the stdlib unpickler does, minus what no real pickle needs, and registers the
end-of-load checks of the estimator kinds that need one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import (
    check_numpy,
    check_plain,
    check_scipy,
    check_sklearn,
    check_sklearn_fitted,
    check_sklearn_tree,
)
from .allowlist import Entry
from .joblib_arrays import build_wrapper

if TYPE_CHECKING:
    from .pickle_load import LoadState, RestrictedUnpickler

CallValidator = Callable[["LoadState", Any, tuple[Any, ...]], Any]
BuildValidator = Callable[["RestrictedUnpickler", Any, Any], Any]


def _missing(target: str) -> CallValidator:
    def refuse(st: LoadState, func: Any, args: tuple[Any, ...]) -> Any:
        raise st.refuse(f"{target} has no argument validator")

    return refuse


#: id(entry) -> (entry, its validator). Keyed by identity (hashing and comparing the
#: dataclass cost more than the call it guards); the entry held in the value stays alive, so
#: no other object can have its id while the row exists. The validator depends only on the
#: entry's fields, so every entry equal to a cached one gets the same validator it would get.
_CALLERS: dict[int, tuple[Entry, CallValidator]] = {}


def call_validator(entry: Entry) -> CallValidator:
    """The argument validator of a call entry (looked up once per entry: a forest or a
    boosting model calls the same few entries thousands of times)."""
    found = _CALLERS.get(id(entry))
    if found is None or found[0] is not entry:
        found = _CALLERS[id(entry)] = (entry, _caller_for(entry))
    return found[1]


def _caller_for(entry: Entry) -> CallValidator:
    target = ":".join(entry.target)
    found = check_plain.CALLS.get(target) or check_numpy.CALLS.get(target)
    if found is None and target.startswith("sklearn."):
        found = check_sklearn_tree.CALLS.get(target) or check_sklearn.call_for(target)
    return found or _missing(target)


_BUILDERS: dict[type, BuildValidator] = {}


def build_validator(t: type) -> BuildValidator:
    found = _BUILDERS.get(t)
    if found is None:
        found = _builder_for(t)
        _BUILDERS[t] = found
    return found


def _builder_for(t: type) -> BuildValidator:
    own = _own_builder_for(t)
    if own is default_build:  # a class of the caller's (trusted) may subclass a checked type
        for base in _library_bases(t):
            found = _own_builder_for(base)
            if found is not default_build:
                return found
    return own


def _library_bases(t: type) -> list[type]:
    """The bases of ``t`` that numpy, scikit-learn or scipy define (a trusted class of the
    caller's that subclasses one gets that class's checks)."""
    return [b for b in t.__mro__[1:] if (b.__module__ or "").startswith(_CHECKED)]


_CHECKED = ("numpy", "sklearn.", "scipy.")


def _own_builder_for(t: type) -> BuildValidator:
    module = t.__module__ or ""
    if module.startswith("numpy"):
        return check_numpy.build_for(t) or _no_state
    if module.startswith("sklearn."):
        found = check_sklearn_tree.build_for(t) or check_sklearn.build_for(t)
        if found is not None:
            return found
    if module == "functools" and t.__name__ == "partial":
        return check_plain.build_partial
    if module == "joblib.numpy_pickle" and t.__name__ == "NumpyArrayWrapper":
        return build_wrapper
    if not hasattr(t, "__dict__") or not (t.__flags__ & (1 << 9)):  # Py_TPFLAGS_HEAPTYPE
        return _no_state  # an extension type without a validator of its own
    return default_build


def _no_state(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    raise reader.state.refuse(
        f"the stream sets the state of a {type(target).__qualname__}, which "
        "modelstore has no validator for"
    )


def default_build(reader: RestrictedUnpickler, target: Any, state: Any) -> Any:
    """Apply ``state`` to an instance of an allowed Python class: through its own
    ``__setstate__`` if it has one, else into its ``__dict__`` (string keys only; the slot
    half of a two-part state is refused, since ``setattr`` would run property setters)."""
    st = reader.state
    if getattr(type(target), "__setstate__", None) is not None:
        target.__setstate__(state)
    else:
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            if slots:
                raise st.refuse(
                    f"a {type(target).__qualname__} state that sets attributes through setattr"
                )
        if state is not None:
            if not isinstance(state, dict) or not all(type(k) is str for k in state):
                raise st.refuse(f"a {type(target).__qualname__} state that is not a dict of names")
            target.__dict__.update(state)
    _register_finals(st, target)
    return target


def _register_finals(st: LoadState, obj: Any) -> None:
    module = type(obj).__module__ or ""
    if not module.startswith(_CHECKED):  # a caller's subclass is checked as its library base
        bases = _library_bases(type(obj))
        module = bases[0].__module__ if bases else module
    checks: list[Any] = []
    if module.startswith("sklearn."):
        checks = check_sklearn_fitted.finals_for(obj)
    elif module.startswith("scipy."):
        checks = check_scipy.finals_for(obj)
    for check in checks:
        st.final(lambda c=check: c(st, obj))

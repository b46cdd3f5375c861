"""Exact-object allow-lists for pickles: every entry names one object and says why.

An entry is ``(module, name)`` exactly as a pickle stream spells a global (``GLOBAL`` /
``STACK_GLOBAL``), never a pattern: ``sklearn.base.np.ctypeslib`` is not ``sklearn.base``
plus something. The restricted unpickler looks the pair up here, imports the module only
from the standard library or an installed package, and fetches ``name`` with one plain
attribute lookup (dotted names only where an entry spells one), so what it hands the stream
is always the listed object.

Each entry also says how a stream may use the object (its *kind*):

``construct``
    a class whose instances a stream creates empty (``NEWOBJ``, ``copyreg.__newobj__``,
    ``copyreg._reconstructor``) and fills with ``BUILD`` — how every scikit-learn estimator
    pickles. The class is never called with arguments.
``call``
    a callable the stream may call (``REDUCE``); each one has a validator in
    :mod:`.validators` that checks the arguments and the result, because every allowed
    callable is an API an attacker may call with anything.
``value``
    an object a stream may only *refer* to (a dtype class stored as an estimator parameter,
    ``numpy.ndarray`` handed to ``_reconstruct``, ``numpy.mean`` as a ``pooling_func``); it is
    never called, instantiated or mutated during a load. Functions listed here are pure
    computations, safe for whatever arguments a model later passes them.

Nothing returned by a lookup is ever a ``BUILD``/``SETITEM``/``APPEND`` target: a load may only
mutate objects the stream itself created (see :mod:`.pickle_load`).

The scikit-learn entries are generated from the installed scikit-learn into
:mod:`.allowlist_sklearn` (``python tools/gen_sklearn_allowlist.py``); a test fails when a
new scikit-learn adds an estimator the list lacks.
"""

from __future__ import annotations

from .allowlist_attack import ATTACK_MODULES, is_attack
from .allowlist_base import CALL, CONSTRUCT, VALUE, Entry, group
from .allowlist_torch import DTYPE_SIZES, TORCH, TORCH_STORAGE_DTYPES, TORCH_WEIGHTS

__all__ = [
    "ATTACK_MODULES",
    "CALL",
    "CONSTRUCT",
    "DTYPE_SIZES",
    "Entry",
    "JOBLIB",
    "NUMPY",
    "PLAIN",
    "SCIPY",
    "TORCH",
    "TORCH_STORAGE_DTYPES",
    "TORCH_WEIGHTS",
    "VALUE",
    "group",
    "is_attack",
]


# -- plain Python data ------------------------------------------------------------------------

PLAIN: list[Entry] = [
    *group(
        CALL,
        "builds a builtin container or scalar from arguments the validator bounds "
        "(no iterators, no sizes larger than the stream itself)",
        "builtins",
        "set frozenset complex bytearray bytes slice range dict list tuple int float bool str object",
    ),
    Entry(
        "_codecs",
        "encode",
        CALL,
        "protocol 2 spells bytes as encode(text, 'latin1'); only "
        "text codecs are allowed, so no decompression or other codec runs",
    ),
    *group(
        CALL,
        "rebuilds a standard container from its items",
        "collections",
        "OrderedDict defaultdict deque Counter",
    ),
    *group(
        CALL,
        "rebuilds a date or time from its packed fields (C code validates them)",
        "datetime",
        "datetime date time timedelta timezone",
    ),
    Entry(
        "decimal",
        "Decimal",
        CALL,
        "parses a number from text; the validator bounds the text's length and exponent",
    ),
    Entry(
        "fractions",
        "Fraction",
        CALL,
        "parses a ratio from text; the validator bounds the "
        "digits (Fraction('1e999999999') would compute 10**999999999)",
    ),
    Entry("uuid", "UUID", CONSTRUCT, "an immutable 128-bit value set from an int"),
    Entry(
        "functools",
        "partial",
        CALL,
        "a partial application of an allowed *value* function "
        "(HistGradientBoosting's preprocessor holds partial(check_array, ...)); never of a class, "
        "a callable entry or anything the stream built",
    ),
    Entry(
        "copyreg",
        "_reconstructor",
        CALL,
        "protocol 0/1 form of 'create an empty instance "
        "of an allowed class'; the validator requires an allowed construct class",
    ),
    Entry(
        "copyreg",
        "__newobj__",
        CALL,
        "protocol 2+ form of 'create an empty instance of an "
        "allowed class'; the validator requires an allowed construct class",
    ),
    Entry("copyreg", "__newobj_ex__", CALL, "as __newobj__, with keyword arguments"),
]

# -- numpy ------------------------------------------------------------------------------------

_CORE = ("numpy._core", "numpy.core")  # numpy 2 home, and the numpy 1.x spelling of it

NUMPY: list[Entry] = [
    *[
        e
        for core in _CORE
        for e in group(
            CALL,
            "rebuilds an array (validated: exact shape, dtype and data length; object arrays "
            "only from a list of items, never from raw bytes)",
            f"{core}.multiarray",
            "_reconstruct scalar",
            home="numpy._core.multiarray" if core == "numpy.core" else None,
        )
    ],
    *[
        e
        for core in _CORE
        for e in group(
            CALL,
            "protocol 5 array from a buffer: non-object dtypes only, length checked",
            f"{core}.numeric",
            "_frombuffer",
            home="numpy._core.numeric" if core == "numpy.core" else None,
        )
    ],
    Entry(
        "numpy",
        "dtype",
        CALL,
        "a fresh dtype from a type code (never the interned one); "
        "its BUILD state is checked against what numpy's own constructor makes of it",
    ),
    Entry("numpy.ma.core", "_mareconstruct", CALL, "rebuilds an empty masked array"),
    *group(
        CALL,
        "rebuilds a random generator by name; the state set later is validated "
        "(positions within the key, sizes of every buffer)",
        "numpy.random._pickle",
        "__randomstate_ctor __generator_ctor __bit_generator_ctor",
    ),
    Entry(
        "numpy.random.bit_generator",
        "__pyx_unpickle_SeedSequence",
        CALL,
        "rebuilds a SeedSequence; pool and sizes are validated",
    ),
    Entry("numpy", "ndarray", VALUE, "the array class, passed to _reconstruct"),
    Entry("numpy", "matrix", VALUE, "the matrix class, passed to _reconstruct"),
    Entry("numpy.ma", "MaskedArray", VALUE, "the masked array class, passed to _mareconstruct"),
    Entry(
        "numpy.ma.core", "MaskedArray", VALUE, "the masked array class, passed to _mareconstruct"
    ),
    *group(
        VALUE,
        "a random bit generator class, passed to __bit_generator_ctor",
        "numpy.random._mt19937",
        "MT19937",
    ),
    *group(
        VALUE,
        "a random bit generator class, passed to __bit_generator_ctor",
        "numpy.random._pcg64",
        "PCG64 PCG64DXSM",
    ),
    *group(
        VALUE,
        "a random bit generator class, passed to __bit_generator_ctor",
        "numpy.random._philox",
        "Philox",
    ),
    *group(
        VALUE,
        "a random bit generator class, passed to __bit_generator_ctor",
        "numpy.random._sfc64",
        "SFC64",
    ),
    Entry("numpy.random.bit_generator", "SeedSequence", VALUE, "passed to its unpickle helper"),
    Entry("numpy.random.mtrand", "RandomState", VALUE, "a parameter value (a class)"),
    Entry("numpy.random._generator", "Generator", VALUE, "a parameter value (a class)"),
    *group(
        VALUE,
        "a scalar type stored as a parameter (dtype=numpy.float64)",
        "numpy",
        "float16 float32 float64 longdouble int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
        "intp uintp bool_ bool complex64 complex128 str_ bytes_ object_ datetime64 timedelta64 "
        "number integer floating generic",
    ),
    *group(
        VALUE,
        "an element-wise math function stored as a parameter (FunctionTransformer, "
        "pooling functions): pure, called later on the model's inputs",
        "numpy",
        "log log1p log2 log10 exp expm1 exp2 sqrt cbrt square abs absolute negative sign "
        "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh floor ceil "
        "rint trunc reciprocal clip mean median sum prod max min amax amin std var "
        "nanmean nanmedian nansum nanmax nanmin average",
    ),
]

JOBLIB: list[Entry] = [
    Entry(
        "joblib.numpy_pickle",
        "NumpyArrayWrapper",
        CONSTRUCT,
        "joblib's marker for an array "
        "whose bytes follow in the file; modelstore reads those bytes itself (bounded, "
        "object arrays through the same restricted unpickler)",
    ),
]

# -- scipy ------------------------------------------------------------------------------------

_SPARSE_KINDS = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")
SCIPY: list[Entry] = [
    *[
        e
        for kind in _SPARSE_KINDS
        for mod in (f"scipy.sparse._{kind}", f"scipy.sparse.{kind}")
        for e in group(
            CONSTRUCT,
            "a sparse matrix; its index arrays are checked against its "
            "shape after loading (C code trusts them)",
            mod,
            f"{kind}_matrix {kind}_array",
            home=None if mod.startswith("scipy.sparse._") else f"scipy.sparse._{kind}",
        )
    ],
    Entry(
        "scipy.interpolate._bsplines",
        "BSpline",
        CONSTRUCT,
        "a spline (SplineTransformer); "
        "knots, coefficients and degree are checked for consistency after loading",
    ),
    Entry(
        "scipy._lib.array_api_compat.numpy._aliases",
        "asarray",
        VALUE,
        "numpy.asarray as stored by array-API-aware estimators",
    ),
]

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

from dataclasses import dataclass

CONSTRUCT, CALL, VALUE = "construct", "call", "value"


@dataclass(frozen=True)
class Entry:
    """One allowed object: where a stream finds it, how it may use it, and why it is safe."""

    module: str
    name: str
    kind: str
    reason: str
    #: ``"module:qualname"`` of the object when the stream's spelling is an alias (numpy 1.x's
    #: ``numpy.core`` for numpy 2's ``numpy._core``); empty when the spelling is the home.
    home: str = ""

    @property
    def key(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def target(self) -> tuple[str, str]:
        if self.home:
            module, _, qual = self.home.partition(":")
            return module, qual
        return self.module, self.name


def group(kind: str, reason: str, module: str, names: str, home: str | None = None) -> list[Entry]:
    """Entries for several names of one module sharing a reason (``home``: their real module)."""
    return [Entry(module, n, kind, reason, f"{home}:{n}" if home else "") for n in names.split()]


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


# -- torch weights (scanned here, loaded by torch's own weights_only unpickler) ----------------

_TORCH_DTYPES = [
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "complex32",
    "complex64",
    "complex128",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
]

_TORCH_STORAGES = [
    "Float",
    "Double",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexFloat",
    "ComplexDouble",
    "QInt8",
    "QUInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
]

#: What ``torch.save(state_dict)`` / a training checkpoint may reference: tensor and storage
#: reconstruction, dtypes, devices, plain containers. Mirrors torch's own ``weights_only``
#: allow-list (which torch enforces while loading), minus rarely used exotica.
TORCH: list[Entry] = [
    *group(
        CALL,
        "a plain container torch's weights_only unpickler rebuilds",
        "collections",
        "OrderedDict Counter",
    ),
    *group(
        CALL,
        "a plain value torch's weights_only unpickler rebuilds",
        "builtins",
        "set frozenset bytearray complex slice",
    ),
    Entry("_codecs", "encode", CALL, "protocol 2's spelling of bytes (torch checks the codec too)"),
    *group(
        CALL,
        "rebuilds a tensor from a storage record (torch validates sizes)",
        "torch._utils",
        "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
        "_rebuild_parameter_with_state _rebuild_sparse_tensor _rebuild_qtensor "
        "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor "
        "_rebuild_meta_tensor_no_storage _rebuild_wrapper_subclass",
    ),
    Entry(
        "torch._tensor", "_rebuild_from_type_v2", CALL, "rebuilds a tensor subclass torch allows"
    ),
    *group(
        CALL, "tensor and parameter classes torch's unpickler allows", "torch", "Tensor Size device"
    ),
    Entry("torch.nn.parameter", "Parameter", CALL, "a parameter around a tensor"),
    Entry("torch.serialization", "_get_layout", CALL, "looks up a layout by name"),
    *group(
        VALUE,
        "a quantization scheme named by a quantized tensor record",
        "torch",
        "per_tensor_affine per_channel_affine "
        "per_tensor_symmetric per_channel_symmetric per_channel_affine_float_qparams",
    ),
    *group(VALUE, "a dtype named by a tensor record", "torch", " ".join(_TORCH_DTYPES)),
    *group(
        VALUE,
        "a storage type named by a tensor record",
        "torch",
        " ".join(f"{s}Storage" for s in _TORCH_STORAGES),
    ),
    *group(
        VALUE,
        "a storage type named by a tensor record",
        "torch.cuda",
        " ".join(f"{s}Storage" for s in _TORCH_STORAGES[:12]),
    ),
    *group(
        VALUE,
        "a storage class named by a tensor record",
        "torch.storage",
        "TypedStorage UntypedStorage",
    ),
]

#: Qualnames of the torch allow-list, for the static scan of ``.pt`` files.
TORCH_WEIGHTS: frozenset[str] = frozenset(e.key for e in TORCH)

#: Storage class name -> dtype name, for reading tensor records without torch.
TORCH_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
}

DTYPE_SIZES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "complex64": 8,
    "complex128": 16,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1,
    "qint8": 1,
    "quint8": 1,
    "qint32": 4,
}


# -- what a refusal should call an attack ------------------------------------------------------

#: Modules whose every object is a code-execution, file, process, network or import primitive.
#: A stream naming one of these is an attack payload, not a model: the refusal says so and
#: offers no ``trust=[...]`` recipe.
ATTACK_MODULES: frozenset[str] = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "ctypes",
        "_ctypes",
        "importlib",
        "pkgutil",
        "pydoc",
        "runpy",
        "marshal",
        "pickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "code",
        "codeop",
        "socket",
        "shutil",
        "pty",
        "webbrowser",
        "multiprocessing",
        "threading",
        "_thread",
        "asyncio",
        "signal",
        "sys",
        "platform",
        "commands",
        "popen2",
        "timeit",
        "types",
        "operator",
        "functools",
        "inspect",
        "io",
        "_io",
        "pathlib",
        "tempfile",
        "logging",
        "http",
        "urllib",
        "requests",
        "ftplib",
        "smtplib",
        "telnetlib",
        "sqlite3",
        "zipimport",
        "gc",
        "weakref",
        "builtins",
        "__builtin__",
        "torch.serialization",
        "joblib.numpy_pickle_utils",
    ]
)

#: Builtins that are not attack primitives (plain data constructors).
_HARMLESS_BUILTINS = frozenset(
    [
        "set",
        "frozenset",
        "complex",
        "bytearray",
        "bytes",
        "slice",
        "range",
        "dict",
        "list",
        "tuple",
        "int",
        "float",
        "bool",
        "str",
        "object",
    ]
)
#: Packages and modules whose objects read or write files, download, run or load code.
_ATTACK_PACKAGES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "ctypes",
    "importlib",
    "multiprocessing",
    "socket",
    "asyncio",
    "http",
    "urllib",
    "sklearn.datasets",
    "sklearn.utils._testing",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.testing",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "scipy.io",
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.utils.data",
    "torch.jit",
    "torch.package",
    "joblib",
    "keras.utils",
    "tensorflow.io",
)
#: File and code loaders exported at a package's top level.
_ATTACK_NAMES = frozenset(
    f"numpy.{n}"
    for n in [
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "load",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "fromregex",
        "memmap",
        "DataSource",
    ]
) | frozenset({"torch.load", "torch.save", "torch.from_file"})


def is_attack(module: str, name: str) -> bool:
    """Whether a global a stream names is a known code-execution / file / import primitive,
    or a dotted path through a module's attributes (the classic allow-list bypass: ``np`` in
    ``sklearn.base`` leads to ``ctypes``)."""
    if "." in name:
        return True
    if module in ("builtins", "__builtin__"):
        return name not in _HARMLESS_BUILTINS
    if module == "torch.serialization":
        return name != "_get_layout"
    if module == "joblib.numpy_pickle" and name == "NumpyArrayWrapper":
        return False  # a data marker modelstore reads itself
    if f"{module}.{name}" in _ATTACK_NAMES:
        return True
    return module in ATTACK_MODULES or any(
        module == p or module.startswith(p + ".") for p in _ATTACK_PACKAGES
    )

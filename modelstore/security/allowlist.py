"""Static allow-lists of pickle globals, as ``"module.Name"`` strings.

These are data, never computed at import time. Anything not listed here (or in the
caller's ``trust=[...]``) is refused before a byte of the file is unpickled.
"""

from __future__ import annotations

_TORCH_DTYPES = (
    "float16 float32 float64 bfloat16 complex32 complex64 complex128 bool "
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
    "float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu "
    "qint8 quint8 qint32 quint4x2 quint2x4"
).split()

_TORCH_STORAGES = (
    "Float Double Half BFloat16 Long Int Short Char Byte Bool ComplexFloat ComplexDouble "
    "QInt8 QUInt8 QInt32 QUInt4x2 QUInt2x4"
).split()

#: What ``torch.save(state_dict)`` / a training checkpoint may reference: tensor and
#: storage reconstruction, dtypes, devices, and plain containers. Mirrors the default
#: allow-list of torch's own ``weights_only`` unpickler, minus rarely used exotica.
TORCH_WEIGHTS: frozenset[str] = frozenset(
    [
        "collections.OrderedDict",
        "collections.Counter",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.complex",
        "builtins.slice",
        "_codecs.encode",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._utils._rebuild_device_tensor_from_cpu_tensor",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_wrapper_subclass",
        "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter",
        "torch.Tensor",
        "torch.Size",
        "torch.device",
        "torch.serialization._get_layout",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        "torch.per_tensor_affine",
        "torch.per_channel_affine",
        "torch.per_tensor_symmetric",
        "torch.per_channel_symmetric",
        "torch.per_channel_affine_float_qparams",
    ]
    + [f"torch.{d}" for d in _TORCH_DTYPES]
    + [f"torch.{s}Storage" for s in _TORCH_STORAGES]
    + [f"torch.cuda.{s}Storage" for s in _TORCH_STORAGES[:12]]
)

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
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "uint16": 2, "uint32": 4, "uint64": 8,
    "complex64": 8, "complex128": 16,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "qint8": 1, "quint8": 1, "qint32": 4,
}


# -- general pickles (scikit-learn, joblib, numpy) ------------------------------------------

#: Builtins and stdlib pieces that only rebuild plain data.
PLAIN_DATA: frozenset[str] = frozenset(
    [
        "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.bytearray",
        "builtins.bytes", "builtins.slice", "builtins.range", "builtins.dict", "builtins.list",
        "builtins.tuple", "builtins.int", "builtins.float", "builtins.bool", "builtins.str",
        "builtins.object",
        "_codecs.encode",
        "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
        "collections.OrderedDict", "collections.defaultdict", "collections.deque",
        "collections.Counter",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
        "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    ]
)

#: numpy array, dtype, scalar and random-state reconstruction (numpy 1.x and 2.x homes).
NUMPY: frozenset[str] = frozenset(
    [
        f"{core}.{name}"
        for core in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ]
    + [f"{core}._frombuffer" for core in ("numpy.core.numeric", "numpy._core.numeric")]
    + [
        "numpy.ndarray", "numpy.dtype", "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
        "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor", "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator", "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64", "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    ]
    + [f"numpy.{t}" for t in (
        "float16 float32 float64 longdouble int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
        "bool_ complex64 complex128 str_ bytes_ datetime64 timedelta64").split()]
    # element-wise math ufuncs (e.g. in FunctionTransformer): pure functions of their input
    + [f"numpy.{u}" for u in (
        "log log1p log2 log10 exp expm1 exp2 sqrt cbrt square abs absolute negative sign "
        "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh floor ceil "
        "rint trunc reciprocal clip").split()]
)

JOBLIB: frozenset[str] = frozenset({"joblib.numpy_pickle.NumpyArrayWrapper"})

_SPARSE = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")
SCIPY: frozenset[str] = frozenset(
    f"scipy.sparse.{mod}.{kind}_{suffix}"
    for kind in _SPARSE
    for mod in (f"_{kind}", kind)
    for suffix in ("matrix", "array")
)

#: scikit-learn classes are allowed by module, except these modules, which hold functions and
#: classes that touch files, the network or the import system.
SKLEARN_DENIED_MODULES: tuple[str, ...] = (
    "sklearn.datasets", "sklearn.externals", "sklearn.experimental", "sklearn.utils._testing",
    "sklearn.utils._show_versions", "sklearn.utils.discovery", "sklearn.utils.parallel",
    "sklearn.utils._joblib", "sklearn.utils.fixes", "sklearn.tests", "sklearn.conftest",
    "sklearn._build_utils", "sklearn.__check_build",
)
#: The few scikit-learn *functions* its own pickles call (tree structures rebuild through them).
SKLEARN_FUNCTIONS: frozenset[str] = frozenset(
    f"sklearn.{m}.newObj" for m in (
        "neighbors._kd_tree", "neighbors._ball_tree", "neighbors._binary_tree", "metrics._dist_metrics")
)

GENERAL: frozenset[str] = PLAIN_DATA | NUMPY | JOBLIB | SCIPY | SKLEARN_FUNCTIONS


def pickle_allowed(qualname: str) -> bool:
    """Whether a general pickle (scikit-learn / joblib / numpy) may reference ``qualname``.

    scikit-learn is allowed by module for *classes* (names starting with a capital), since
    unpickling a class only creates an instance and sets its state; functions are not, apart
    from the listed tree-rebuilding helpers.
    """
    if qualname in GENERAL:
        return True
    module, _, name = qualname.rpartition(".")
    if module == "sklearn" or module.startswith("sklearn."):
        if any(module == d or module.startswith(d + ".") for d in SKLEARN_DENIED_MODULES):
            return False
        return name[:1].isupper() and name.isidentifier()
    return False

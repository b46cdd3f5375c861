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

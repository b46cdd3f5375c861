"""The torch allow-list: what ``torch.save`` of weights and checkpoints may reference.

Read by the static scan of ``.pt`` files and by the one-pass loader
(the pickle scan of `.pt` archives); entries and
their kinds follow :mod:`.allowlist`'s rules. Also the tables that size tensor records
without torch.
"""

from __future__ import annotations

from .allowlist_base import CALL, VALUE, Entry, group

# -- torch weights (scanned, and read by the one-pass loader or torch's weights_only) ---------

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

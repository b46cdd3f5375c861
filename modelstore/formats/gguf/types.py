"""The GGUF type tables: metadata value types and tensor (ggml) types with their block sizes.

Written out here rather than imported from the ``gguf`` package, so reading a file needs
nothing but the standard library (and numpy to load tensors). The values are those of
llama.cpp's ``ggml.h`` / ``gguf.h`` (and the ``gguf`` package's ``constants.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"GGUF"
#: Versions this reader understands: 2 and 3 (64-bit counts; v3 only adds big-endian files,
#: which this reader refuses). Version 1 (32-bit counts) predates August 2023.
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# metadata value types (gguf_type): code -> (name, struct format or None, size in bytes)
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12

#: Fixed-size value types: code -> (name, ``array``/``struct`` type code, bytes).
SCALARS: dict[int, tuple[str, str, int]] = {
    UINT8: ("uint8", "B", 1),
    INT8: ("int8", "b", 1),
    UINT16: ("uint16", "H", 2),
    INT16: ("int16", "h", 2),
    UINT32: ("uint32", "I", 4),
    INT32: ("int32", "i", 4),
    FLOAT32: ("float32", "f", 4),
    BOOL: ("bool", "B", 1),
    UINT64: ("uint64", "Q", 8),
    INT64: ("int64", "q", 8),
    FLOAT64: ("float64", "d", 8),
}
VALUE_NAMES = {**{code: v[0] for code, v in SCALARS.items()}, STRING: "string", ARRAY: "array"}


@dataclass(frozen=True)
class TensorType:
    """A ggml tensor type: its name, how many elements one block holds and how many bytes
    a block takes (1 and the element size for plain types), and the numpy dtype a plain
    type loads as (None for block-quantized types)."""

    code: int
    name: str
    block: int
    block_bytes: int
    numpy: str | None

    @property
    def quantized(self) -> bool:
        return self.numpy is None


_QK_K = 256
_TYPES = (
    TensorType(0, "F32", 1, 4, "<f4"),
    TensorType(1, "F16", 1, 2, "<f2"),
    TensorType(2, "Q4_0", 32, 2 + 16, None),
    TensorType(3, "Q4_1", 32, 2 + 2 + 16, None),
    TensorType(6, "Q5_0", 32, 2 + 4 + 16, None),
    TensorType(7, "Q5_1", 32, 2 + 2 + 4 + 16, None),
    TensorType(8, "Q8_0", 32, 2 + 32, None),
    TensorType(9, "Q8_1", 32, 4 + 4 + 32, None),
    TensorType(10, "Q2_K", 256, 2 + 2 + _QK_K // 16 + _QK_K // 4, None),
    TensorType(11, "Q3_K", 256, 2 + _QK_K // 4 + _QK_K // 8 + 12, None),
    TensorType(12, "Q4_K", 256, 2 + 2 + _QK_K // 2 + 12, None),
    TensorType(13, "Q5_K", 256, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12, None),
    TensorType(14, "Q6_K", 256, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16, None),
    TensorType(15, "Q8_K", 256, 4 + _QK_K + _QK_K // 8, None),
    TensorType(16, "IQ2_XXS", 256, 2 + _QK_K // 4, None),
    TensorType(17, "IQ2_XS", 256, 2 + _QK_K // 4 + _QK_K // 32, None),
    TensorType(18, "IQ3_XXS", 256, 2 + _QK_K // 4 + _QK_K // 8, None),
    TensorType(19, "IQ1_S", 256, 2 + _QK_K // 8 + _QK_K // 16, None),
    TensorType(20, "IQ4_NL", 32, 2 + 16, None),
    TensorType(21, "IQ3_S", 256, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4, None),
    TensorType(22, "IQ2_S", 256, 2 + _QK_K // 4 + _QK_K // 16, None),
    TensorType(23, "IQ4_XS", 256, 2 + 2 + _QK_K // 2 + _QK_K // 64, None),
    TensorType(24, "I8", 1, 1, "<i1"),
    TensorType(25, "I16", 1, 2, "<i2"),
    TensorType(26, "I32", 1, 4, "<i4"),
    TensorType(27, "I64", 1, 8, "<i8"),
    TensorType(28, "F64", 1, 8, "<f8"),
    TensorType(29, "IQ1_M", 256, _QK_K // 8 + _QK_K // 16 + _QK_K // 32, None),
    # bfloat16 has no numpy dtype: read as its 16 raw bits, widened to float32 on load
    TensorType(30, "BF16", 1, 2, "<u2"),
    TensorType(34, "TQ1_0", 256, 2 + 4 * 13, None),
    TensorType(35, "TQ2_0", 256, 2 + 64, None),
    TensorType(39, "MXFP4", 32, 1 + 16, None),
    TensorType(40, "NVFP4", 64, 4 + 32, None),
    TensorType(41, "Q1_0", 128, 2 + 16, None),
)
TENSOR_TYPES: dict[int, TensorType] = {t.code: t for t in _TYPES}

#: The dtype ``inspect`` reports for plain types (quantized ones keep their ggml name).
DTYPE_NAMES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}

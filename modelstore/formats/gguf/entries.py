"""What a checked GGUF header holds: metadata values, tensor entries, the header itself,
and the error the reader raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import ARRAY, STRING, VALUE_NAMES, TensorType


class GGUFFileError(ValueError):
    """A GGUF header this reader refuses; ``kind`` is "damaged", "format" or "suspicious"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array: its element type and values (an ``array.array`` for numbers and
    booleans, a list of str or of :class:`GGUFArray` for strings and nested arrays)."""

    item_type: int
    values: Any

    def __len__(self) -> int:
        return len(self.values)

    def tolist(self) -> list[Any]:
        """Plain Python values (nested arrays as nested lists, booleans as bool)."""
        if self.item_type == ARRAY:
            return [v.tolist() for v in self.values]
        if self.item_type == STRING:
            return list(self.values)
        out = self.values.tolist()
        return [bool(v) for v in out] if VALUE_NAMES[self.item_type] == "bool" else out


Value = int | float | bool | str | GGUFArray


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's entry: ``dims`` as stored (GGUF/ggml order, fastest-varying first),
    its ggml type, its data offset (relative to the data section) and size in bytes."""

    name: str
    dims: tuple[int, ...]
    type: TensorType
    offset: int
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy (row-major) shape: ``dims`` reversed."""
        return tuple(reversed(self.dims))

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape of the raw bytes of a quantized tensor (rows of whole blocks), or
        :attr:`shape` for a plain one."""
        if not self.type.quantized:
            return self.shape
        shape = self.shape or (1,)
        return (*shape[:-1], shape[-1] // self.type.block * self.type.block_bytes)


@dataclass(frozen=True)
class Header:
    """A validated GGUF header: everything needed to read any tensor without more checks."""

    version: int
    metadata: dict[str, Value]
    value_types: dict[str, int]
    tensors: list[TensorEntry]
    alignment: int
    data_start: int
    file_size: int
    header_bytes: int = field(default=0)

    def value(self, key: str) -> Any:
        """A metadata value as plain Python (arrays as lists), or None."""
        v = self.metadata.get(key)
        return v.tolist() if isinstance(v, GGUFArray) else v

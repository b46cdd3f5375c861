"""A checked reader of GGUF headers: pure Python, every count, size and offset checked.

GGUF is llama.cpp's file format: ``GGUF``, a version, a tensor count and a metadata count,
the metadata (typed key/value pairs, arrays of arrays included), one entry per tensor
(name, dimensions, ggml type, offset), padding to ``general.alignment``, then the data.
Every field is attacker-controlled, and parsers of this format have had integer overflows
and out-of-bounds reads, so this one:

- reads the header with plain ``read`` calls (no ``mmap``, nothing indexed by a number
  from the file before it is checked) and never reads past the end of the file;
- checks every count against a cap and against the bytes left in the file *before*
  allocating anything for it, so a tiny file cannot ask for a huge allocation;
- caps string lengths, array lengths, nesting depth, the number of keys and tensors,
  the total number of strings and arrays, and the header's size;
- checks ``general.alignment`` (a ``uint32``, a power of two, at most 1 MiB), every
  dimension (at most 4, each in 0..2**63-1, their product bounded), that a quantized row
  is a whole number of blocks, every tensor's offset (aligned, data inside the file) and
  that no two tensors' data overlap; keys and tensor names are unique UTF-8.

Violations raise :class:`GGUFFileError` with a ``kind``: ``"damaged"`` (the file ends
before what its header declares: truncated), ``"format"`` (not a GGUF this reader knows)
or ``"suspicious"`` (impossible or oversized values: damaged or crafted). The backend
turns these into IntegrityError / FormatError naming the file.
"""

from __future__ import annotations

import array
import itertools
import struct
import sys
from typing import BinaryIO

from .entries import GGUFArray, GGUFFileError, Header, TensorEntry, Value
from .types import (
    DEFAULT_ALIGNMENT,
    MAGIC,
    SCALARS,
    STRING,
    TENSOR_TYPES,
    UINT32,
    VALUE_NAMES,
    VERSIONS,
)

MAX_HEADER_BYTES = 256 << 20  # real headers (a 256k-token vocabulary and its merges) are ~20 MB
MAX_KEY_BYTES = 65535  # the GGUF spec's limit for keys; used for tensor names too
MAX_STRING_BYTES = 16 << 20  # chat templates are kilobytes
MAX_ARRAY_ITEMS = 1 << 22  # vocabularies are a few 100k tokens
MAX_NESTING = 4  # arrays of arrays: real files nest at most twice
MAX_KEYS = 1 << 16  # real files carry tens of keys
MAX_TENSORS = 1 << 20  # large mixture-of-experts models have thousands
MAX_STRINGS = 1 << 22  # in all of the metadata: a vocabulary and its merges are ~500k
MAX_ARRAYS = 1 << 16  # in all of the metadata (a nested array is one per item)
MAX_ALIGNMENT = 1 << 20
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = (1 << 63) - 1  # ggml counts elements and bytes in int64

_NATIVE_LITTLE = sys.byteorder == "little"


def is_gguf(head: bytes) -> bool:
    return head[:4] == MAGIC


def parse(f: BinaryIO, size: int) -> Header:
    """Read and check the header of the GGUF file ``f`` (``size`` bytes, read from 0)."""
    f.seek(0)
    return _Parser(f, size).header()


class _Parser:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.size = size
        self.pos = 0
        self.strings = 0
        self.arrays = 0

    # -- bytes ----------------------------------------------------------------------------
    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise GGUFFileError(
                "damaged",
                f"{what} needs {n:,} bytes at offset {self.pos:,} but the file ends at "
                f"{self.size:,}: it is truncated or damaged",
            )
        if self.pos + n > MAX_HEADER_BYTES:
            raise GGUFFileError(
                "suspicious",
                f"the header is larger than {MAX_HEADER_BYTES >> 20} MiB at {what}: it is "
                f"damaged or crafted",
            )
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFFileError("damaged", f"the file ended while reading {what}")
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def u64(self, what: str) -> int:
        value: int = struct.unpack("<Q", self.take(8, what))[0]
        return value

    def count(self, n: int, least: int, cap: int, what: str) -> int:
        """``n`` items of at least ``least`` bytes each: refused above ``cap``, or when the
        rest of the file cannot hold them (before anything is allocated for them)."""
        if n > cap:
            raise GGUFFileError(
                "suspicious", f"{what} is {n:,}, more than the {cap:,} this reader accepts"
            )
        if n * least > self.size - self.pos:
            raise GGUFFileError(
                "damaged",
                f"{what} is {n:,}, which needs at least {n * least:,} bytes, but only "
                f"{self.size - self.pos:,} remain: the file is truncated or damaged",
            )
        return n

    def string(self, what: str, cap: int = MAX_STRING_BYTES, strict: bool = False) -> str:
        n = self.u64(f"the length of {what}")
        if n > cap:
            raise GGUFFileError(
                "suspicious",
                f"{what} declares {n:,} bytes, more than the {cap:,} this reader accepts",
            )
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8", "strict" if strict else "surrogateescape")
        except UnicodeDecodeError:
            shown = raw[:60].decode("utf-8", "backslashreplace")
            raise GGUFFileError("format", f"{what} is not UTF-8 ({shown!r})") from None

    def budget(self, strings: int, arrays: int, what: str) -> None:
        """Count the Python objects the metadata makes (each costs far more memory than the
        bytes that declare it): refused past the caps, before they are made."""
        self.strings += strings
        self.arrays += arrays
        if self.strings > MAX_STRINGS or self.arrays > MAX_ARRAYS:
            raise GGUFFileError(
                "suspicious",
                f"the metadata holds more than {MAX_STRINGS:,} strings or {MAX_ARRAYS:,} arrays "
                f"(at {what})",
            )

    # -- values ---------------------------------------------------------------------------
    def value_type(self, what: str) -> int:
        code = self.u32(f"the type of {what}")
        if code not in VALUE_NAMES:
            raise GGUFFileError(
                "format",
                f"{what} has the unknown value type {code} (GGUF knows 0-12): the file is "
                f"damaged, or from a newer GGUF version",
            )
        return code

    def value(self, code: int, what: str, depth: int) -> Value:
        if code in SCALARS:
            name, fmt, width = SCALARS[code]
            (v,) = struct.unpack("<" + fmt, self.take(width, what))
            return bool(v) if name == "bool" else v
        if code == STRING:
            self.budget(1, 0, what)
            return self.string(what)
        return self.array(what, depth + 1)

    def array(self, what: str, depth: int) -> GGUFArray:
        if depth > MAX_NESTING:
            raise GGUFFileError("suspicious", f"{what} nests arrays more than {MAX_NESTING} deep")
        self.budget(0, 1, what)
        item = self.value_type(f"the items of {what}")
        least = SCALARS[item][2] if item in SCALARS else (8 if item == STRING else 12)
        n = self.count(
            self.u64(f"the length of {what}"), least, MAX_ARRAY_ITEMS, f"the length of {what}"
        )
        if item in SCALARS:
            values = array.array(SCALARS[item][1])
            values.frombytes(self.take(n * least, what))
            if not _NATIVE_LITTLE:
                values.byteswap()
            return GGUFArray(item, values)
        if item == STRING:
            self.budget(n, 0, what)
            return GGUFArray(item, [self.string(f"{what}[{i}]") for i in range(n)])
        self.budget(0, n, what)  # refuse too many nested arrays before reading any of them;
        self.arrays -= n  # each counts itself as it is read
        return GGUFArray(item, [self.array(f"{what}[{i}]", depth + 1) for i in range(n)])

    # -- the header -----------------------------------------------------------------------
    def header(self) -> Header:
        magic = self.take(4, "the magic bytes") if self.size >= 4 else b""
        if magic != MAGIC:
            if self.size < 4:
                raise GGUFFileError("damaged", f"the file has {self.size} bytes: it is truncated")
            raise GGUFFileError(
                "format", f"the file starts with {magic!r}, not GGUF's magic b'GGUF'"
            )
        version = self._version(self.u32("the version"))
        n_tensors = self.count(self.u64("the tensor count"), 24, MAX_TENSORS, "the tensor count")
        n_keys = self.count(self.u64("the metadata count"), 13, MAX_KEYS, "the metadata count")
        metadata: dict[str, Value] = {}
        types: dict[str, int] = {}
        for i in range(n_keys):
            key = self.string(f"metadata key #{i}", MAX_KEY_BYTES, strict=True)
            if key in metadata:
                raise GGUFFileError("format", f"the metadata key {named(key)} appears twice")
            types[key] = self.value_type(f"metadata {named(key)}")
            metadata[key] = self.value(types[key], f"metadata {named(key)}", 0)
        alignment = _alignment(metadata, types)
        entries = [self._tensor(i, alignment) for i in range(n_tensors)]
        header_end = self.pos
        data_start = -(-header_end // alignment) * alignment
        _check_layout(entries, data_start, self.size)
        return Header(
            version, metadata, types, entries, alignment, data_start, self.size, header_end
        )

    def _version(self, version: int) -> int:
        if version in VERSIONS:
            return version
        if int.from_bytes(version.to_bytes(4, "little"), "big") in (1, 2, 3):
            raise GGUFFileError(
                "format",
                "this is a big-endian GGUF file, which this reader does not read; convert it "
                "with the gguf package's gguf-convert-endian script",
            )
        if version == 1:
            raise GGUFFileError(
                "format",
                "this is a GGUF version 1 file (before August 2023), which this reader does not "
                "read; convert it to version 3 with llama.cpp's conversion scripts",
            )
        raise GGUFFileError(
            "format",
            f"unknown GGUF version {version} (this reader knows {' and '.join(map(str, VERSIONS))})",
        )

    def _tensor(self, i: int, alignment: int) -> TensorEntry:
        name = self.string(f"the name of tensor #{i}", MAX_KEY_BYTES, strict=True)
        what = f"tensor {named(name)}"
        n_dims = self.u32(f"the number of dimensions of {what}")
        if n_dims > MAX_DIMS:
            raise GGUFFileError(
                "suspicious", f"{what} has {n_dims} dimensions (ggml has at most {MAX_DIMS})"
            )
        dims = tuple(self.u64(f"dimension {j} of {what}") for j in range(n_dims))
        numel = 1
        for d in dims:
            if d > MAX_ELEMENTS:
                raise GGUFFileError(
                    "suspicious", f"{what} has the negative dimension {d - (1 << 64)}"
                )
            numel *= d
            if numel > MAX_ELEMENTS:
                raise GGUFFileError(
                    "suspicious", f"the dimensions {list(dims)} of {what} overflow a 64-bit count"
                )
        code = self.u32(f"the type of {what}")
        kind = TENSOR_TYPES.get(code)
        if kind is None:
            raise GGUFFileError(
                "format",
                f"{what} has the unknown ggml type {code}: the file is damaged, or uses a type "
                f"newer than this reader",
            )
        if kind.block > 1 and (dims[0] if dims else 1) % kind.block:
            raise GGUFFileError(
                "format",
                f"{what} is {kind.name} (blocks of {kind.block}) but its rows hold "
                f"{dims[0] if dims else 1} values, not a whole number of blocks",
            )
        offset = self.u64(f"the offset of {what}")
        if offset % alignment:
            raise GGUFFileError(
                "format",
                f"{what} starts at offset {offset:,}, not a multiple of the alignment {alignment}",
            )
        return TensorEntry(name, dims, kind, offset, numel // kind.block * kind.block_bytes)


def _alignment(metadata: dict[str, Value], types: dict[str, int]) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value = metadata["general.alignment"]
    if types["general.alignment"] != UINT32:
        raise GGUFFileError(
            "format",
            f"general.alignment is a {VALUE_NAMES[types['general.alignment']]}, not a uint32",
        )
    assert isinstance(value, int)
    if value <= 0 or value & (value - 1) or value > MAX_ALIGNMENT:
        raise GGUFFileError(
            "suspicious",
            f"general.alignment is {value}: it must be a power of two up to {MAX_ALIGNMENT:,}",
        )
    return value


def _check_layout(entries: list[TensorEntry], data_start: int, size: int) -> None:
    """Every tensor's data inside the file, no two overlapping, names unique."""
    names: set[str] = set()
    for t in entries:
        if t.name in names:
            raise GGUFFileError("format", f"the tensor name {named(t.name)} appears twice")
        names.add(t.name)
        end = data_start + t.offset + t.nbytes
        if end > size:
            raise GGUFFileError(
                "damaged",
                f"tensor {named(t.name)} ({t.nbytes:,} bytes at data offset {t.offset:,}) ends at "
                f"byte {end:,}, past the end of the file ({size:,} bytes): it is truncated, or "
                f"its header is damaged",
            )
    spans = sorted((t.offset, t.offset + t.nbytes, named(t.name)) for t in entries if t.nbytes)
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        if start < end:
            raise GGUFFileError(
                "suspicious",
                f"the data of tensors {a} and {b} overlap: the file is damaged or crafted",
            )


def named(name: str) -> str:
    """A name from the file for a message: quoted with its control characters escaped
    (``repr``), and shortened (names may be 64 KiB)."""
    return repr(name) if len(name) <= 80 else repr(name[:80]) + f"... ({len(name):,} characters)"

"""Hand-built GGUF files, field by field, so a test can put any value in any field (the
``gguf`` package's writer only writes valid files)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# tensor types
T_F32, T_F16, T_Q8_0, T_I32 = 0, 1, 8, 26


def s(text: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string; ``length`` overrides the declared length."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def array(item_type: int, count: int, payload: bytes) -> bytes:
    return u32(item_type) + u64(count) + payload


def info(name: str | bytes, dims: list[int], ttype: int, offset: int) -> bytes:
    return s(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ttype) + u64(offset)


@dataclass
class File:
    """A GGUF file: the header counts default to the number of entries given."""

    kvs: list[bytes] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    data: bytes = b""
    version: int = 3
    n_tensors: int | None = None
    n_kvs: int | None = None
    alignment: int = 32
    magic: bytes = b"GGUF"

    def bytes(self) -> bytes:
        head = (
            self.magic
            + u32(self.version)
            + u64(len(self.infos) if self.n_tensors is None else self.n_tensors)
            + u64(len(self.kvs) if self.n_kvs is None else self.n_kvs)
            + b"".join(self.kvs)
            + b"".join(self.infos)
        )
        pad = -len(head) % self.alignment
        return head + b"\0" * pad + self.data


def valid() -> File:
    """A small valid file: metadata of every kind and three tensors (F32, I32, Q8_0)."""
    a = np.arange(12, dtype=np.float32)  # dims [4, 3] -> numpy (3, 4)
    b = np.arange(5, dtype=np.int32)
    q = bytes(range(34)) * 2  # one row of 64 values = 2 blocks of Q8_0
    data = a.tobytes() + b"\0" * 16 + b.tobytes() + b"\0" * 12 + q
    return File(
        kvs=[
            kv("general.architecture", STR, s("llama")),
            kv("general.alignment", U32, u32(32)),
            kv("n", I64, struct.pack("<q", -3)),
            kv("ok", BOOL, b"\x01"),
            kv("x", F64, struct.pack("<d", 0.5)),
            kv("tokens", ARR, array(STR, 2, s("a") + s("bc"))),
            kv("ids", ARR, array(U16, 3, struct.pack("<3H", 1, 2, 3))),
            kv("nest", ARR, array(ARR, 1, array(I8, 2, b"\x01\xff"))),
            kv("tokenizer.chat_template", STR, s("{{ messages[0].content }}")),
        ],
        infos=[
            info("a", [4, 3], T_F32, 0),
            info("b", [5], T_I32, 64),
            info("q", [64], T_Q8_0, 96),
        ],
        data=data,
    )

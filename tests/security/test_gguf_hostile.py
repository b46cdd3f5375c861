"""Crafted GGUF headers: huge counts, offsets past the end, overflowing or too many dimensions,
misaligned and overlapping tensors, huge or "negative" string lengths, deep nesting, unknown
types. Each is refused by every entry point with the right error, quickly and without a
large allocation; random mutations of a valid header raise nothing but ModelstoreError."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelstore as ms
from modelstore.cli import main as cli_main
from modelstore.formats.gguf.entries import GGUFFileError
from modelstore.formats.gguf.header import parse
from tests.gguf_files import (
    ARR,
    BOOL,
    F32,
    STR,
    T_F32,
    T_Q8_0,
    U8,
    U32,
    File,
    array,
    info,
    kv,
    s,
    u32,
    valid,
)

HUGE = (1 << 64) - 1  # "-1" read as an unsigned 64-bit count


def _with(**changes: object) -> Callable[[], File]:
    def make() -> File:
        f = valid()
        for k, v in changes.items():
            setattr(f, k, v)
        return f

    return make


def _kv(*extra: bytes) -> Callable[[], File]:
    def make() -> File:
        f = valid()
        f.kvs = f.kvs[:1] + list(extra)
        return f

    return make


def _tensors(*infos: bytes, data: bytes = b"\0" * 256) -> Callable[[], File]:
    def make() -> File:
        return File(kvs=[kv("general.architecture", STR, s("x"))], infos=list(infos), data=data)

    return make


def _nested(depth: int) -> bytes:
    payload = array(U8, 0, b"")
    for _ in range(depth):
        payload = array(ARR, 1, payload)
    return payload


# (case id, file maker, expected error class, a fragment of the message)
CASES: list[tuple[str, Callable[[], File], type[Exception], str]] = [
    ("tensor-count-huge", _with(n_tensors=1 << 62), ms.FormatError, "tensor count"),
    ("tensor-count-minus-one", _with(n_tensors=HUGE), ms.FormatError, "tensor count"),
    ("tensor-count-past-eof", _with(n_tensors=100_000), ms.IntegrityError, "tensor count"),
    ("kv-count-huge", _with(n_kvs=HUGE), ms.FormatError, "metadata count"),
    ("kv-count-past-eof", _with(n_kvs=60_000), ms.IntegrityError, "metadata count"),
    (
        "string-negative-length",
        _kv(kv("k", STR, s("abc", length=HUGE))),
        ms.FormatError,
        "declares",
    ),
    ("string-huge-length", _kv(kv("k", STR, s("abc", length=1 << 40))), ms.FormatError, "declares"),
    (
        "string-past-eof",
        _kv(kv("k", STR, s("abc", length=1 << 20))),
        ms.IntegrityError,
        "file ends",
    ),
    ("key-negative-length", _kv(s("k", length=HUGE) + u32(STR) + s("v")), ms.FormatError, "key"),
    ("array-huge", _kv(kv("k", ARR, array(U32, 1 << 40, b""))), ms.FormatError, "length of"),
    ("array-minus-one", _kv(kv("k", ARR, array(STR, HUGE, b""))), ms.FormatError, "length of"),
    ("array-past-eof", _kv(kv("k", ARR, array(U32, 1 << 20, b""))), ms.IntegrityError, "remain"),
    ("nested-too-deep", _kv(kv("k", ARR, _nested(64))), ms.FormatError, "nests"),
    ("nested-deep-recursion", _kv(kv("k", ARR, _nested(5000))), ms.FormatError, "nests"),
    (
        "nested-too-many",
        _kv(kv("k", ARR, array(ARR, 70_000, array(U8, 0, b"") * 70_000))),
        ms.FormatError,
        "arrays",
    ),
    ("value-type-unknown", _kv(kv("k", 13, u32(0))), ms.FormatError, "unknown value type"),
    ("array-type-unknown", _kv(kv("k", ARR, array(99, 1, b""))), ms.FormatError, "unknown value"),
    ("key-twice", _kv(kv("k", BOOL, b"\1"), kv("k", BOOL, b"\0")), ms.FormatError, "twice"),
    ("key-not-utf8", _kv(kv(b"\xff\xfe", BOOL, b"\1")), ms.FormatError, "UTF-8"),
    ("alignment-zero", _kv(kv("general.alignment", U32, u32(0))), ms.FormatError, "power of two"),
    ("alignment-not-pow2", _kv(kv("general.alignment", U32, u32(48))), ms.FormatError, "power"),
    ("alignment-huge", _kv(kv("general.alignment", U32, u32(1 << 31))), ms.FormatError, "power"),
    ("alignment-wrong-type", _kv(kv("general.alignment", F32, u32(0))), ms.FormatError, "uint32"),
    ("dims-too-many", _tensors(info("t", [1] * 5, T_F32, 0)), ms.FormatError, "dimensions"),
    ("dims-count-huge", _tensors(s("t") + u32(HUGE >> 32)), ms.FormatError, "dimensions"),
    (
        "dims-overflow",
        _tensors(info("t", [1 << 32, 1 << 32], T_F32, 0)),
        ms.FormatError,
        "overflow",
    ),
    ("dims-negative", _tensors(info("t", [HUGE], T_F32, 0)), ms.FormatError, "negative"),
    ("dims-past-eof", _tensors(info("t", [1 << 40], T_F32, 0)), ms.IntegrityError, "past the end"),
    ("type-unknown", _tensors(info("t", [4], 99, 0)), ms.FormatError, "unknown ggml type"),
    ("quant-partial-block", _tensors(info("t", [33], T_Q8_0, 0)), ms.FormatError, "whole number"),
    (
        "offset-past-eof",
        _tensors(info("t", [4], T_F32, 1 << 20)),
        ms.IntegrityError,
        "past the end",
    ),
    ("offset-huge", _tensors(info("t", [4], T_F32, HUGE - 31)), ms.IntegrityError, "past the end"),
    ("offset-misaligned", _tensors(info("t", [4], T_F32, 4)), ms.FormatError, "multiple of"),
    (
        "tensors-overlap",
        _tensors(info("t", [16], T_F32, 0), info("u", [16], T_F32, 32)),
        ms.FormatError,
        "overlap",
    ),
    (
        "tensor-name-twice",
        _tensors(info("t", [4], T_F32, 0), info("t", [4], T_F32, 32)),
        ms.FormatError,
        "twice",
    ),
    ("name-negative-length", _tensors(s("t", length=HUGE)), ms.FormatError, "declares"),
    ("version-1", _with(version=1), ms.FormatError, "version 1"),
    ("version-unknown", _with(version=77), ms.FormatError, "unknown GGUF version"),
    ("big-endian", _with(version=3 << 24), ms.FormatError, "big-endian"),
    ("wrong-magic", _with(magic=b"GGUG"), ms.FormatError, "not a valid gguf"),
]


@pytest.fixture(scope="module", autouse=True)
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One valid load first, so the allocation checks below see no first-use imports."""
    p = tmp_path_factory.mktemp("warm") / "ok.gguf"
    p.write_bytes(valid().bytes())
    ms.load(p), ms.inspect(p), ms.scan(p)


def test_the_valid_file_loads(tmp_path: Path) -> None:
    """The base every case mutates is valid: it loads, inspects and scans safe."""
    p = tmp_path / "ok.gguf"
    p.write_bytes(valid().bytes())
    out = ms.load(p)
    np.testing.assert_array_equal(out["a"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert out["q"].dtype == np.uint8 and out["q"].shape == (68,)
    assert ms.scan(p).verdict == "safe"


@pytest.mark.parametrize(
    ("make", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_crafted_header_refused_everywhere(
    tmp_path: Path, make: Callable[[], File], error: type[Exception], fragment: str
) -> None:
    """load and inspect raise the right error naming the file and the problem, without a
    large allocation; scan never calls the file safe; convert, predict and stats refuse it;
    the CLI refuses it with an exit code."""
    p = tmp_path / "m.gguf"
    p.write_bytes(make().bytes())
    for call in (ms.load, ms.inspect):
        tracemalloc.start()
        try:
            with pytest.raises(error, match=None) as got:
                call(p)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert str(p) in str(got.value) and fragment in str(got.value), str(got.value)
        assert peak < 4 << 20, f"{call.__name__} allocated {peak:,} bytes"
    assert ms.scan(p).verdict in ("unsafe", "unknown")
    for other in (
        lambda: ms.convert(p, tmp_path / "out.npz"),
        lambda: ms.predict(p, np.zeros((1, 4), dtype=np.float32)),
        lambda: ms.stats(p),
    ):
        with pytest.raises(ms.ModelstoreError):
            other()
    assert not (tmp_path / "out.npz").exists()
    assert cli_main(["scan", str(p)], io.StringIO()) in (1, 2)
    assert cli_main(["inspect", str(p)], io.StringIO()) != 0


def test_control_characters_and_bad_utf8_never_reach_the_terminal(tmp_path: Path) -> None:
    """Escape sequences and invalid UTF-8 in metadata values, keys and tensor names load as
    data but are shown escaped by inspect, scan and the CLI."""
    f = valid()
    f.kvs += [
        kv("general.name", STR, s(b"\x1b[31mred\xff\n")),
        kv("k\x1b[2J", BOOL, b"\1"),
        kv("tokenizer.chat_template.\x1b]0;x\x07", STR, s("{{ 1 }}")),
    ]
    f.infos[0] = info("a\x1b[1m", [4, 3], T_F32, 0)
    p = tmp_path / "esc.gguf"
    p.write_bytes(f.bytes())
    assert "a\x1b[1m" in ms.load(p)
    described = ms.inspect(p).to_dict()
    assert "\x1b" not in json.dumps(described, ensure_ascii=False)
    assert described["metadata"]["gguf_metadata"]["general.name"] == "\\x1b[31mred\\udcff\\n"
    assert all("\x1b" not in f.subject for f in ms.scan(p).findings)
    for command in ("inspect", "scan"):
        out = io.StringIO()
        cli_main([command, str(p)], out)
        assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def test_every_truncation_of_a_valid_file_is_damaged(tmp_path: Path) -> None:
    """Each prefix of a valid file (cut inside the header, the padding or the data) is
    refused as damaged (IntegrityError), never misread."""
    data = valid().bytes()
    p = tmp_path / "cut.gguf"
    for n in range(len(data)):
        p.write_bytes(data[:n])
        with pytest.raises(ms.IntegrityError):
            parse_file(p)
    p.write_bytes(data)
    assert len(parse_file(p).tensors) == 3


def parse_file(p: Path) -> object:
    try:
        with open(p, "rb") as f:
            return parse(f, p.stat().st_size)
    except GGUFFileError as e:
        if e.kind == "damaged":
            raise ms.IntegrityError(str(e)) from None
        raise ms.FormatError(str(e)) from None


VALID = valid().bytes()
HEADER_END = len(VALID) - len(valid().data)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, HEADER_END - 1),
            st.sampled_from(["byte", "u32", "u64", "cut", "insert"]),
            st.integers(0, (1 << 64) - 1),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_headers_raise_only_modelstore_errors(edits: list[tuple[int, str, int]]) -> None:
    """Any mutation of a valid header (bytes, 32/64-bit fields, cuts, insertions) either
    parses into a header whose tensors all lie inside the file, or raises GGUFFileError."""
    data = bytearray(VALID)
    for pos, how, value in edits:
        pos = min(pos, len(data))
        if how == "byte":
            data[pos : pos + 1] = bytes([value & 0xFF])
        elif how == "u32":
            data[pos : pos + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif how == "u64":
            data[pos : pos + 8] = struct.pack("<Q", value)
        elif how == "cut":
            del data[pos : pos + 1 + value % 16]
        else:
            data[pos:pos] = struct.pack("<Q", value)[: 1 + value % 8]
    try:
        header = parse(io.BytesIO(bytes(data)), len(data))
    except GGUFFileError:
        return
    for t in header.tensors:
        assert header.data_start + t.offset + t.nbytes <= len(data)


@settings(max_examples=150, deadline=None, database=None)
@given(
    pos=st.integers(0, HEADER_END - 1),
    value=st.integers(0, (1 << 64) - 1),
    width=st.sampled_from([1, 4, 8]),
)
def test_mutated_files_through_every_entry_point(pos: int, value: int, width: int) -> None:
    """load, inspect and scan of a mutated file: a result or a ModelstoreError, nothing else."""
    import tempfile

    data = bytearray(VALID)
    data[pos : pos + width] = value.to_bytes(8, "little")[:width]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.gguf"
        p.write_bytes(bytes(data))
        for call in (ms.load, ms.inspect, ms.scan):
            try:
                call(p)
            except ms.ModelstoreError:
                pass

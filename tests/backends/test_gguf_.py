"""GGUF files written by llama.cpp's own ``gguf`` package: inspect (header, metadata, tensor
table), load (values equal to gguf's GGUFReader), scan (safe; a chat template reported as
code, never rendered), options, torch tensors and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import modelstore as ms  # noqa: E402
from modelstore.cli import main as cli_main  # noqa: E402
from modelstore.formats.gguf.header import parse  # noqa: E402

Q = gguf.GGMLQuantizationType
RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 64)).astype(np.float32)
PLAIN = {
    "f32": RNG.standard_normal((3, 5)).astype(np.float32),
    "f16": RNG.standard_normal((2, 3, 4)).astype(np.float16),
    "f64": RNG.standard_normal(7),
    "i8": np.arange(-4, 4, dtype=np.int8).reshape(2, 4),
    "i16": np.arange(6, dtype=np.int16),
    "i32": np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    "i64": np.arange(3, dtype=np.int64) - 10,
    "scalar": np.array([1.5], dtype=np.float32),
}
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}"
LONG = "x" * 1000
NESTED = [[1, 2], [3, 4, 5]]


def write(path: Path, *, alignment: int | None = None) -> Path:
    """A GGUF file of every plain tensor type, Q8_0 / Q4_0 / BF16 tensors and metadata of
    every value type, a chat template and a named one."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_uint64("t.u64", 1 << 63)
    w.add_int64("t.i64", -(1 << 62))
    w.add_float32("t.f32", 0.25)
    w.add_float64("t.f64", 1e300)
    w.add_bool("t.bool", True)
    w.add_string("t.long", LONG)
    w.add_array("t.ints", list(range(100)))
    w.add_array("t.floats", [0.5, -1.25])
    w.add_array("t.words", ["héllo", "wörld", ""])
    w.add_array("t.flags", [True, False])
    w.add_array("t.nested", NESTED)
    w.add_token_list([f"tok{i}" for i in range(1000)])
    w.add_chat_template(
        [{"name": "default", "template": TEMPLATE}, {"name": "tool_use", "template": "B"}]
    )
    if alignment:
        w.add_custom_alignment(alignment)
    for name, value in PLAIN.items():
        w.add_tensor(name, value)
    for name, kind in (("q8", Q.Q8_0), ("q4", Q.Q4_0), ("bf16", Q.BF16)):
        raw = gguf.quants.quantize(X, kind)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_load_equals_ggufreader(model: Path) -> None:
    """Every tensor loads with the values and shape GGUFReader gives (plain types in their
    dtype, GGUF's dims reversed; quantized ones as the same raw blocks; BF16 widened)."""
    out = ms.load(model)
    reader = gguf.GGUFReader(str(model))
    assert list(out) == [t.name for t in reader.tensors]
    for t in reader.tensors:
        got = out[t.name]
        if t.name == "bf16":
            assert got.dtype == np.float32 and got.shape == X.shape
            bits = np.asarray(t.data).view(np.uint16).reshape(X.shape)
            np.testing.assert_array_equal(got.view(np.uint32) >> 16, bits)
            np.testing.assert_allclose(got, X, rtol=1e-2)
            continue
        np.testing.assert_array_equal(got, np.asarray(t.data))
        assert got.dtype == t.data.dtype and got.shape == t.data.shape
        assert got.flags.writeable
    for name, value in PLAIN.items():
        np.testing.assert_array_equal(out[name], value)
        assert out[name].shape == value.shape
    assert out["q8"].dtype == np.uint8 and out["q8"].shape == (4, 64 // 32 * 34)
    # the raw blocks are usable: gguf's own dequantizer gives the values back
    np.testing.assert_allclose(gguf.quants.dequantize(out["q8"], Q.Q8_0), X, atol=0.03)


def test_metadata_equals_ggufreader(model: Path) -> None:
    """Our header reader gives every metadata value GGUFReader gives (nested arrays as
    written: GGUFReader flattens them)."""
    with open(model, "rb") as f:
        header = parse(f, model.stat().st_size)
    reader = gguf.GGUFReader(str(model))
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(header.metadata) == keys
    for key in keys:
        if key == "t.nested":
            assert header.value(key) == NESTED
            continue
        assert header.value(key) == reader.fields[key].contents(), key
    assert header.version == 3 and header.alignment == 32
    assert header.value("t.u64") == 1 << 63 and header.value("t.flags") == [True, False]


def test_inspect(model: Path) -> None:
    """inspect: GGUF facts, metadata shortened for display, the tensor table with quantized
    types and their block sizes, totals; the chat templates named as code, not shown."""
    info = ms.inspect(model)
    assert info.format == "gguf" and not info.executes_code
    table = {t.name: (t.shape, t.dtype, t.nbytes) for t in info.tensors}
    assert table["f32"] == ((3, 5), "float32", 60)
    assert table["i8"] == ((2, 4), "int8", 8)
    assert table["q8"] == ((4, 64), "Q8_0", 4 * 2 * 34)
    assert table["q4"] == ((4, 64), "Q4_0", 4 * 2 * 18)
    assert table["bf16"] == ((4, 64), "bfloat16", 512)
    assert info.num_params == sum(v.size for v in PLAIN.values()) + 3 * X.size
    meta = info.metadata
    assert meta["gguf"]["version"] == 3 and meta["gguf"]["tensors"] == len(PLAIN) + 3
    assert meta["gguf"]["tensor_bytes"] == sum(t.nbytes for t in info.tensors)
    assert meta["architecture"] == "llama"
    assert meta["tensor_types"]["Q4_0"] == {"tensors": 1, "block": 32, "block_bytes": 18}
    shown = meta["gguf_metadata"]
    assert shown["t.u8"] == 200 and shown["t.words"] == ["héllo", "wörld", ""]
    assert shown["t.long"].startswith("xxx") and "(1,000 characters)" in shown["t.long"]
    assert shown["t.ints"][-1] == "... (100 int32 items)" and len(shown["t.ints"]) == 9
    assert shown["tokenizer.ggml.tokens"][:2] == ["tok0", "tok1"]
    assert TEMPLATE not in json.dumps(info.to_dict())  # never shown, never rendered
    assert {c["key"] for c in meta["code"]} == {
        "tokenizer.chat_template",
        "tokenizer.chat_template.tool_use",
    }
    json.dumps(info.to_dict())


def test_scan_safe_with_chat_template_finding(model: Path, tmp_path: Path) -> None:
    """scan: safe (nothing runs on load); the chat templates are findings (code at
    inference); a file without one has no findings."""
    report = ms.scan(model)
    assert report.verdict == "safe"
    assert {f.subject for f in report.findings} == {
        "tokenizer.chat_template",
        "tokenizer.chat_template.tool_use",
    }
    assert all("Jinja" in f.reason and f.severity == "warning" for f in report.findings)
    w = gguf.GGUFWriter(str(tmp_path / "plain.gguf"), "llama")
    w.add_tensor("w", PLAIN["f32"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    plain = ms.scan(tmp_path / "plain.gguf")
    assert plain.verdict == "safe" and plain.findings == []


def test_options(model: Path) -> None:
    """quantized="skip" leaves block-quantized tensors out, "refuse" names them; unknown
    options and values, and model=, are refused; saving to .gguf says modelstore does not
    write GGUF."""
    out = ms.load(model, quantized="skip")
    assert "q8" not in out and "q4" not in out and "bf16" in out
    with pytest.raises(ms.UnsupportedModelError, match="'q8' \\(Q8_0\\)"):
        ms.load(model, quantized="refuse")
    with pytest.raises(ms.ArgumentError, match="quantized"):
        ms.load(model, quantized="dequantize")
    with pytest.raises(ms.ArgumentError):
        ms.load(model, quantise="raw")
    with pytest.raises(ms.ArgumentError, match="dict of arrays"):
        ms.load(model, model=object)
    with pytest.raises(ms.UnsupportedModelError, match="does not write them"):
        ms.save(PLAIN, model.parent / "out.gguf")


def test_torch_tensors(model: Path) -> None:
    """device= returns torch tensors (BF16 as torch.bfloat16, the stored bits) on that
    device; a device torch cannot use here is refused before anything is read."""
    torch = pytest.importorskip("torch")
    out = ms.load(model, device="cpu")
    assert isinstance(out["f32"], torch.Tensor) and out["f16"].dtype == torch.float16
    assert out["bf16"].dtype == torch.bfloat16
    np.testing.assert_array_equal(out["bf16"].float().numpy(), ms.load(model)["bf16"])
    np.testing.assert_array_equal(out["i32"].numpy(), PLAIN["i32"])
    if not torch.cuda.is_available():
        with pytest.raises(ms.ArgumentError, match="CUDA is not available"):
            ms.load(model, device="cuda")
    else:
        cuda = ms.load(model, device="cuda")
        assert cuda["f32"].is_cuda and cuda["bf16"].dtype == torch.bfloat16
        np.testing.assert_array_equal(cuda["f16"].cpu().numpy(), PLAIN["f16"])


def test_alignment_version_2_and_sniffing(model: Path, tmp_path: Path) -> None:
    """A custom general.alignment is honoured; a version-2 file (same layout) loads; a GGUF
    under another name is found by its magic."""
    aligned = write(tmp_path / "a64.gguf", alignment=64)
    assert ms.inspect(aligned).metadata["gguf"]["alignment"] == 64
    np.testing.assert_array_equal(ms.load(aligned)["i64"], PLAIN["i64"])
    v2 = bytearray(model.read_bytes())
    v2[4:8] = (2).to_bytes(4, "little")
    (tmp_path / "v2.bin").write_bytes(bytes(v2))
    assert ms.inspect(tmp_path / "v2.bin").metadata["gguf"]["version"] == 2
    np.testing.assert_array_equal(ms.load(tmp_path / "v2.bin")["f32"], PLAIN["f32"])


def test_big_endian_refused(tmp_path: Path) -> None:
    """A big-endian GGUF (gguf's writer can make one) is refused with what to do."""
    w = gguf.GGUFWriter(str(tmp_path / "be.gguf"), "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_tensor("w", PLAIN["f32"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ms.FormatError, match="big-endian.*gguf-convert-endian"):
        ms.load(tmp_path / "be.gguf")


def test_cli_inspect_and_scan(model: Path) -> None:
    """`modelstore inspect` shows the tensor table and `scan` exits 0 naming the template."""
    out = io.StringIO()
    assert cli_main(["inspect", str(model)], out) == 0
    text = out.getvalue()
    assert "Q8_0" in text and "bfloat16" in text and TEMPLATE not in text
    out = io.StringIO()
    assert cli_main(["inspect", "--json", str(model)], out) == 0
    data: dict[str, Any] = json.loads(out.getvalue())
    assert data["verdict"] == "safe" and data["format"] == "gguf"
    out = io.StringIO()
    assert cli_main(["scan", str(model)], out) == 0
    assert "tokenizer.chat_template" in out.getvalue()


def test_type_table_matches_gguf() -> None:
    """Our ggml type table (codes, names, block sizes) agrees with the gguf package's."""
    from modelstore.formats.gguf.types import TENSOR_TYPES

    theirs = {int(k): (k.name, *v) for k, v in gguf.GGML_QUANT_SIZES.items()}
    shared = set(theirs) & set(TENSOR_TYPES)
    assert len(shared) >= 30
    for code in shared:
        t = TENSOR_TYPES[code]
        assert (t.name, t.block, t.block_bytes) == theirs[code]


def test_every_type_loads_like_ggufreader(tmp_path: Path) -> None:
    """A tensor of every ggml type (random bytes, written raw by GGUFWriter) loads with the
    same bytes and shape as GGUFReader gives; inspect reports each type by name."""
    from modelstore.formats.gguf.types import DTYPE_NAMES, TENSOR_TYPES

    path = tmp_path / "types.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    written = {}
    for code, (block, size) in ((int(k), v) for k, v in gguf.GGML_QUANT_SIZES.items()):
        if code not in TENSOR_TYPES:
            continue
        kind = Q(code)
        raw = RNG.integers(0, 256, size=(3, 2 * size), dtype=np.uint8)  # 3 rows of 2 blocks
        if kind in (Q.F16, Q.F32, Q.F64, Q.I8, Q.I16, Q.I32, Q.I64):
            raw = raw.view(np.dtype(TENSOR_TYPES[code].numpy or "u1"))
        w.add_tensor(kind.name, raw, raw_shape=raw.shape, raw_dtype=kind)
        written[kind.name] = (3, 2 * block)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = ms.load(path)
    reader = gguf.GGUFReader(str(path))
    for t in reader.tensors:
        mine = out[t.name]
        if t.name == "BF16":
            mine = (mine.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
            mine = mine.reshape(np.asarray(t.data).shape)
        np.testing.assert_array_equal(mine, np.asarray(t.data), err_msg=t.name)
    shapes = {i.name: (i.shape, i.dtype) for i in ms.inspect(path).tensors}
    assert shapes == {name: (shape, DTYPE_NAMES.get(name, name)) for name, shape in written.items()}


def test_stats_leave_quantized_blocks_out(model: Path) -> None:
    """stats describe real weights: quantized tensors (raw blocks) are not among them."""
    names = {s.name for s in ms.stats(model)}
    assert "bf16" in names and "q8" not in names and "q4" not in names

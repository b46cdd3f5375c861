"""What ``inspect`` and ``scan`` show of a GGUF header: metadata shortened for display, the
tensor table, and chat templates reported as code (never rendered)."""

from __future__ import annotations

from typing import Any

from ..._info import Finding, TensorInfo, printable
from .entries import GGUFArray, Header, TensorEntry
from .types import ARRAY, DTYPE_NAMES, VALUE_NAMES

SHOWN_CHARS = 120  # of a string value
SHOWN_ITEMS = 8  # of an array value
CHAT_TEMPLATE = "tokenizer.chat_template"
CODE_REASON = (
    "a Jinja chat template: code that runs at inference (llama.cpp, Ollama, transformers "
    "render it on every prompt); modelstore never renders it: read it before you serve this "
    "model"
)


def is_code(key: str) -> bool:
    """Whether the metadata ``key`` holds a chat template (``tokenizer.chat_template`` or a
    named one, ``tokenizer.chat_template.NAME``)."""
    return key == CHAT_TEMPLATE or key.startswith(CHAT_TEMPLATE + ".")


def dtype_name(t: TensorEntry) -> str:
    """``float32`` and the like for plain types, the ggml name (``Q4_0``) for quantized ones."""
    return DTYPE_NAMES.get(t.type.name, t.type.name)


def tensors(header: Header) -> list[TensorInfo]:
    return [TensorInfo(printable(t.name), t.shape, dtype_name(t), t.nbytes) for t in header.tensors]


def shown(value: Any) -> Any:
    """A metadata value for display: long strings and arrays shortened, every string made
    printable (it comes from the file)."""
    if isinstance(value, str):
        text = printable(value)
        if len(text) > SHOWN_CHARS:
            return f"{text[:SHOWN_CHARS]}... ({len(value):,} characters)"
        return text
    if isinstance(value, GGUFArray):
        head = value.values[:SHOWN_ITEMS]
        plain = head if value.item_type == ARRAY else GGUFArray(value.item_type, head).tolist()
        items = [shown(v) for v in plain]
        if len(value) > SHOWN_ITEMS:
            items.append(f"... ({len(value):,} {VALUE_NAMES[value.item_type]} items)")
        return items
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value


def code_entries(header: Header) -> list[dict[str, Any]]:
    """The chat templates in the metadata, described (name and size), never rendered."""
    out = []
    for key, value in header.metadata.items():
        if is_code(key):
            size = len(value) if isinstance(value, (str, GGUFArray)) else 0
            out.append({"key": printable(key), "kind": "Jinja chat template", "characters": size})
    return out


def findings(header: Header) -> list[Finding]:
    return [Finding(e["key"], "warning", CODE_REASON) for e in code_entries(header)]


def extra_metadata(header: Header) -> dict[str, Any]:
    """The ``metadata`` ``inspect`` reports: the GGUF facts, the file's own metadata (chat
    templates only named), the tensor types used with their block sizes, and the code."""
    types: dict[str, dict[str, int]] = {}
    for t in header.tensors:
        entry = types.setdefault(
            t.type.name, {"tensors": 0, "block": t.type.block, "block_bytes": t.type.block_bytes}
        )
        entry["tensors"] += 1
    meta = {
        printable(k): ("<chat template: not shown, see 'code'>" if is_code(k) else shown(v))
        for k, v in header.metadata.items()
    }
    out: dict[str, Any] = {
        "gguf": {
            "version": header.version,
            "alignment": header.alignment,
            "tensors": len(header.tensors),
            "metadata_keys": len(header.metadata),
            "header_bytes": header.header_bytes,
            "data_offset": header.data_start,
            "tensor_bytes": sum(t.nbytes for t in header.tensors),
        },
        "gguf_metadata": meta,
        "tensor_types": types,
    }
    arch = header.metadata.get("general.architecture")
    if isinstance(arch, str):
        out["architecture"] = printable(arch)
    code = code_entries(header)
    if code:
        out["code"] = code
    return out

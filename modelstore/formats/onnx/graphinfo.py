"""What ``inspect`` says about an ONNX graph's inputs, outputs and initializers."""

from __future__ import annotations

from typing import Any

from ..._info import TensorInfo


def value_info(v: Any) -> dict[str, Any]:
    import onnx

    if not v.type.HasField("tensor_type"):  # ZipMap's sequence of maps, and other non-tensors
        return {"name": v.name, "shape": [], "dtype": type_name(v.type)}
    t = v.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
    return {"name": v.name, "shape": dims, "dtype": dtype}


def type_name(t: Any) -> str:
    import onnx

    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return (
            onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).name
            if t.tensor_type.elem_type
            else "unknown"
        )
    if kind == "sequence_type":
        return f"seq({type_name(t.sequence_type.elem_type)})"
    if kind == "map_type":
        key = (
            onnx.helper.tensor_dtype_to_np_dtype(t.map_type.key_type).name
            if t.map_type.key_type
            else "unknown"
        )
        return f"map({key},{type_name(t.map_type.value_type)})"
    return kind or "unknown"


def tensor_info(t: Any) -> TensorInfo:
    import onnx

    shape = tuple(int(d) for d in t.dims)
    n = 1
    for d in shape:
        n *= d
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        dtype, size = np_dtype.name, np_dtype.itemsize
    except (KeyError, ValueError, TypeError):
        dtype, size = str(t.data_type), 0
    return TensorInfo(t.name, shape, dtype, n * size)


def recorded(meta: dict[str, Any] | None) -> dict[str, Any]:
    """What ``inspect`` shows of modelstore's own record: the export's parity check (measured
    differences and the tolerances used, e.g. wider ones for float16) and a quantization."""
    meta = meta or {}
    found = meta.get("onnx")
    onnx_meta: dict[str, Any] = found if isinstance(found, dict) else {}
    out = {"parity": onnx_meta.get("parity"), "quantization": meta.get("quantization")}
    return {k: v for k, v in out.items() if isinstance(v, dict)}

"""int8 ONNX models through onnxruntime's own quantizer (``onnxruntime.quantization``).

:func:`quantize_dynamic` writes the quantized graph of an already checked ``ModelProto``;
:func:`accuracy` runs the source and the quantized session on the same inputs and says how
far apart they are. ``ms.quantize`` (``modelstore/api/quantize.py``) does the rest: the
trust gate on the source, the atomic write, the metadata.

Dynamic quantization stores weights as 8-bit integers with a scale per tensor (or per
channel) and quantizes activations on the fly at run time, so it needs no calibration data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import ArgumentError, MissingDependencyError, UnsupportedModelError

#: ``weight_type=`` -> onnxruntime's QuantType member.
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
METHODS = ("dynamic",)
#: The operators the dynamic quantizer writes: a graph with none of them was not quantized.
_INTEGER_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QAttention",
        "QLinearMatMul",
        "QLinearConv",
        "QGemm",
        "DequantizeLinear",
    }
)
#: onnxruntime's nag about its pre-processing step (symbolic shape inference: slow, and it
#: fails on many exporters' graphs); dynamic quantization does not need it
_NAG = "Please consider to run pre-processing before quantization"


def require(where: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        msg = f'{where}: int8 quantization needs onnxruntime; run: pip install "modelstore-safe[onnx]"'
        raise MissingDependencyError(msg, name="onnxruntime")


def quantize_dynamic(
    proto: Any,
    out: Path,
    *,
    where: Path,
    weight_type: str,
    per_channel: bool,
    reduce_range: bool,
    op_types: list[str] | None,
    exclude_nodes: list[str] | None,
) -> dict[str, Any]:
    """Write ``proto`` quantized to ``out`` (``proto`` is edited in place); returns what to
    record (the quantizer's settings, its notes and how many operators now run in integers)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    # the caller's own copy (read for this call): the Gemm rewrite and the quantizer edit it
    rewritten = 0 if op_types and "Gemm" not in op_types else gemm_as_matmul(proto)
    ops = sorted({n.op_type for n in proto.graph.node})
    done = sorted(set(ops) & _INTEGER_OPS)
    if done:
        msg = (
            f"{where}: this graph is already quantized (it has {', '.join(done)}); quantize "
            f"the float model it was made from"
        )
        raise UnsupportedModelError(msg)
    if not set(ops) & set(op_types or IntegerOpsRegistry):
        msg = (
            f"{where}: nothing in this graph can be quantized dynamically: onnxruntime "
            f"quantizes {', '.join(sorted(op_types or IntegerOpsRegistry))}, and the graph has "
            f"{', '.join(ops[:12])}{' ...' if len(ops) > 12 else ''}; keep the float model"
        )
        raise UnsupportedModelError(msg)
    with _ort_log() as notes:
        try:
            ort_quantize(
                proto,
                out,
                weight_type=getattr(QuantType, WEIGHT_TYPES[weight_type]),
                per_channel=per_channel,
                reduce_range=reduce_range,
                op_types_to_quantize=op_types,
                nodes_to_exclude=exclude_nodes,
            )
        except Exception as e:  # the quantizer raises plain exceptions for graphs it cannot handle
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            msg = (
                f"{where}: onnxruntime's quantizer could not quantize this graph ({type(e).__name__}: "
                f"{first[:300]}); try op_types=['MatMul'] or exclude_nodes=[...]"
            )
            raise UnsupportedModelError(msg) from None
    written = onnx.load(str(out), load_external_data=False)
    counts: dict[str, int] = {}
    for node in written.graph.node:
        if node.op_type in _INTEGER_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if not counts:
        msg = (
            f"{where}: onnxruntime's quantizer left every operator in float "
            f"({', '.join(ops[:12])}{' ...' if len(ops) > 12 else ''}){_why_not(op_types, exclude_nodes)}"
        )
        raise UnsupportedModelError(msg)
    return {
        "method": "dynamic",
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "onnxruntime_version": onnxruntime.__version__,
        "weight_type": weight_type,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "op_types": op_types,
        "exclude_nodes": exclude_nodes,
        "integer_ops": counts,
        "gemm_as_matmul": rewritten,
        **({"notes": notes} if notes else {}),
    }


def gemm_as_matmul(proto: Any) -> int:
    """Rewrite ``Gemm`` nodes with a constant weight as ``MatMul`` + ``Add`` (in place), since
    onnxruntime's dynamic quantizer has no integer Gemm; returns how many were rewritten.
    Only the plain case ``Y = A @ B(.T) + C`` (alpha = beta = 1, A not transposed, B an
    initializer used by this node alone) is rewritten; other Gemms stay in float."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes, count = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b = node.input[1] if node.op_type == "Gemm" and len(node.input) > 1 else None
        plain = (
            b is not None
            and b in inits
            and uses.get(b) == 1
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
            and not attrs.get("transA", 0)
        )
        if b is None or not plain:  # b is None: not a Gemm
            nodes.append(node)
            continue
        if attrs.get("transB", 0):
            weight = numpy_helper.to_array(inits[b]).T.copy()
            inits[b].CopyFrom(numpy_helper.from_array(weight, b))
            _forget_shape(graph, b, weight.shape)
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.name or node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(
            helper.make_node("MatMul", [node.input[0], b], [product], name=f"{node.name}_MatMul")
        )
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"
                )
            )
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def _forget_shape(graph: Any, name: str, shape: tuple[int, ...]) -> None:
    """Drop the recorded shape of a transposed initializer (value_info) and correct it where
    old exporters list initializers among the graph's inputs."""
    keep = [v for v in graph.value_info if v.name != name]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    for value in graph.input:
        if value.name == name and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for n in shape:
                dims.add().dim_value = n


def _why_not(op_types: list[str] | None, exclude: list[str] | None) -> str:
    if op_types or exclude:
        return "; op_types= or exclude_nodes= may have left nothing to quantize"
    return "; keep the float model"


@contextlib.contextmanager
def _ort_log() -> Iterator[list[str]]:
    """Collect what the quantizer logs through the root logger (it calls ``logging.warning``,
    which would install a handler on an unconfigured root logger: a global side effect).
    Records of other threads or loggers go where they would have gone without us."""
    import threading

    notes: list[str] = []
    me = threading.get_ident()
    root = logging.getLogger()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "root" and record.thread == me:
                text = record.getMessage().strip()
                if _NAG not in text and text not in notes:
                    notes.append(text[:500])
                return
            # not ours: what logging does with no handler (or the root's own handlers)
            if len(root.handlers) == 1 and logging.lastResort is not None:
                if record.levelno >= logging.lastResort.level:
                    logging.lastResort.handle(record)

    handler = _Collect(logging.NOTSET)
    root.addHandler(handler)
    try:
        yield notes
    finally:
        root.removeHandler(handler)


# -- accuracy ------------------------------------------------------------------------------


def session_of(path: Path, shown: Path, meta: dict[str, Any]) -> Any:
    """An :class:`OnnxModel` of the quantized file just written (ours: no gate needed)."""
    import onnxruntime as ort

    from .backend import OnnxModel

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return OnnxModel(shown, session, meta)


def accuracy(source: Any, quantized: Any, sample: Any) -> dict[str, Any]:
    """Run two :class:`OnnxModel` on ``sample`` and compare every output: the largest and
    mean absolute difference of numeric outputs, and the share of rows whose arg-max
    (scores, probabilities) or label output agree."""
    import numpy as np

    feed = source.feed(sample)
    want = source.session.run(None, feed)
    got = quantized.session.run(None, quantized.feed(sample))
    rows = len(next(iter(feed.values())))
    out: dict[str, Any] = {"samples": rows, "outputs": {}}
    worst, agreement = 0.0, None
    for meta, a, b in zip(source.outputs, want, got):
        if isinstance(a, list) or isinstance(b, list):  # ZipMap: list of {class: probability}
            a = np.asarray([list(row.values()) for row in a], dtype=np.float64)
            b = np.asarray([list(row.values()) for row in b], dtype=np.float64)
        a, b = np.asarray(a), np.asarray(b)
        entry: dict[str, Any] = {}
        if a.dtype.kind == "f" and a.shape == b.shape:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            entry["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
            entry["mean_abs_diff"] = float(diff.mean()) if diff.size else 0.0
            worst = max(worst, entry["max_abs_diff"])
            if a.ndim == 2 and a.shape[1] > 1:
                entry["argmax_agreement"] = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
        elif a.shape == b.shape and a.ndim == 1:  # a label output
            entry["agreement"] = float((a == b).mean())
        share = entry.get("argmax_agreement", entry.get("agreement"))
        if share is not None:
            agreement = share if agreement is None else min(agreement, share)
        out["outputs"][meta.name] = entry
    out["max_abs_diff"] = worst
    out["agreement"] = agreement
    return out


def check_thresholds(
    where: Path, result: dict[str, Any], max_abs_diff: float | None, min_agreement: float | None
) -> str | None:
    """Why the quantized model fails the caller's thresholds, or None."""
    if max_abs_diff is not None and result["max_abs_diff"] > max_abs_diff:
        return (
            f"{where}: the int8 model's outputs differ from the source by up to "
            f"{result['max_abs_diff']:.3g} on the sample, beyond max_abs_diff={max_abs_diff}"
        )
    agreement = result["agreement"]
    if min_agreement is not None:
        if agreement is None:
            msg = f"{where}: min_agreement= needs a classifier (scores, probabilities or labels)"
            raise ArgumentError(msg)
        if agreement < min_agreement:
            return (
                f"{where}: the int8 model agrees with the source on {agreement:.1%} of the "
                f"sample's rows, below min_agreement={min_agreement}"
            )
    return None

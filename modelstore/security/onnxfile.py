"""Find every tensor in an ONNX model that reads external data, wherever the format allows one.

ONNX puts tensors in many places: graph initializers and sparse initializers, node attributes
(``Constant``'s ``value`` and ``sparse_value``, any TENSOR, SPARSE_TENSOR, TENSORS or
SPARSE_TENSORS attribute), the graphs of ``If``/``Loop``/``Scan`` (any GRAPH or GRAPHS attribute,
nested to any depth), model-local functions (their nodes, and default attribute values), and
training-info graphs. onnxruntime reads external data for several of these; a checker that
looks at graph initializers only lets the rest read any file.

:func:`tensors` walks the protobuf message tree through its descriptors, so every field that
can hold a ``TensorProto`` is visited, now and in future versions of the format, without the
private helpers of the ``onnx`` package. ``scan`` and ``load`` both use :func:`external_refs`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The keys the ONNX spec defines for ``TensorProto.external_data``; anything else is refused
#: (onnx's Python loader turns every key into an attribute of its ExternalDataInfo).
EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})
#: The oldest onnx whose external-data handling the gated path relies on.
MIN_ONNX = (1, 21)
_TENSOR = "onnx.TensorProto"
_LABELS = {
    "onnx.GraphProto": "graph",
    "onnx.FunctionProto": "function",
    "onnx.NodeProto": "node",
    "onnx.AttributeProto": "attribute",
    "onnx.TrainingInfoProto": "training info",
}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
#: Operator domains onnxruntime implements itself; any other needs a custom-op library,
#: which modelstore never registers (nothing named by a file is loaded as native code).
ORT_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.ms.internal.nhwc",
        "org.pytorch.aten",
    }
)
#: (confined file or None, why not): the one confinement check, given by the caller.
Confine = Callable[[Path, str], "tuple[Path | None, str | None]"]


@dataclass(frozen=True)
class ExternalRef:
    """One tensor that asks for external data: where it is, its name and its raw entries."""

    where: str
    tensor: str
    entries: tuple[tuple[str, str], ...]
    marked_external: bool
    nbytes: int | None  # what its dims and type need, when the type has a fixed size

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.entries if k == key), None)


def _is_repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else bool(field.label == field.LABEL_REPEATED)


@functools.cache
def _tensor_fields(descriptor: Any) -> tuple[tuple[str, bool], ...]:
    """(field name, repeated) of the message fields through which ``descriptor`` can reach a
    TensorProto. The message types form cycles (graph -> node -> attribute -> graph), so
    reachability is a fixpoint over every type ``descriptor`` leads to."""
    closure: dict[str, Any] = {}
    stack = [descriptor]
    while stack:
        d = stack.pop()
        if d.full_name not in closure:
            closure[d.full_name] = d
            stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    reaching = {_TENSOR}
    changed = True
    while changed:
        changed = False
        for name, d in closure.items():
            if name not in reaching and any(
                f.message_type is not None and f.message_type.full_name in reaching
                for f in d.fields
            ):
                reaching.add(name)
                changed = True
    return tuple(
        (f.name, _is_repeated(f))
        for f in descriptor.fields
        if f.message_type is not None and f.message_type.full_name in reaching
    )


def tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Every TensorProto in ``model`` with a description of where it is."""
    stack: list[tuple[Any, str]] = [(model, "")]
    while stack:
        msg, where = stack.pop()
        desc = msg.DESCRIPTOR
        if desc.full_name == _TENSOR:
            yield where.strip(" >"), msg
            continue
        label = _LABELS.get(desc.full_name)
        if label is not None:
            name = getattr(msg, "name", "") or getattr(msg, "op_type", "")
            domain = getattr(msg, "domain", "") if label == "function" else ""
            where = f"{where} > {label} {domain + '.' if domain else ''}{name}".rstrip()
        for field, repeated in _tensor_fields(desc):
            at = f"{where} {field}" if field in _NAMED_FIELDS else where
            if repeated:
                stack.extend((item, at) for item in getattr(msg, field))
            elif msg.HasField(field):
                stack.append((getattr(msg, field), at))


_NAMED_FIELDS = frozenset(
    {"initializer", "sparse_initializer", "values", "indices", "training_info"}
)


def external_refs(model: Any) -> list[ExternalRef]:
    """Every tensor marked as external or carrying external-data entries."""
    out = []
    for where, t in tensors(model):
        if t.data_location == EXTERNAL or len(t.external_data):
            entries = tuple((e.key, e.value) for e in t.external_data)
            out.append(
                ExternalRef(
                    f"{where} ({t.name!r})" if t.name else where,
                    t.name,
                    entries,
                    t.data_location == EXTERNAL,
                    _nbytes(t),
                )
            )
    return out


def entry_problems(ref: ExternalRef) -> list[str]:
    """What is wrong with a reference's entries themselves (before its file is looked at)."""
    keys = [k for k, _ in ref.entries]
    problems = []
    if not ref.marked_external:
        problems.append("carries external-data entries but is not marked external (ambiguous)")
    unknown = sorted(set(keys) - EXTERNAL_KEYS)
    if unknown:
        problems.append(f"has unknown external-data keys {unknown}")
    if len(keys) != len(set(keys)):
        problems.append("repeats an external-data key")
    if not ref.get("location"):
        problems.append("is external but names no location")
    for key in ("offset", "length"):
        value = ref.get(key)
        if value is not None and not (value.isascii() and value.isdigit()):
            problems.append(f"has a malformed {key} {value[:40]!r}")
    return problems


def ref_problem(ref: ExternalRef, path: Path, confine: Confine) -> str | None:
    """Why the reference of the model at ``path`` is refused (its entries, its location as
    ``confine`` judges it, its offset and length against the file and its shape), or None."""
    bad = entry_problems(ref)
    if bad:
        return f"{ref.where} {bad[0]}"
    location = ref.get("location") or ""
    target, problem = confine(path, location)
    if target is None:
        return f"{ref.where} {problem}"
    size = target.stat().st_size
    offset = int(ref.get("offset") or 0)
    length_text = ref.get("length")
    length = int(length_text) if length_text is not None else ref.nbytes
    if length is not None and ref.nbytes is not None and length != ref.nbytes:
        return f"{ref.where} declares {length} bytes of external data, its shape needs {ref.nbytes}"
    if offset + (length or 0) > size:
        return f"{ref.where} reads bytes {offset}..{offset + (length or 0)} of the {size}-byte file {location}"
    return None


def custom_domains(proto: Any) -> list[str]:
    """Operator domains the model uses that onnxruntime does not implement (and that are not
    the model's own functions): running them would need a custom-op library."""
    local = {f.domain for f in proto.functions}
    used: set[str] = set()
    graphs: list[Any] = [proto.graph, *proto.functions]
    while graphs:
        g = graphs.pop()
        for node in g.node:
            used.add(node.domain)
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    return sorted(used - ORT_DOMAINS - local)


def _nbytes(t: Any) -> int | None:
    import onnx

    n = 1
    for d in t.dims:
        n *= int(d)
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    except (KeyError, ValueError, TypeError):
        return None
    if t.data_type in _PACKED_4BIT:
        return (n + 1) // 2
    return None if dtype.kind in "OSUV" else n * dtype.itemsize


_PACKED_4BIT = frozenset({21, 22, 23})  # UINT4, INT4, FLOAT4E2M1: two values per byte


def require_onnx(version: str) -> str | None:
    """Why this onnx is too old for the gated path, or None."""
    parts = [int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit()]
    if tuple(parts) < MIN_ONNX:
        want = ".".join(map(str, MIN_ONNX))
        return f'loading ONNX files safely needs onnx >= {want} (installed: {version}); run: pip install -U "onnx>={want}"'
    return None


#: What the sparse tensors of a graph may declare densely, in all: onnxruntime makes each one
#: dense when it builds the session (red team: three 1-value initializers of ~16k x 16k in a
#: 327-byte file took 4 GiB).
SPARSE_BYTES = 256 << 20
SPARSE_FACTOR = 64  # or this many times the file's size, if more
_SPARSE = "onnx.SparseTensorProto"


def sparse_problems(model: Any, size: int) -> list[tuple[str, str]]:
    """(subject, reason) when the sparse tensors of ``model`` (a file of ``size`` bytes)
    declare more dense bytes in all than :data:`SPARSE_BYTES` or :data:`SPARSE_FACTOR` times
    the file's size."""
    total, limit, first = 0, max(SPARSE_BYTES, SPARSE_FACTOR * size), ""
    stack = [model]
    while stack:
        msg = stack.pop()
        desc = msg.DESCRIPTOR
        if desc.full_name == _SPARSE:
            total += _count(msg.dims) * _itemsize(msg.values.data_type)
            first = first or (msg.values.name or "a sparse tensor")
            continue
        for field, repeated in _tensor_fields(desc):
            if repeated:
                stack.extend(getattr(msg, field))
            elif msg.HasField(field):
                stack.append(getattr(msg, field))
    if total > limit:
        return [
            (
                f"sparse:{first}",
                f"its sparse tensors declare {total:,} bytes when made dense (at most "
                f"{limit:,} are accepted): onnxruntime makes them dense when it loads the model",
            )
        ]
    return []


def _itemsize(data_type: int) -> int:
    """Bytes per value of an ONNX type as onnxruntime holds it (at least 1)."""
    import onnx

    try:
        return max(int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize), 1)
    except (KeyError, ValueError, TypeError):
        return 1


def _count(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= max(int(d), 0)
    return n

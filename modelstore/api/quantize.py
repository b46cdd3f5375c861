"""``ms.quantize``: an ONNX model to int8 with onnxruntime's quantizer, checked on a sample."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._info import ModelInfo
from ..errors import ArgumentError, ExportMismatchError, UnsafeModelError
from ..pipeline import choose, locate
from ..pipeline.read import renamed
from ..pipeline.registry import REGISTRY
from ..storage import remote
from ..storage.files import PathLike, atomic_paths, check_target, writer_lock
from ..storage.hashing import sha256_of
from .inspect import info_of
from .load import load

#: Words other quantizers use, and what to write here instead.
_HINTS = {
    "quant_format": "only dynamic quantization is offered (method='dynamic')",
    "calibration_data_reader": "static quantization is not offered; dynamic needs no calibration",
    "activation_type": "dynamic quantization picks activation scales at run time",
    "op_types_to_quantize": "use op_types=",
    "nodes_to_exclude": "use exclude_nodes=",
    "dtype": "use weight_type='int8' or 'uint8' (float16 comes from model.half() before export)",
}


def quantize(
    src: PathLike,
    dst: PathLike,
    *,
    method: str = "dynamic",
    weight_type: str = "int8",
    per_channel: bool = False,
    reduce_range: bool = False,
    op_types: list[str] | None = None,
    exclude_nodes: list[str] | None = None,
    sample_input: Any = None,
    max_abs_diff: float | None = None,
    min_agreement: float | None = None,
    overwrite: bool = True,
    storage_options: dict[str, Any] | None = None,
    **unknown: Any,
) -> ModelInfo:
    """Quantize an ONNX model's weights to 8-bit integers (onnxruntime's ``quantize_dynamic``).

    ``src`` goes through the same gate as :func:`load` (checksum, external data confined,
    ``onnx.checker``, onnxruntime builds a session); ``dst`` is written atomically and keeps
    ``src``'s labels, signature and metadata, plus a ``quantization`` record: the settings,
    ``src``'s sha256 and size, and the accuracy check. ``inspect(dst).metadata["quantization"]``
    shows it.

    Parameters
    ----------
    src, dst : ``.onnx`` files (local paths or URIs).
    method : ``"dynamic"`` (weights in int8, activations quantized at run time; no
        calibration data needed).
    weight_type : ``"int8"`` (default) or ``"uint8"``.
    per_channel : one scale per output channel (often more accurate for convolutions).
    reduce_range : 7-bit weights, for CPUs without VNNI where 8 bits can overflow.
    op_types, exclude_nodes : quantize only these operator types / leave these nodes in float.
    sample_input : a batch to run ``src`` and ``dst`` on: records the largest and mean absolute
        difference of every output and, for classifiers, the share of rows whose arg-max
        (or label) agrees.
    max_abs_diff, min_agreement : refuse (``ExportMismatchError``, ``dst`` left as it was)
        when the check on ``sample_input`` is beyond them.
    overwrite : False refuses an existing ``dst``.

    Raises
    ------
    ArgumentError : an unknown keyword or value, or ``src`` is not an ONNX file.
    UnsupportedModelError : nothing in the graph can be quantized, or the quantizer failed.
    ExportMismatchError : beyond ``max_abs_diff`` / ``min_agreement``.

    Examples
    --------
    >>> ms.export_onnx(net, "digits.onnx", sample_input=x[:8])
    >>> info = ms.quantize("digits.onnx", "digits.int8.onnx", sample_input=x_test)
    >>> info.metadata["quantization"]["accuracy"]["agreement"]
    0.994
    """
    _check_arguments(
        dst, unknown, method, weight_type, max_abs_diff, min_agreement, op_types, exclude_nodes
    )
    settings: dict[str, Any] = {
        "weight_type": weight_type,
        "per_channel": bool(per_channel),
        "reduce_range": bool(reduce_range),
        "op_types": list(op_types) if op_types else None,
        "exclude_nodes": list(exclude_nodes) if exclude_nodes else None,
    }
    checks: dict[str, Any] = {"sample_input": sample_input, "max_abs_diff": max_abs_diff}
    checks["min_agreement"] = min_agreement
    _check_thresholds_need_sample(dst, checks)
    src, src_uri = locate.split(src)
    if src_uri is not None:
        with (
            locate.fetched(src_uri, storage_options) as (local, shown),
            renamed(local.parent, remote.parent_uri(shown)),
        ):
            return quantize(
                local, dst, overwrite=overwrite, storage_options=storage_options,
                **settings, **checks,
            )  # fmt: skip
    dst, dst_uri = locate.split(dst)
    if dst_uri is not None:
        with locate.staged(dst_uri, overwrite, storage_options) as (staged, publish):
            info = quantize(src, staged, **settings, **checks)
            out: ModelInfo = publish(info)
        return out
    return _quantize_local(Path(os.fspath(src)), Path(os.fspath(dst)), overwrite, settings, checks)


def _quantize_local(
    src: Path, target: Path, overwrite: bool, settings: dict[str, Any], checks: dict[str, Any]
) -> ModelInfo:
    from ..formats.onnx import quantize as q
    from ..formats.onnx.files import embed_metadata

    check_target(target, overwrite)
    src_file = choose.model_file(src)
    backend = choose.for_file(src_file, None)
    onnx = REGISTRY.get("onnx")
    if backend.name != onnx.name:
        msg = (
            f"{src}: quantize takes an ONNX model, and this is a {backend.name} file; export "
            f"it first: ms.convert({str(src)!r}, 'model.onnx', sample_input=x) (a torch weights "
            f"file also needs model=YourClass), or ms.export_onnx(model, 'model.onnx', sample_input=x)"
        )
        raise ArgumentError(msg)
    q.require(src_file)
    source = load(src_file, format="onnx")  # the gate: checksum, confinement, checker, session
    proto = _checked_proto(src_file, onnx)
    meta = {k: v for k, v in dict(source.meta).items() if k != "checksum"}
    if isinstance(meta.get("onnx"), dict):  # the float export's parity is not this file's
        meta["onnx"] = {k: v for k, v in meta["onnx"].items() if k != "parity"}
    meta["format"] = onnx.name
    with writer_lock(target), atomic_paths(target) as (tmp,):
        record = q.quantize_dynamic(proto, tmp, where=src, **settings)
        record["source_sha256"] = sha256_of(src_file)
        record["source_size_bytes"] = src_file.stat().st_size
        if checks["sample_input"] is not None:
            result = q.accuracy(source, q.session_of(tmp, target, meta), checks["sample_input"])
            record["accuracy"] = result
            problem = q.check_thresholds(
                target, result, checks["max_abs_diff"], checks["min_agreement"]
            )
            if problem:
                raise ExportMismatchError(
                    problem + "; quantize fewer operators (op_types=, exclude_nodes=), try "
                    "per_channel=True, or keep the float model"
                )
        meta["quantization"] = record
        embed_metadata(tmp, meta)
    return info_of(target, onnx)


def _checked_proto(path: Path, onnx: Any) -> Any:
    """The graph to quantize, from one read of the file: its external data confined and its
    recorded checksum (if any) matching these very bytes, as the load just checked."""
    from ..formats.onnx.files import CHECKSUM_KEY, external_data_problems, proto_checksum
    from ..security.onnxfile import external_refs
    from ..storage.hashing import check_checksum

    proto = onnx._proto(path, path.read_bytes())
    problems = external_data_problems(proto, path)
    if problems:
        reasons = "; ".join(reason for _, reason in problems[:5])
        raise UnsafeModelError(f"{path}: refusing to quantize: {reasons}", [s for s, _ in problems])
    expected = {p.key: p.value for p in proto.metadata_props}.get(CHECKSUM_KEY)
    if expected is not None:
        check_checksum(path, expected, proto_checksum(proto, path.parent), "its metadata_props")
    if external_refs(proto):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(proto, str(path.parent))
    return proto


def _check_arguments(
    dst: Any,
    unknown: dict[str, Any],
    method: str,
    weight_type: str,
    max_abs_diff: float | None,
    min_agreement: float | None,
    op_types: Any,
    exclude_nodes: Any,
) -> None:
    from ..formats.onnx.quantize import METHODS, WEIGHT_TYPES

    if unknown:
        valid = (
            "method=, weight_type=, per_channel=, reduce_range=, op_types=, exclude_nodes=, "
            "sample_input=, max_abs_diff=, min_agreement=, overwrite=, storage_options="
        )
        hints = "; ".join(f"{k}=: {_HINTS[k]}" for k in sorted(unknown) if k in _HINTS)
        msg = (
            f"{dst}: quantize got unknown option(s) {', '.join(k + '=' for k in sorted(unknown))}; "
            f"it takes {valid}"
        )
        raise ArgumentError(msg + (f" ({hints})" if hints else ""))
    if method not in METHODS:
        msg = (
            f"{dst}: method={method!r} is not offered; use method='dynamic' (onnxruntime's "
            f"quantize_dynamic: int8 weights, no calibration data)"
        )
        raise ArgumentError(msg)
    if weight_type not in WEIGHT_TYPES:
        msg = f"{dst}: weight_type={weight_type!r}; use one of {', '.join(map(repr, WEIGHT_TYPES))}"
        raise ArgumentError(msg)
    for name, value in (("op_types", op_types), ("exclude_nodes", exclude_nodes)):
        if value is not None and (
            isinstance(value, str) or not all(isinstance(v, str) for v in value)
        ):
            raise ArgumentError(f"{dst}: {name}= takes a list of names, not {value!r}")
    if max_abs_diff is not None and not (
        isinstance(max_abs_diff, (int, float)) and max_abs_diff >= 0
    ):
        raise ArgumentError(f"{dst}: max_abs_diff= must be a number >= 0, not {max_abs_diff!r}")
    if min_agreement is not None and not (
        isinstance(min_agreement, (int, float)) and 0 <= min_agreement <= 1
    ):
        raise ArgumentError(f"{dst}: min_agreement= must be between 0 and 1, not {min_agreement!r}")


def _check_thresholds_need_sample(dst: Any, checks: dict[str, Any]) -> None:
    if checks["sample_input"] is None and (
        checks["max_abs_diff"] is not None or checks["min_agreement"] is not None
    ):
        msg = f"{dst}: max_abs_diff= and min_agreement= judge the check on sample_input=; pass one"
        raise ArgumentError(msg)

"""ONNX files, run with onnxruntime; no torch or TensorFlow needed.

``ms.load("x.onnx")`` returns an :class:`OnnxModel` around an ``InferenceSession``.
modelstore's metadata lives in the model's own ``metadata_props``. Every tensor that reads
external data, wherever it sits (initializers, sparse initializers, ``Constant`` and other
tensor attributes, ``If``/``Loop``/``Scan`` bodies, model-local functions), is found by one
walker (``security.onnxfile``) in ``scan`` and ``load`` alike, and each location goes through
one confinement check (:func:`_confined_external`): inside the model's folder, no ``..``,
absolute paths, links leading out or hard links, a regular file, offsets and lengths inside
it, only the keys the spec defines. ``load`` runs onnxruntime on the very bytes it checked,
and never registers a custom-op library: operators of unknown domains cannot run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._info import Finding, ScanReport
from ...errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    MissingDependencyError,
    UnsafeModelError,
)
from ...security import jsonsafe, unreadable
from ...security.onnxfile import custom_domains, external_refs, require_onnx, sparse_problems
from ...storage.hashing import check_checksum
from ...storage.remote import scratch
from ..base import Backend, Exported, Inspection, LoadRequest, PredictRequest
from . import run as _run
from .classes import class_list
from .files import (  # re-exported
    CHECKSUM_KEY as CHECKSUM_KEY,
)
from .files import (
    META_KEY as META_KEY,
)
from .files import (
    _plain_name as _plain_name,
)
from .files import (
    embed_metadata as embed_metadata,
)
from .files import (
    external_data_problems as external_data_problems,
)
from .files import (
    proto_checksum as proto_checksum,
)
from .files import (
    remove_stale_external_data as remove_stale_external_data,
)
from .files import (
    rename_external_data as rename_external_data,
)
from .graphinfo import recorded as _recorded
from .graphinfo import tensor_info as _tensor_info
from .graphinfo import value_info as _value_info
from .session import copy_external, new_session

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(string)": "str",
}


class OnnxModel:
    """A loaded ONNX model: an onnxruntime session plus what modelstore knows about it.

    Call it like a function (``model(x)``) or use ``ms.predict(model, x)``.
    """

    def __init__(
        self,
        path: Path,
        session: Any,
        meta: dict[str, Any] | None,
        classes: list[Any] | None = None,
    ) -> None:
        self.path = path
        #: a classifier's classes in column order, as the graph records them (skl2onnx)
        self.classes = classes
        self.session = session
        self.meta = meta or {}
        self.inputs = session.get_inputs()
        self.outputs = session.get_outputs()
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]
        self._float_inputs = {i.name: _ORT_TYPES.get(i.type) for i in self.inputs}
        self.labels: list[Any] | None = self.meta.get("labels")
        self.providers: list[str] = session.get_providers()
        self._run = session.run
        np = __import__("numpy")  # onnxruntime imported it already
        self._ndarray = np.ndarray
        single = self.inputs[0] if len(self.inputs) == 1 else None
        want = _ORT_TYPES.get(single.type) if single is not None else None
        # (input name, the numpy dtype it takes) for the one-array fast path
        self._single = (
            (single.name, np.dtype(want))
            if single is not None and want not in (None, "str")
            else None
        )

    def __repr__(self) -> str:
        return f"<OnnxModel {self.path.name} inputs={self.input_names} outputs={self.output_names} {self.providers}>"

    def feed(self, inputs: Any) -> dict[str, Any]:
        """Map inputs (an array, a tuple in input order, or a dict by name) to a feed dict."""
        import numpy as np

        if isinstance(inputs, dict):
            items = dict(inputs)
            missing = [n for n in self.input_names if n not in items]
            if missing:
                raise ArgumentError(
                    f"{self.path}: inputs lack {missing}; the model takes {self.input_names}"
                )
        elif isinstance(inputs, tuple) and len(self.input_names) > 1:
            items = dict(zip(self.input_names, inputs))
        elif len(self.input_names) == 1:
            items = {self.input_names[0]: inputs}
        else:
            raise ArgumentError(
                f"{self.path}: the model takes several inputs {self.input_names}: pass a dict"
            )
        feed = {}
        for name, value in items.items():
            try:
                arr = value if type(value) is np.ndarray else np.asarray(value)
            except ValueError as e:
                raise ArgumentError(
                    f"{self.path}: input {name!r} is not rectangular: {e}"
                ) from None
            want = self._float_inputs.get(name)
            if arr.ndim == 0 or (want not in (None, "str") and arr.dtype.kind not in "biuf"):
                msg = f"{self.path}: input {name!r} must be an array of numbers, got {arr.dtype} with shape {arr.shape}"
                raise ArgumentError(msg)
            if want is not None and arr.dtype.name != want and arr.dtype.kind in "biuf":
                arr = arr.astype(want)
            feed[name] = arr
        return feed

    def __modelstore_predict__(self, inputs: Any) -> Any:
        """``ms.predict(model, x)`` with default options: one array in, first output out."""
        single = self._single
        if single is not None and type(inputs) is self._ndarray and inputs.dtype is single[1]:
            try:
                return self._run(None, {single[0]: inputs})[0]
            except Exception:
                pass  # fall through to the full path, which explains the problem
        return _run.predict(self, inputs, PredictRequest())

    def run(self, inputs: Any) -> list[Any]:
        out: list[Any] = self.session.run(None, self.feed(inputs))
        return out

    def __call__(self, inputs: Any) -> Any:
        return self.run(inputs)[0]


@dataclass(frozen=True)
class LoadOptions:
    """``providers``: onnxruntime execution providers to use instead of those ``device=`` picks."""

    providers: list[Any] | None = None


class OnnxBackend(Backend):
    """ONNX models run by onnxruntime (CPU by default, CUDA with device="cuda").

    ``save(model, "m.onnx", sample_input=x)`` exports a torch, scikit-learn or Keras model
    (this backend is an export target: ``exports_to``), checked for parity with onnxruntime.
    """

    name = "onnx"
    framework = "onnx"
    suffixes = (".onnx",)
    risk = "restricted"  # no Python runs, but external data could reach outside the folder
    extra = "onnx"
    requires = ("onnx", "onnxruntime")
    embeds_metadata = True
    exports_to = True
    LoadOptions = LoadOptions

    def companions(self, path: Path) -> list[str]:
        """The external data files the graph names (only plain names in its own folder: the
        load refuses anything else anyway)."""
        try:
            proto = self._proto(path)
        except (FormatError, MissingDependencyError):  # the load reports it
            return []
        names = {ref.get("location") or "" for ref in external_refs(proto)}
        return sorted(n for n in names if _plain_name(n) is not None and not n.startswith("."))

    def sniff(self, path: Path, head: bytes) -> bool:
        # a ModelProto starts with field 1 (ir_version, a small varint)
        return (
            len(head) > 4
            and head[0] == 0x08
            and 3 <= head[1] <= 15
            and head[2] in (0x12, 0x1A, 0x22, 0x3A)
        )

    def can_predict(self, obj: Any) -> bool:
        return isinstance(obj, OnnxModel)

    # -- reading the proto ----------------------------------------------------------------
    def _proto(self, path: Path, data: bytes | None = None) -> Any:
        import onnx

        problem = require_onnx(onnx.__version__)
        if problem:
            raise MissingDependencyError(f"{path}: {problem}", name="onnx")
        try:
            if data is not None:
                return onnx.load_model_from_string(data)
            return onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends
            raise FormatError(
                f"{path}: not a readable ONNX model ({type(e).__name__}: {e})"
            ) from None

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        props = {p.key: p.value for p in self._proto(path).metadata_props}
        if META_KEY not in props:
            return None
        meta = jsonsafe.loads(props[META_KEY], where=f"{path} (modelstore's metadata_props entry)")
        if not isinstance(meta, dict):
            return None
        if CHECKSUM_KEY in props:
            meta["checksum"] = props[CHECKSUM_KEY]
        return meta

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        expected = meta.get("checksum")
        if not isinstance(expected, str):
            return
        proto = self._proto(path)
        if external_refs(proto):  # checked by the load, through the descriptors it copies the
            return  # data from (session.copy_external): hashed once, and what is loaded
        check_checksum(path, expected, proto_checksum(proto, path.parent), "its metadata_props")

    def scan(self, path: Path) -> ScanReport:
        try:
            proto = self._proto(path)
        except FormatError as e:
            return unreadable(path, self.name, "format", str(e), subject="model")
        size = path.stat().st_size
        findings = [
            Finding(subject, "critical", reason)
            for subject, reason in [
                *external_data_problems(proto, path),
                *sparse_problems(proto, size),
            ]
        ]
        return ScanReport(str(path), self.name, "unsafe" if findings else "safe", findings)

    def load(self, path: Path, request: LoadRequest) -> Any:
        import onnxruntime as ort

        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; an ONNX file holds the whole graph"
            )
        providers = request.options.providers or _run.providers_for(request.device, ort, path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise FormatError(f"{path}: the model cannot be read ({e.strerror})") from None
        proto = self._proto(path, data)
        # the same walk and confinement as scan, on the bytes onnxruntime will run; confinement
        # holds whatever trust says (trust is about code, and an ONNX file runs none)
        problems = external_data_problems(proto, path)
        if problems:
            subjects = [subject for subject, _ in problems]
            reasons = "; ".join(reason for _, reason in problems[:5])
            raise UnsafeModelError(
                f"{path}: refusing to load: {reasons}. Keep external data as regular "
                f"files beside the model",
                subjects,
            )
        trusted = request.trust if isinstance(request.trust, list) else []
        for subject, reason in sparse_problems(proto, len(data)):
            if request.trust is not True and subject not in trusted:  # (as the scan's gate)
                raise UnsafeModelError(f"{path}: refusing to load: {reason}", [subject])
        refs = external_refs(proto)
        locations = sorted({ref.get("location") or "" for ref in refs})
        external = bool(locations)
        if external and request.pinned:  # (red team: the pin held while the data changed)
            raise IntegrityError(
                f"{path}: sha256= pins the graph, but its weights are external data "
                f"({', '.join(locations[:3])}) the graph records no sha256 of, so the pin cannot "
                f"cover them; load it without sha256=, or save it with the weights inside"
            )
        domains = custom_domains(proto)
        classes = class_list(proto)
        with contextlib.ExitStack() as stack:
            folder = path.parent
            if external:  # onnxruntime and the checker read private copies (below)
                folder = stack.enter_context(scratch("onnx"))
                copy_external(path, data, refs, folder, proto, request)
            del proto
            session = new_session(path, data, folder if external else None, ort, providers, domains)
            return OnnxModel(path, session, request.meta, classes)

    def inspect(self, path: Path) -> Inspection:
        proto = self._proto(path)
        g = proto.graph
        init_names = {t.name for t in g.initializer}
        details: dict[str, Any] = {
            "inputs": [_value_info(v) for v in g.input if v.name not in init_names],
            "outputs": [_value_info(v) for v in g.output],
            "opset": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "ir_version": proto.ir_version,
            "initializers": len(g.initializer),
            "nodes": len(g.node),
        }
        props = {
            p.key: p.value for p in proto.metadata_props if p.key not in (META_KEY, CHECKSUM_KEY)
        }
        if props:
            details["metadata_props"] = props
        domains = custom_domains(proto)
        if domains:
            details["custom_domains"] = domains
        tensors = [_tensor_info(t) for t in g.initializer]
        problems = external_data_problems(proto, path)
        meta = self.read_meta(path)
        details.update(_recorded(meta))
        return Inspection(
            framework="onnx",
            tensors=tensors,
            num_params=sum(t.numel for t in tensors),
            meta=meta,
            extra_metadata=details,
            executes_code=False,
            globals=[s for s, _ in problems],
            labels=class_list(proto),
        )

    # -- as an export target ------------------------------------------------------------
    def finish_export(
        self,
        tmp: Path,
        target: Path,
        exported: Exported,
        sample: Any,
        meta: dict[str, Any],
        check: dict[str, Any] | None,
    ) -> list[Path]:
        """Check parity with onnxruntime (``check``: dynamic_batch, rtol, atol), give the
        external data names of their own beside ``target`` and embed the metadata."""
        import onnx
        import onnxruntime

        from .export import check_parity

        parity = (
            check_parity(
                tmp, exported, sample, check["dynamic_batch"], check["rtol"], check["atol"]
            )
            if check is not None
            else None
        )
        moved = rename_external_data(tmp, target)  # unique names: the old pair stays whole
        meta["format"] = self.name
        meta["onnx"] = {
            "exporter": exported.exporter,
            "exporter_version": exported.exporter_version,
            "opset": exported.opset,
            "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "parity": parity,
            **meta.pop("onnx_source", {}),
            **exported.extra,
        }
        embed_metadata(tmp, meta)
        return moved

    def after_commit(self, target: Path) -> None:
        remove_stale_external_data(target)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        return _run.predict(model, inputs, request)

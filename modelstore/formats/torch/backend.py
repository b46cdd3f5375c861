"""PyTorch's own ``torch.save`` files (``.pt``, ``.pth``): state dicts and training checkpoints.

These files are pickles. The front door scans them against the tensor allow-list before
``torch.load`` sees them, and ``torch.load`` then runs with ``weights_only=True`` as a second
line of defence; only ``trust=True`` lifts both. Metadata lives in ``PATH.modelstore.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._gc import MAX_BYTES, MAX_PICKLE_BYTES, paused
from ..._info import Finding, ScanReport
from ...errors import (
    ArchitectureMismatchError,
    ArgumentError,
    FormatError,
    IntegrityError,
    UnsupportedModelError,
)
from ...security import FOREIGN, classify, enforce, unreadable
from ...security.policy import TORCH_POLICY
from ...security.torchfile import (
    LEGACY_PREFIX,
    TorchFileError,
    TorchPickles,
    is_torch_zip,
    read_pickles,
    small_archive,
)
from ...security.torchrecords import plain_value, tensor_records
from ...storage.hashing import PendingDigest, hash_file_later
from ..base import Backend, Inspection, LoadRequest, PredictRequest
from . import binshards as _bin
from . import common as _torch
from . import dtype as _dtype
from . import embedded as _embedded
from . import hf as _hf
from . import quantized as _quantized
from .fastload import NOT_PLAIN, RepeatBudget, refuse_repeats
from .fastload import build as build_plain
from .predict import predict as _predict
from .predict import predict_raw as _predict_raw
from .rawload import torch_load

#: Keys under which training checkpoints usually keep the model's weights.
CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict", "module")


class TorchBackend(Backend):
    """``torch.save`` zip archives (and legacy streams): weights and checkpoints."""

    name = "torch"
    framework = "torch"
    suffixes = (".pt", ".pth", _bin.BIN_INDEX)  # a .bin is recognised by its content
    risk = "pickle"
    extra = "torch"
    requires = ("torch",)
    reads_one_file = True
    embeds_metadata = False
    casts = True
    SaveOptions = _dtype.SaveOptions
    LoadOptions = _dtype.LoadOptions

    def single_file(self, path: Path) -> bool:
        # a Hugging Face folder's weights are read with the config.json beside them
        return not _bin.is_index(path) and not _hf.config_companion(path)

    def entry_file(self, names: list[str]) -> str | None:
        return _bin.entry_file(names)

    def companions(self, path: Path) -> list[str]:
        shards = _bin.read_index(path).shards if _bin.is_index(path) else []
        return shards + _hf.config_companion(path)

    def optional_companions(self, path: Path) -> list[str]:
        return _hf.optional_config(path)

    def sniff(self, path: Path, head: bytes) -> bool:
        if head.startswith(LEGACY_PREFIX):
            return True
        return head.startswith(b"PK\x03\x04") and is_torch_zip(path)

    def accepts(self, path: Path, head: bytes) -> bool:
        if _bin.is_index(path):
            return head[:1] == b"{"
        # torch.load unpickles any non-zip file, so a .pt holding a plain pickle is ours to gate
        return self.sniff(path, head) or (len(head) > 1 and head[0] == 0x80)

    def can_save(self, obj: Any) -> bool:
        return _torch.is_module(obj) or (isinstance(obj, dict) and _torch.contains_tensor(obj))

    def can_predict(self, obj: Any) -> bool:
        return _torch.is_module(obj)

    def describe(self, obj: Any) -> dict[str, Any]:
        return _torch.describe(obj)

    def object_hint(self, obj: Any) -> str | None:
        return _torch.training_state_hint(obj)

    def save_hint(self, obj: Any) -> str:
        return _torch.training_state_hint(obj) or "it holds torch modules and dicts with tensors"

    def pickle_advice(self, obj: Any) -> str:
        if _torch.is_module(obj) or _torch.is_state_dict(obj):
            return (
                "torch weights can go to safetensors, which stores no code: "
                "ms.save(weights, 'model.safetensors')"
            )
        return (
            "a training checkpoint (optimizer state, epoch) is inherently a pickle: keep it "
            "for resuming, and share the weights as safetensors"
        )

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | PendingDigest | None:
        import torch

        _quantized.refuse_unsavable(obj, target, self.name)
        if _quantized.is_quantized(obj):
            if options.dtype is not None:
                msg = f"{target}: dtype= casts float weights, and this model is already quantized"
                raise ArgumentError(msg)
            if _torch.is_module(obj):
                meta["quantized"] = _quantized.describe(obj)
        if options.dtype is not None:
            obj = _dtype.cast_for_save(obj, options.dtype, meta, target)
        payload = obj.state_dict() if _torch.is_module(obj) else obj
        with open(tmp, "wb") as f:  # a file object keeps the archive's inner name neutral
            torch.save(payload, f)
        _embedded.write_record(tmp, meta)  # the file alone keeps its metadata
        report = self.scan(tmp)
        if report.untrusted:
            msg = (
                f"this checkpoint holds {', '.join(report.untrusted)}, so loading it would need "
                f"trust=[...]: keep checkpoints to tensors and plain Python values "
                f"(e.g. float(x) instead of a numpy scalar)"
            )
            raise UnsupportedModelError(msg)
        return hash_file_later(tmp)  # the sha256 off the save's critical path

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """The metadata record ``ms.save`` puts inside the archive (used without a sidecar)."""
        if _bin.is_index(path):
            return None
        meta = _embedded.read_record(path)
        return None if meta is None else {k: v for k, v in meta.items() if k != "data_checksum"}

    def intact(self, path: Path) -> dict[str, Any] | None:
        return None if _bin.is_index(path) else _embedded.intact(path)

    #: ``load`` scans the file itself (the gate leaves it to it) and builds plain state
    #: dicts and checkpoints from that one scan (:mod:`.fastload`); anything else it hands to
    #: ``torch.load(weights_only=True)`` after the same scan
    checks_while_loading = True

    def scan(self, path: Path) -> ScanReport:
        if _bin.is_index(path):
            return _bin.scan(path)
        # the whole read, the collector paused for a small archive (see ..._gc)
        return paused(small_archive(path, MAX_BYTES, MAX_PICKLE_BYTES), self._scanned, path)[0]

    def _scanned(self, path: Path) -> tuple[ScanReport, TorchPickles | None]:
        try:
            pickles = read_pickles(path)
        except TorchFileError as e:
            if e.kind == "torchscript":
                finding = Finding(FOREIGN, "critical", str(e))
                return ScanReport(str(path), self.name, "unsafe", [finding]), None
            return unreadable(path, self.name, e.kind, str(e), subject="archive"), None
        report = classify(path, self.name, pickles.streams.items(), TORCH_POLICY.entry)
        return report, pickles

    def load(self, path: Path, request: LoadRequest) -> Any:
        _torch.check_device(request.device, path)
        hf_config = _hf.config_for(path, request)
        if hf_config is not None:
            request.config = hf_config
        if _bin.is_index(path):
            if request.trust is not True:
                enforce(_bin.scan(path), request.trust)  # the gate left the scan to us
            budget = RepeatBudget(path)  # (one for all the shards)
            sd = _bin.load(
                path,
                request.trust,
                lambda shard: _checked(torch_load(shard, request), request, budget),
                request.pinned,
            )
            return _torch.build_module(_hf.base_model_keys(sd, request), request, path)
        obj = NOT_PLAIN
        if request.trust is not True:
            import torch  # noqa: F401 - imported before the pause, not during it (red team)

            # the scan and the build, the collector paused for a small archive: the scan's
            # objects die by reference count before a collection ever walks them (see ..._gc)
            obj = paused(
                small_archive(path, MAX_BYTES, MAX_PICKLE_BYTES),
                self._scan_and_build,
                path,
                request,
            )
        if obj is NOT_PLAIN:
            obj = torch_load(path, request)
            if request.trust is not True:
                refuse_repeats(obj, path)
        return self._built(path, request, obj)

    def _scan_and_build(self, path: Path, request: LoadRequest) -> Any:
        report, pickles = self._scanned(path)
        enforce(report, request.trust)  # the gate left the scan to us
        return NOT_PLAIN if pickles is None else build_plain(path, pickles, request.device)

    def _built(self, path: Path, request: LoadRequest, obj: Any) -> Any:
        if _torch.is_module(obj):
            _dtype.cast_module(obj, request.options.dtype)
            obj.eval()
            return obj
        if request.model is None:
            recorded = (request.meta or {}).get("model_class")
            if request.trust is True and recorded and _torch.is_state_dict(obj):
                return _torch.build_module(dict(obj), request, path)
            # a state dict (in the dtypes it was saved from) or a whole checkpoint, as saved
            return _dtype.for_load_object(obj, request.meta, request.options.dtype, path)
        sd = _weights_of(obj)
        quantized = _quantized_weights(obj) if sd is None else None
        if quantized is not None:  # a dynamically quantized model's state dict
            config = dict(request.config or (request.meta or {}).get("config") or {})
            module = _quantized.build(quantized, request.model, config, path)
            _quantized.load_into(module, quantized, request.strict, path)
            return module.to(request.device or "cpu").eval()
        if sd is None:
            keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
            msg = (
                f"{path}: model= was given but the file holds no state dict under "
                f"{', '.join(CHECKPOINT_KEYS)} (it holds {keys}); load it without model= and "
                f"pick the weights yourself"
            )
            raise ArchitectureMismatchError(msg)
        return _torch.build_module(_hf.base_model_keys(sd, request), request, path)

    def inspect(self, path: Path) -> Inspection:
        # the whole read, the collector paused for a small archive (see ..._gc)
        found = paused(small_archive(path, MAX_BYTES, MAX_PICKLE_BYTES), self._inspect, path)
        _hf.describe(path, found)
        return found

    def _inspect(self, path: Path) -> Inspection:
        if _bin.is_index(path):
            tensors, num, globals_, size = _bin.inspect(path)
            return Inspection(
                framework="torch",
                tensors=tensors,
                num_params=num,
                globals=globals_,
                executes_code=True,
                size_bytes=size,
            )
        try:
            pickles = read_pickles(path)
        except TorchFileError as e:
            cls = IntegrityError if e.truncated else FormatError
            if e.kind == "torchscript":
                raise FormatError(f"{path}: {e}") from None
            raise cls(f"{path}: not a readable torch.save file: {e}") from None
        main = pickles.main
        if main is None or main.error:
            why = main.error if main else "no object pickle"
            raise FormatError(f"{path}: the torch file's pickle cannot be read statically ({why})")
        # two walks of the symbolic result, the collector paused for a small pickle (see
        # ..._gc; a no-op under the pause of the whole read above)
        records, top = paused(main.end <= MAX_PICKLE_BYTES, _walks, main.result)
        storage_seen: set[tuple[Any, ...]] = set()
        num = 0
        for info, ident in records:
            if ident not in storage_seen:
                storage_seen.add(ident)
                num += info.numel
        globals_ = [g for rep in pickles.streams.values() for g in rep.globals]
        extra = (
            {k: v for k, v in top.items() if isinstance(v, (int, float, str, bool))}
            if isinstance(top, dict)
            else {}
        )
        return Inspection(
            framework="torch",
            tensors=[r[0] for r in records],
            num_params=num,
            extra_metadata=extra,
            globals=list(dict.fromkeys(globals_)),
            executes_code=True,  # unpickling calls whatever the stream names (DESIGN section 2)
        )

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Any:
        from ..onnx.export import export_torch

        return export_torch(model, path, sample_input, opset, dynamic_batch)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        return _predict(model, inputs, request)

    def predict_raw(self, model: Any, inputs: Any) -> Any:
        return _predict_raw(model, inputs)


def _checked(obj: Any, request: LoadRequest, budget: RepeatBudget) -> Any:
    """A shard's state dict, refused if its views repeat data past the model's budget."""
    if request.trust is not True:
        refuse_repeats(obj, budget.path, budget)
    return obj


def _walks(result: Any) -> tuple[list[tuple[Any, tuple[Any, ...]]], Any]:
    return tensor_records(result), plain_value(result)


def _weights_of(obj: Any) -> dict[str, Any] | None:
    if _torch.is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if _torch.is_state_dict(obj.get(key)):
                return dict(obj[key])
    return None


def _quantized_weights(obj: Any) -> dict[str, Any] | None:
    """A quantized state dict, at the top or under a checkpoint key."""
    for candidate in (obj, *(obj.get(k) for k in CHECKPOINT_KEYS if isinstance(obj, dict))):
        if isinstance(candidate, dict) and _quantized.is_quantized(candidate):
            return candidate  # as loaded: torch's per-module versions ride along (_metadata)
    return None

"""Keras models: ``.keras`` archives (default), legacy ``.h5`` full models, ``.weights.h5``.

TensorFlow/Keras are imported only inside ``write``, ``load`` and ``predict``; ``inspect`` and
``scan`` read the zip, the JSON config and the HDF5 data with ``h5py`` alone. The front door's
gate refuses a file whose container or config the audit (``security.kerasfile``) does not
accept; ``load`` audits again and keeps Keras' safe mode on unless every finding that needs it
off (Lambda bytecode, TFSMLayer) is named in ``trust=[...]``, so a trust list widens exactly
what it names. modelstore's metadata is a ``modelstore.json`` entry appended to the ``.keras``
archive, or HDF5 attributes of ``.h5`` files.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

from ... import _warn
from ..._info import ScanReport
from ...errors import (
    ArgumentError,
    FormatError,
    ModelstoreError,
)
from ...security import enforce, jsonsafe, unreadable
from ...security.kerasaudit import Audit
from ...security.kerasfile import (
    KerasFileError,
    audit_configs,
    audit_file,
    check,
    check_zip,
    kind_of,
    layer_table,
    open_h5,
    read_config,
    read_configs,
    weights,
)
from ...storage.files import read_head
from ...storage.hashing import check_checksum
from ..base import (
    Backend,
    Inspection,
    LoadRequest,
    PredictRequest,
    attached,
    is_instance_of,
)
from ..shapes import expected_shapes, fit_hint
from .files import (
    _COVERS,
    META_ATTR,
    META_ENTRY,
    _embed_h5,
    _embed_zip,
    _h5_checksum,
    _with_suffix,
    _zip_checksum,
)
from .loading import (
    EarlyBuild,
    _load_error,
    _load_weights,
    _pinned_safe_mode,
    _require_keras,
    _safe_mode_for,
)
from .predict import ONE_BATCH, finish, first_reason, input_names, one_array, prepare, run_batches
from .predict import last_activation as _last_activation
from .reuse import from_early
from .reuse_h5 import check_build, from_build

_SUFFIX = {"weights": ".weights.h5", "h5": ".h5", "keras": ".keras"}


def _mode_for(name: str) -> str:
    name = name.lower()
    if name.endswith(".weights.h5"):
        return "weights"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    return "keras"


class KerasBackend(Backend):
    """Keras 3 models and weights; safe_mode on unless trusted."""

    name = "keras"
    framework = "keras"
    suffixes = (".keras", ".h5", ".hdf5", ".weights.h5")
    risk = "restricted"
    #: ``load`` runs the scan itself, before anything is deserialised (see ``load``)
    checks_while_loading = True
    extra = "keras"
    requires = ("keras", "h5py")
    embeds_metadata = True

    def sniff(self, path: Path, head: bytes) -> bool:
        return kind_of(path, head) is not None

    def single_file(self, path: Path) -> bool:
        # a .keras archive or a full-model .h5 is one file: every step, Keras' own open
        # included, reads the descriptor the pipeline holds (a path renamed over between the
        # checks and Keras' open would hand Keras a file nothing checked); .weights.h5 is told
        # apart by its name, which a descriptor's path does not keep
        return not path.name.lower().endswith(".weights.h5")

    def can_save(self, obj: Any) -> bool:
        return is_instance_of(obj, "keras", "Model")

    def can_predict(self, obj: Any) -> bool:
        return self.can_save(obj)

    def save_hint(self, obj: Any) -> str:
        return "it holds Keras models"

    def describe(self, obj: Any) -> dict[str, Any]:
        import keras

        return {
            "framework": "keras",
            "framework_version": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }

    # -- write ---------------------------------------------------------------------------
    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        mode = _mode_for(target.name)
        kpath = tmp.with_name(tmp.name + _SUFFIX[mode])  # Keras insists on the suffix
        try:
            if mode == "weights":
                obj.save_weights(kpath)
            else:
                obj.save(kpath)
            if mode == "keras":
                _embed_zip(kpath, meta)
            else:
                _embed_h5(kpath, meta)
            os.replace(kpath, tmp)
        finally:
            kpath.unlink(missing_ok=True)
        if mode == "h5" and re.search(r"weights?$", target.stem, re.IGNORECASE):
            base = re.sub(r"[_.-]*weights?$", "", target.stem, flags=re.IGNORECASE) or "model"
            _warn.warn(
                f"{target}: a full model (architecture and weights) was written; Keras writes "
                f"weights only to names ending in .weights.h5, such as {base}.weights.h5",
                UserWarning,
            )
        return None

    # -- read ----------------------------------------------------------------------------
    def _kind(self, path: Path) -> str:
        kind = kind_of(path, read_head(path))
        if kind is None:
            raise FormatError(f"{path}: not a Keras file (neither a .keras archive nor HDF5)")
        return kind

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        kind = self._kind(path)
        where = f"{path} (modelstore's metadata)"
        try:
            if kind == "keras":
                if META_ENTRY not in {i.filename for i in check_zip(path)}:
                    return None
                with zipfile.ZipFile(path) as zf:
                    meta = jsonsafe.loads(zf.read(META_ENTRY), where=where)
            else:
                with open_h5(path, kind) as f:
                    raw = f.attrs.get(META_ATTR)
                    if raw is None:
                        return None
                    meta = jsonsafe.loads(raw if isinstance(raw, bytes) else str(raw), where=where)
        except KerasFileError as e:
            if e.kind == "suspicious":
                return None  # the gate's scan refuses the file with the reason
            raise FormatError(f"{path}: {e}") from None
        except (zipfile.BadZipFile, KeyError, OSError):
            raise FormatError(
                f"{path}: modelstore's metadata in the file is not readable"
            ) from None
        return meta if isinstance(meta, dict) else None

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        expected = meta.get("checksum")
        if not isinstance(expected, str):
            return
        kind = self._kind(path)
        if kind == "keras":
            try:
                with zipfile.ZipFile(path) as zf:
                    actual = _zip_checksum(
                        path, zf, directory=meta.get("checksum_covers") == _COVERS
                    )
            except (zipfile.BadZipFile, KeyError, OSError):
                raise FormatError(f"{path}: the archive changed while it was read") from None
        else:
            with open_h5(path, kind) as f:
                actual = _h5_checksum(f)
        check_checksum(path, expected, actual, "the file")

    def scan(self, path: Path) -> ScanReport:
        return self._scan(path)[0]

    def _scan(
        self, path: Path, meanwhile: EarlyBuild | None = None
    ) -> tuple[ScanReport, list[tuple[str, dict[str, Any], bool]] | None, Audit | None]:
        """The scan, with the configs it read and their audit (None if it could not read
        them); ``meanwhile`` runs while the HDF5 guard child walks (see ``load``)."""
        try:
            kind = self._kind(path)
            check(path, kind, meanwhile)  # the whole container, every CRC, the HDF5 guard
            configs = read_configs(path, kind)[0]  # with the sizes the configs declare
            found = audit_configs(configs)
            with open_h5(path, kind):
                pass  # checks links, external storage, filters and declared sizes
        except (KerasFileError, FormatError) as e:
            return unreadable(path, self.name, getattr(e, "kind", "format"), str(e)), None, None
        findings = found.findings
        report = ScanReport(
            str(path),
            self.name,
            "unsafe" if findings else "safe",
            findings,
            [f.subject for f in findings],
        )
        return report, configs, found

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.device not in (None, "cpu"):
            raise ArgumentError(
                f"{path}: device={request.device!r}: Keras places models itself; use device=None"
            )
        early = configs = found = None
        if request.trust is not True:
            # the gate's scan, run here (checks_while_loading) so that for an archive the
            # stateless size-check build overlaps the HDF5 guard child (check runs it)
            early = EarlyBuild(path)
            report, configs, found = self._scan(path, early)
            enforce(report, request.trust)
        kind = self._kind(path)
        import keras

        if request.trust is not True:
            _require_keras(path, keras.__version__)
        if kind == "weights":
            return _load_weights(path, request.model)
        if configs is None:
            try:
                configs = read_configs(path, kind)[0]
            except KerasFileError as e:
                raise FormatError(f"{path}: {e}") from None
        if not any(name != "training_config" for name, _, _ in configs):
            if request.model is not None:
                with _with_suffix(path, ".h5") as p:  # Keras 2 save_weights("x.h5")
                    return _load_weights(path, request.model, open_as=p)
            msg = (
                f"{path}: this HDF5 file holds weights only (no model_config), as Keras 2's "
                f"save_weights wrote them: pass model= a built Keras model to load them into"
            )
            raise ArgumentError(msg)
        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for .weights.h5 files; this file holds the whole model"
            )
        # trust=True allows anything, Python bytecode included
        audit = None  # trust=True allows anything: no audit decides (safe mode off)
        if request.trust is not True:
            audit = found if found is not None else audit_configs(configs)
        safe = False if audit is None else _safe_mode_for(path, audit, request.trust)
        built = None  # an .h5 file's check build, kept for the load to finish (reuse_h5.py)
        if (
            request.trust is not True
        ):  # build without allocating: sizes must match the stored weights
            from ...security.kerasload import check_load

            try:
                if kind == "h5" and safe is True and audit is not None:
                    built = check_build(configs, audit)
                check_load(path, kind, configs, safe=safe, early=built or early)
            except ModelstoreError:
                raise
            except Exception as e:  # a config Keras cannot rebuild: the same answer as the load's
                raise _load_error(path, e, kind) from None
        with _with_suffix(path, _SUFFIX[kind]) as p, _pinned_safe_mode(safe):
            try:
                if safe is True and (model := from_early(p, early, configs)) is not None:
                    return model  # the size check's build, finished: Keras builds it once
                if safe is True and (model := from_build(path, built, configs)) is not None:
                    return model  # the same for an .h5 file
                return keras.saving.load_model(p, safe_mode=safe)
            except ModelstoreError:
                raise
            except (
                Exception
            ) as e:  # Keras raises ValueError/TypeError/KeyError... for configs it refuses
                raise _load_error(path, e, kind) from None

    def inspect(self, path: Path) -> Inspection:
        kind = self._kind(path)
        try:
            check(path, kind)
            config, facts = read_config(path, kind)
            found = audit_file(path, kind)
            with open_h5(path, kind) as f:
                tensors = weights(f, kind)
        except KerasFileError as e:
            raise FormatError(f"{path}: {e}") from None
        details: dict[str, Any] = {
            "keras_file": {
                "keras": ".keras archive",
                "h5": "legacy HDF5 model",
                "weights": "weights only",
            }[kind]
        }
        details.update(
            {k: v for k, v in facts.items() if k in ("keras_version", "backend", "date_saved")}
        )
        if config:
            details["model"] = config.get("class_name")
            details["layers"] = layer_table(config, tensors)
        findings = found.findings
        return Inspection(
            framework="keras",
            tensors=tensors,
            num_params=sum(t.numel for t in tensors),
            meta=self.read_meta(path),
            extra_metadata=details,
            executes_code=bool(findings),
            globals=[f.subject for f in findings],
        )

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Any:
        from ..onnx.export import export_keras

        return export_keras(model, path, sample_input, opset, dynamic_batch)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        if request.device not in (None, "cpu"):
            raise ArgumentError(
                f"device={request.device!r}: Keras places models itself; use device=None"
            )
        if request.output == "raw" and request.batch_size is None:
            x = one_array(model, inputs)  # the common call: one batch, as it is
            if x is not None and x.ndim and len(x) <= ONE_BATCH:
                try:
                    out = model.predict_on_batch(x)
                except Exception as e:  # TensorFlow raises its own error types for bad shapes
                    raise _misfit(model, x, e) from None
                return finish(model, out, request, None)
        x = prepare(model, inputs)
        try:
            out = run_batches(model, x, request.batch_size)
        except Exception as e:  # TensorFlow raises its own error types for bad shapes
            raise _misfit(model, x, e) from None
        return finish(
            model, out, request, _last_activation(model) if request.output != "raw" else None
        )


def _misfit(model: Any, x: Any, e: Exception) -> ArgumentError:
    """The error for inputs the model refused: their shapes, the model's and Keras' reason."""
    first = first_reason(e)
    names = input_names(model)
    where = f" (the model takes inputs {names}, in this order)" if len(names) > 1 else ""
    given = [
        tuple(v.shape)
        for v in (list(x.values()) if isinstance(x, dict) else x if isinstance(x, list) else [x])
        if hasattr(v, "shape")
    ]
    hint = fit_hint(given, expected_shapes(attached(model)) or _input_shapes(model))
    return ArgumentError(
        f"the inputs (shape {', '.join(map(str, given))}) do not fit the "
        f"model{where}: {first}{hint}"
    )


def _input_shapes(model: Any) -> list[list[Any]] | None:
    try:
        return [list(t.shape) for t in model.inputs]
    except Exception:  # a subclassed model that was never built has no inputs
        return None

"""LightGBM's own model format: the text file ``Booster.save_model`` writes (``model.txt``).

The text holds trees and parameters (and, at its end, pandas categories as JSON): no pickle,
no code. ``ms.save(booster_or_LGBMModel, "m.txt")`` writes it (for a LightGBM object the text
format is the default: this backend's ``priority`` is above the scikit-learn backend's
joblib pickle). Loading returns a ``lightgbm.Booster``; for a classifier saved by modelstore,
the sidecar's class list maps ``output="label"`` to the original classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._info import ScanReport
from ...errors import ArgumentError, FormatError
from ...security import child, gbtrees, unreadable
from ..base import (
    Backend,
    Exported,
    Inspection,
    LoadRequest,
    PredictRequest,
    feature_matrix,
    is_instance_of,
    labels_from_scores,
)

#: the first line LightGBM writes, then ``version=v<N>``
MAGIC = b"tree\nversion="
#: a model text is read whole into memory; larger files are refused (LightGBM does the same)
MAX_BYTES = 4 << 30


#: what the child runs: parse the text with LightGBM, write the model back out (every tree)
_CANONICAL = (
    "import sys, lightgbm; "
    "b = lightgbm.Booster(model_str=sys.stdin.buffer.read().decode('utf-8')); "
    "sys.stdout.buffer.write(b.model_to_string(num_iteration=-1).encode('utf-8'))"
)


def _checked_text(path: Path, text: str) -> str:
    """Parse the text in an isolated child first and check the trees LightGBM wrote back.

    LightGBM's C++ parser aborts the whole process on some malformed texts (seen: a truncated
    file, ``terminate called``), which no ``except`` can catch, and its predictor follows child
    indices unchecked (one past the tree loops forever). The child parses the text and writes
    the model back in LightGBM's canonical form; that text's trees are checked here and it is
    the text this process loads, so what was checked is what is loaded.
    """
    try:
        out = child.run(_CANONICAL, text.encode("utf-8"), what="LightGBM")
    except child.ChildFailed as e:
        raise FormatError(f"{path}: {e}; nothing from the file was run in this process") from None
    canonical = out.decode("utf-8")
    gbtrees.check_lightgbm(canonical, str(path))
    return canonical


def _is_wrapper(obj: Any) -> bool:
    return is_instance_of(obj, "lightgbm.sklearn", "LGBMModel")


class LightGBMBackend(Backend):
    """LightGBM boosters and their scikit-learn wrappers, as LightGBM's model text."""

    name = "lightgbm"
    framework = "lightgbm"
    suffixes = (".lgb",)  # .txt is recognised by content (the suffix is too common to claim)
    risk = "safe"  # a text of trees and numbers
    reads_one_file = True  # checked and loaded through one descriptor
    extra = "lightgbm"
    requires = ("lightgbm",)
    priority = 10  # above the joblib pickle of the scikit-learn backend

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.replace(b"\r\n", b"\n").startswith(MAGIC)

    def can_save(self, obj: Any) -> bool:
        return is_instance_of(obj, "lightgbm.basic", "Booster") or _is_wrapper(obj)

    def can_predict(self, obj: Any) -> bool:
        return self.can_save(obj)

    def describe(self, obj: Any) -> dict[str, Any]:
        import lightgbm

        out: dict[str, Any] = {
            "framework": "lightgbm",
            "framework_version": lightgbm.__version__,
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }
        classes = getattr(obj, "classes_", None) if _is_wrapper(obj) else None
        if classes is not None:
            out["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
        return out

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        booster = obj.booster_ if _is_wrapper(obj) else obj
        tmp.write_text(booster.model_to_string(), encoding="utf-8")
        return None

    def _text(self, path: Path) -> str:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise FormatError(
                f"{path}: a LightGBM model text of {size} bytes is larger than the {MAX_BYTES} accepted"
            )
        data = path.read_bytes()
        if not self.sniff(path, data[:64]):
            raise FormatError(
                f"{path}: not a LightGBM model text (it does not start with 'tree' / 'version=')"
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{path}: the LightGBM model text is not UTF-8") from None

    def scan(self, path: Path) -> ScanReport:
        """What load checks (the child's parse, then every tree), without loading."""
        try:
            _checked_text(path, self._text(path))
        except gbtrees.TreeStructureError as e:
            return unreadable(path, self.name, "suspicious", str(e))
        except FormatError as e:
            return unreadable(path, self.name, "format", str(e))
        return super().scan(path)

    def _booster(self, path: Path) -> Any:
        import lightgbm

        text = _checked_text(path, self._text(path))
        try:
            return lightgbm.Booster(model_str=text)
        except (lightgbm.basic.LightGBMError, ValueError, TypeError, KeyError, IndexError) as e:
            raise FormatError(
                f"{path}: LightGBM cannot read the model ({str(e).splitlines()[0][:200]})"
            ) from None

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; a LightGBM file holds the whole model"
            )
        booster = self._booster(path)
        classes = (request.meta or {}).get("classes")
        if isinstance(classes, list) and all(
            isinstance(c, (str, int, float, bool)) for c in classes
        ):
            booster.__dict__["classes_"] = classes  # the class list the wrapper had
        return booster

    def inspect(self, path: Path) -> Inspection:
        booster = self._booster(path)
        details = {
            "trees": booster.num_trees(),
            "features": booster.num_feature(),
            "objective": booster.params.get("objective"),
            "feature_names": booster.feature_name(),
        }
        return Inspection(framework="lightgbm", extra_metadata=details)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        import numpy as np

        x = feature_matrix(inputs)
        if _is_wrapper(model):
            if request.output == "raw" or not hasattr(model, "predict_proba"):
                return np.asarray(model.predict(x))
            proba = np.asarray(model.predict_proba(x))
            classes = list(model.classes_)
        else:
            out = np.asarray(model.predict(x))
            classes = model.__dict__.get("classes_")
            if request.output == "raw":
                return out
            proba = np.stack([1 - out, out], axis=1) if out.ndim == 1 else out
        if request.output == "proba":
            return proba
        labels = request.labels
        if labels is None and classes:
            labels = [c.item() if hasattr(c, "item") else c for c in classes]
        return labels_from_scores(proba, labels)

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Exported:
        from ..onnx.gbm import export_gbm

        return export_gbm("lightgbm", model, path, sample_input, opset, dynamic_batch)

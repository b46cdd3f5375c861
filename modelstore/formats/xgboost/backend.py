"""XGBoost's own model formats: JSON (``.json``) and Universal Binary JSON (``.ubj``).

Both hold trees and parameters only (no pickle, no code): a custom objective is stored by name
and never rebuilt. ``ms.save(booster_or_wrapper, "m.ubj" | "m.json")`` writes them, and for an
XGBoost object a native format is the default (this backend's ``priority`` is above the
scikit-learn backend's, whose joblib pickle is used only when asked for by suffix). Loading
returns the scikit-learn wrapper the file records (``XGBClassifier``... from a fixed list; the
file cannot name any other class) or a ``Booster``. A JSON file is parsed by our bounded JSON
reader first (depth, numbers), so a hostile one is refused before XGBoost's parser sees it.

XGBoost's own readers trust the file: a flipped byte in a UBJSON file can crash the
interpreter, and a tree whose child index points past its nodes crashes prediction. Every
file is therefore parsed in an isolated child first (:mod:`modelstore.security.child`), which
writes it back as JSON; that JSON's trees are checked (:mod:`modelstore.security.gbtrees`) and
it is what this process loads.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..._info import ScanReport
from ...errors import ArgumentError, FormatError, UnsupportedModelError
from ...security import child, gbtrees, jsonsafe, unreadable
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

#: the scikit-learn wrappers a file may ask to be rebuilt as (exact names in ``xgboost``)
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
#: what the child runs: parse the file with XGBoost, write the model back as JSON
_CANONICAL = (
    "import sys, xgboost; b = xgboost.Booster(); "
    "b.load_model(bytearray(sys.stdin.buffer.read())); "
    "sys.stdout.buffer.write(b.save_raw('json'))"
)
_BY_TYPE = {"classifier": "XGBClassifier", "regressor": "XGBRegressor", "ranker": "XGBRanker"}


def _is_wrapper(obj: Any) -> bool:
    return is_instance_of(obj, "xgboost.sklearn", "XGBModel")


class XGBoostBackend(Backend):
    """XGBoost boosters and their scikit-learn wrappers, in XGBoost's own formats."""

    name = "xgboost"
    framework = "xgboost"
    suffixes = (".ubj",)  # .json is recognised by content (the suffix is too common to claim)
    risk = "safe"  # trees and numbers: XGBoost's loaders build nothing else
    reads_one_file = True  # checked and loaded through one descriptor
    extra = "xgboost"
    requires = ("xgboost",)
    priority = 10  # above the joblib pickle of the scikit-learn backend

    def sniff(self, path: Path, head: bytes) -> bool:
        text = head.lstrip()
        return text.startswith(b'{"learner"') or (
            text[:1] == b"{"
            and b"learner" in text[:24]
            and text[1:2] in (b"L", b"l", b"i", b"U", b"I")
        )

    def can_save(self, obj: Any) -> bool:
        return is_instance_of(obj, "xgboost.core", "Booster") or _is_wrapper(obj)

    def can_predict(self, obj: Any) -> bool:
        return self.can_save(obj)

    def describe(self, obj: Any) -> dict[str, Any]:
        import xgboost

        return {
            "framework": "xgboost",
            "framework_version": xgboost.__version__,
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        fmt = "json" if target.name.lower().endswith(".json") else "ubj"
        # XGBoost picks the format by suffix, and the wrapper records its scikit-learn facts
        fd, name = tempfile.mkstemp(dir=tmp.parent, suffix=f".{fmt}", prefix=".xgb-")
        os.close(fd)
        try:
            obj.save_model(name)
            os.replace(name, tmp)
        finally:
            if os.path.exists(name):
                os.unlink(name)
        return None

    # -- reading --------------------------------------------------------------------------
    def _read(self, path: Path) -> tuple[bytes, str | None]:
        """The model as checked JSON, and the wrapper type it records.

        XGBoost's parsers crash the interpreter on some damaged files (seen: a segmentation
        fault on a UBJSON file with one byte changed) and its predictor walks trees without
        checking them (a child index past the node arrays crashes at predict time). So the
        file is parsed in an isolated child first, which writes the model back as JSON; that
        JSON is checked here (bounded reader, then every tree's structure) and is what this
        process hands to XGBoost: what was checked is what is loaded.
        """
        try:
            data = child.run(_CANONICAL, path.read_bytes(), what="XGBoost")
        except child.ChildFailed as e:
            raise FormatError(
                f"{path}: {e}; nothing from the file was run in this process"
            ) from None
        doc = jsonsafe.loads(data, where=str(path))
        gbtrees.check_xgboost(doc, str(path))
        attrs = doc["learner"].get("attributes")
        sk = attrs.get("scikit_learn") if isinstance(attrs, dict) else None
        return data, _estimator_type(sk)

    def scan(self, path: Path) -> ScanReport:
        """What load checks (the child's parse, then every tree), without loading."""
        try:
            self._read(path)
        except gbtrees.TreeStructureError as e:
            return unreadable(path, self.name, "suspicious", str(e))
        except FormatError as e:
            return unreadable(path, self.name, "format", str(e))
        return super().scan(path)

    def _booster(self, path: Path, data: bytes) -> Any:
        import xgboost

        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(data))
        except (xgboost.core.XGBoostError, ValueError, TypeError) as e:
            raise FormatError(
                f"{path}: XGBoost cannot read the model ({str(e).splitlines()[0][:200]})"
            ) from None
        return booster

    def load(self, path: Path, request: LoadRequest) -> Any:
        import xgboost

        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; an XGBoost file holds the whole model"
            )
        data, kind = self._read(path)
        booster = self._booster(path, data)
        if kind is None:
            recorded = str((request.meta or {}).get("model_class") or "")
            kind = next((w for w in WRAPPERS if recorded == f"xgboost.sklearn:{w}"), None)
        if kind is None:
            return booster
        model = getattr(xgboost, kind)()
        try:
            model.load_model(bytearray(data))
        except (xgboost.core.XGBoostError, ValueError, TypeError, KeyError) as e:
            raise FormatError(
                f"{path}: XGBoost cannot rebuild its {kind} ({str(e).splitlines()[0][:200]})"
            ) from None
        return model

    def inspect(self, path: Path) -> Inspection:
        data, kind = self._read(path)
        booster = self._booster(path, data)
        config = jsonsafe.loads(booster.save_config(), where=f"{path} (config)")
        learner = config.get("learner", {}) if isinstance(config, dict) else {}
        details = {
            "trees": booster.num_boosted_rounds(),
            "features": booster.num_features(),
            "objective": (learner.get("objective") or {}).get("name"),
            "estimator": kind or "Booster",
            "feature_names": booster.feature_names,
        }
        return Inspection(framework="xgboost", extra_metadata=details)

    # -- running --------------------------------------------------------------------------
    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        import numpy as np

        x = feature_matrix(inputs)
        booster = model.get_booster() if _is_wrapper(model) else model
        expected = booster.num_features()
        if x.shape[1] != expected:
            # XGBoost accepts fewer columns than the model declares, and sizes a buffer per
            # thread by the model's count: a file declaring 2**31 features asks for GBs
            raise ArgumentError(
                f"the model takes rows of {expected} features; the input has {x.shape[1]}"
            )
        if _is_wrapper(model):
            if request.output == "raw" or not hasattr(model, "predict_proba"):
                return np.asarray(model.predict(x))
            proba = np.asarray(model.predict_proba(x))
        else:
            import xgboost

            out = np.asarray(model.predict(xgboost.DMatrix(x)))
            if request.output == "raw":
                return out
            proba = np.stack([1 - out, out], axis=1) if out.ndim == 1 else out
        if request.output == "proba":
            return proba
        return labels_from_scores(proba, request.labels)

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Exported:
        from ..onnx.gbm import export_gbm

        return export_gbm("xgboost", model, path, sample_input, opset, dynamic_batch)


def _estimator_type(sk: Any) -> str | None:
    if not isinstance(sk, str):
        return None
    try:
        facts = json.loads(sk) if len(sk) < 100_000 else None
    except ValueError:
        return None
    kind = facts.get("_estimator_type") if isinstance(facts, dict) else None
    return _BY_TYPE.get(kind) if isinstance(kind, str) else None


__all__ = ["XGBoostBackend", "UnsupportedModelError"]

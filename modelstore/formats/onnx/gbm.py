"""ONNX export of XGBoost and LightGBM models through onnxmltools (``pip install onnxmltools``).

onnxmltools converts the scikit-learn wrappers (``XGBClassifier``, ``LGBMRegressor``...) and
boosters; classifiers are written without ZipMap, so the file gives labels and a probability
matrix. The reference for the parity check is the model's own predict/predict_proba.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from ...errors import ArgumentError, MissingDependencyError, UnsupportedModelError
from ..base import Exported


def export_gbm(
    family: str, model: Any, path: Path, sample: Any, opset: int | None, dynamic_batch: bool
) -> Exported:
    """Write ``model`` (an XGBoost or LightGBM model) as ONNX to ``path``."""
    import importlib.util

    import numpy as np

    if importlib.util.find_spec("onnxmltools") is None:
        msg = f"ONNX export of {family} models needs onnxmltools; run: pip install onnxmltools"
        raise MissingDependencyError(msg, name="onnxmltools")
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2:
        raise ArgumentError(
            f"sample_input for a {family} model must be 2-D (rows x features), got {x.shape}"
        )
    convert = onnxmltools.convert_xgboost if family == "xgboost" else onnxmltools.convert_lightgbm
    proba = _proba_fn(family, model)
    classifier = proba is not None
    kwargs: dict[str, Any] = {"target_opset": opset} if opset else {}
    if family == "lightgbm" and classifier:
        kwargs["zipmap"] = False
    batch = None if dynamic_batch else x.shape[0]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxmltools prints progress
            onx = convert(
                model, initial_types=[("input", FloatTensorType([batch, x.shape[1]]))], **kwargs
            )
    except (
        RuntimeError,
        ValueError,
        TypeError,
        NotImplementedError,
        AttributeError,
        KeyError,
    ) as e:
        msg = f"onnxmltools cannot convert this {type(model).__qualname__}: {str(e).splitlines()[0][:300]}"
        raise UnsupportedModelError(msg) from None
    if family == "xgboost" and classifier:
        _drop_zipmap(onx)
    _batch_dims(onx, dynamic_batch)
    path.write_bytes(onx.SerializeToString())

    def reference(batch_x: Any) -> list[Any]:
        b = np.asarray(batch_x, dtype=np.float32)
        if proba is not None:
            p = np.asarray(proba(b))
            labels = (
                np.asarray(model.predict(b))
                if hasattr(model, "predict_proba")
                else p.argmax(axis=1)
            )
            return [labels, p]
        return [np.asarray(_raw_predict(family, model, b))]

    used = max((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return Exported(
        "onnxmltools", onnxmltools.__version__, used, reference, {"classifier": classifier}
    )


def _drop_zipmap(onx: Any) -> None:
    """Make the probability output the tensor before a final ZipMap (as ``zipmap=False`` does
    for converters that take no such option)."""
    graph = onx.graph
    for node in list(graph.node):
        if node.op_type != "ZipMap":
            continue
        out = next((o for o in graph.output if o.name == node.output[0]), None)
        if out is None:
            continue
        source = node.input[0]
        graph.node.remove(node)
        from onnx import TensorProto, helper

        graph.output.remove(out)
        graph.output.append(helper.make_tensor_value_info(source, TensorProto.FLOAT, None))


_CLASSIFYING = ("binary", "multiclass", "multiclassova", "binary:logistic", "multi:softprob")


def _objective(family: str, model: Any) -> str:
    model = getattr(model, "booster_", None) or (
        model.get_booster() if hasattr(model, "get_booster") else model
    )
    if family == "lightgbm":
        return str(model.params.get("objective", ""))
    import json

    try:
        return str(json.loads(model.save_config())["learner"]["objective"]["name"])
    except (KeyError, ValueError, TypeError):
        return ""


def _proba_fn(family: str, model: Any) -> Any:
    """A function giving class probabilities (rows x classes), or None for a regressor."""
    import numpy as np

    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        return model.predict_proba
    if (
        hasattr(model, "predict_proba")
        or _objective(family, model).split(" ")[0] not in _CLASSIFYING
    ):
        return None

    def proba(x: Any) -> Any:
        out = np.asarray(_raw_predict(family, model, x))
        return np.stack([1 - out, out], axis=1) if out.ndim == 1 else out

    return proba


def _raw_predict(family: str, model: Any, x: Any) -> Any:
    if (
        family == "xgboost"
        and not hasattr(model, "predict_proba")
        and not hasattr(model, "get_booster")
    ):
        import xgboost

        return model.predict(xgboost.DMatrix(x))
    return model.predict(x)


def _batch_dims(onx: Any, dynamic: bool) -> None:
    """Declare the first dimension of every output as the batch (some converters write 1)."""
    if not dynamic:
        return
    for out in onx.graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"

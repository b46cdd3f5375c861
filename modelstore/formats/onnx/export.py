"""Exporting to ONNX from PyTorch, scikit-learn and Keras, and checking parity with
onnxruntime. Each exporter writes the file and returns an :class:`Exported`: what ran, and a
``reference(x) -> list of arrays`` giving the original model's outputs in ONNX output order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ...errors import (
    ArgumentError,
    ExportMismatchError,
    MissingDependencyError,
    UnsupportedModelError,
)
from ...formats.base import Exported

#: Models at or above this size are exported with their weights as external data.
EXTERNAL_DATA_BYTES = 2 << 30


def _needs(module: str, extra: str = "export") -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f'ONNX export needs {module}; run: pip install "modelstore-safe[{extra}]"', name=module
        )


# -- PyTorch ------------------------------------------------------------------------------


def export_torch(
    module: Any, path: Path, sample: Any, opset: int | None, dynamic_batch: bool
) -> Exported:
    import numpy as np
    import torch

    _needs("onnxscript")
    if not isinstance(module, torch.nn.Module):
        msg = (
            f"ONNX export needs a torch.nn.Module, not a {type(module).__name__}; for a weights file "
            f"pass model=YourClass so it is loaded into the module first"
        )
        raise UnsupportedModelError(msg)
    first = next(iter(module.parameters()), None)
    _refuse_bfloat16(path, first, sample)
    x = torch.as_tensor(np.asarray(sample)) if not isinstance(sample, torch.Tensor) else sample
    if first is not None and x.is_floating_point():
        x = x.to(first.dtype)
    was_training = module.training
    module.eval()
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    kwargs: dict[str, Any] = {
        "dynamo": True,
        "verbose": False,
        "input_names": ["input"],
        "output_names": ["output"],
        "external_data": nbytes >= EXTERNAL_DATA_BYTES,
    }
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamic_batch and x.dim() > 0:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    try:
        with contextlib.redirect_stdout(None):
            torch.onnx.export(module, (x,), str(path), **kwargs)
    finally:
        module.train(was_training)

    def reference(batch: Any) -> list[Any]:
        with torch.inference_mode():
            t = torch.as_tensor(batch)
            if first is not None and t.is_floating_point():
                t = t.to(first.dtype)
            out = module.eval()(t)
        module.train(was_training)
        return [
            out.detach().float().cpu().numpy() if out.is_floating_point() else out.cpu().numpy()
        ]

    return Exported(
        "torch.onnx.export(dynamo=True)",
        torch.__version__.split("+")[0],
        opset,
        reference,
        {"external_data": kwargs["external_data"], "dtype": str(x.dtype).replace("torch.", "")},
    )


def _refuse_bfloat16(path: Path, first: Any, sample: Any) -> None:
    """bfloat16 graphs do not run on CPU ONNX Runtime (no kernels), so neither the parity
    check nor ``ms.predict`` could run the file: say so before the exporter or ORT fails."""
    found = [
        what
        for what, obj in (("the model's parameters are", first), ("sample_input is", sample))
        if str(getattr(obj, "dtype", "")) == "torch.bfloat16"
    ]
    if found:
        msg = (
            f"{path}: CPU ONNX Runtime cannot run bfloat16 ({' and '.join(found)} bfloat16): "
            f"export in float32: model.float() (and sample_input.float()), or float16: model.half()"
        )
        raise UnsupportedModelError(msg)


# -- scikit-learn -------------------------------------------------------------------------


def export_sklearn(
    model: Any, path: Path, sample: Any, opset: int | None, dynamic_batch: bool
) -> Exported:
    import numpy as np

    _needs("skl2onnx")
    import skl2onnx
    from skl2onnx import to_onnx

    x = np.asarray(sample)
    if x.ndim != 2:
        raise ArgumentError(
            f"sample_input for a scikit-learn model must be 2-D (rows x features), got {x.shape}"
        )
    x = x.astype(np.float32)
    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    options: dict[Any, Any] = {}
    if classifier:
        options = {id(model): {"zipmap": False}}
        # pipelines: the final step holds the classifier
        last = model.steps[-1][1] if hasattr(model, "steps") else model
        options[id(last)] = {"zipmap": False}
    kwargs: dict[str, Any] = {"target_opset": opset} if opset else {}
    batch = None if dynamic_batch else x.shape[0]
    from skl2onnx.common.data_types import FloatTensorType

    try:
        onx = to_onnx(
            model,
            initial_types=[("input", FloatTensorType([batch, x.shape[1]]))],
            options=options,
            **kwargs,
        )
    except (RuntimeError, NameError, ValueError, TypeError) as e:
        raise UnsupportedModelError(
            f"skl2onnx cannot convert {type(model).__qualname__}: {e}"
        ) from None
    path.write_bytes(onx.SerializeToString())

    def reference(batch_x: Any) -> list[Any]:
        b = np.asarray(batch_x, dtype=np.float32)
        if classifier:
            return [np.asarray(model.predict(b)), np.asarray(model.predict_proba(b))]
        return [np.asarray(model.predict(b))]

    used = max((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return Exported("skl2onnx", skl2onnx.__version__, used, reference, {"classifier": classifier})


# -- Keras -------------------------------------------------------------------------------


def export_keras(
    model: Any, path: Path, sample: Any, opset: int | None, dynamic_batch: bool
) -> Exported:
    import keras
    import numpy as np

    _needs("tf2onnx")
    x = np.asarray(sample)
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    if not getattr(model, "_called", False):
        model(x[:1])  # Keras exports only models that were called once
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    model.export(str(path), format="onnx", verbose=False, **kwargs)

    def reference(batch: Any) -> list[Any]:
        b = np.asarray(batch)
        if b.dtype == np.float64:
            b = b.astype(np.float32)
        return [np.asarray(model.predict(b, verbose=0))]

    return Exported("keras.Model.export(format='onnx')", keras.__version__, opset, reference)


# -- parity ------------------------------------------------------------------------------


def tolerances(dtype: Any, rtol: float, atol: float) -> tuple[float, float] | None:
    """(rtol, atol) for comparing outputs of this dtype; None means compare exactly."""
    import numpy as np

    kind = np.dtype(dtype).kind
    if kind in "iub" or kind in "OSU":
        return None
    if np.dtype(dtype).itemsize <= 2:
        return max(rtol, 1e-2), max(atol, 1e-2)
    return rtol, atol


def batches(sample: Any, dynamic: bool, seed: int = 0) -> list[Any]:
    """The sample itself, then generated batches of 1, 7 and the sample's size drawn around it."""
    import numpy as np

    x = np.asarray(sample)
    out = [x]
    if not dynamic or x.ndim == 0:
        return out
    rng = np.random.default_rng(seed)
    for n in (1, 7, x.shape[0]):
        rows = x[rng.integers(0, x.shape[0], n)]
        if rows.dtype.kind == "f":
            scale = float(x.std()) or 1.0
            rows = (rows + rng.normal(0, 0.05 * scale, rows.shape)).astype(rows.dtype)
        out.append(rows)
    return out


def check_parity(
    path: Path, exported: Exported, sample: Any, dynamic: bool, rtol: float, atol: float
) -> dict[str, Any]:
    """Run onnxruntime and the original on each batch; raise ExportMismatchError beyond tolerance."""
    import numpy as np
    import onnxruntime as ort

    if exported.reference is None:
        raise ExportMismatchError(
            f"{path}: the exporter gave no reference outputs to check parity against; pass check=False"
        )
    reference = exported.reference
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    # the graph's own input dtype (float16 for a half-precision model): ORT casts nothing
    want = _FLOAT_INPUTS.get(inp.type)
    worst_abs, worst_rel, checked = 0.0, 0.0, []
    used: tuple[float, float] = (rtol, atol)
    for x in batches(sample, dynamic):
        feed = x.astype(want) if want and x.dtype != want and x.dtype.kind in "biuf" else x
        got = session.run(None, {inp.name: feed})
        ref = reference(x)
        for i, (g, r) in enumerate(zip(got, ref)):
            g, r = np.asarray(g), np.asarray(r)
            if g.size != r.size:
                raise ExportMismatchError(
                    f"{path}: ONNX output {i} has shape {g.shape}, the original {r.shape}"
                )
            g, r = g.reshape(r.shape), r
            # the less precise of the two sides decides (torch hands back float16 as float32)
            tol = tolerances(min(g.dtype, r.dtype, key=_precision), rtol, atol)
            if tol is not None:
                used = (max(used[0], tol[0]), max(used[1], tol[1]))
            if tol is None:
                if not np.array_equal(g.astype(r.dtype) if r.dtype.kind not in "OSU" else g, r):
                    raise ExportMismatchError(
                        f"{path}: ONNX output {i} differs from the original on a batch of {len(x)}"
                    )
                continue
            diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
            a = float(diff.max()) if diff.size else 0.0
            rel = (
                float((diff / np.maximum(np.abs(r.astype(np.float64)), 1e-12)).max())
                if diff.size
                else 0.0
            )
            worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, rel)
            if not np.allclose(g, r, rtol=tol[0], atol=tol[1]):
                msg = (
                    f"{path}: ONNX output {i} differs from the original beyond rtol={tol[0]}, atol={tol[1]} "
                    f"on a batch of {len(x)}: max abs diff {a:.3g}, max rel diff {rel:.3g}"
                )
                raise ExportMismatchError(msg)
        checked.append(len(x))
    return {
        "batches": checked,
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "rtol": used[0],
        "atol": used[1],
        "input_dtype": want or str(np.asarray(sample).dtype),
    }


#: ONNX Runtime's input type -> the numpy dtype to feed it.
_FLOAT_INPUTS = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
}


def _precision(dtype: Any) -> int:
    """Sort key: floating dtypes by their size (float16 first), everything else last."""
    import numpy as np

    d = np.dtype(dtype)
    return d.itemsize if d.kind == "f" else 99

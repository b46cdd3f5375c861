"""The weights and layers of a Keras file, for ``inspect`` (and the stored sizes the size
checks compare): HDF5 metadata and the config's layer list, no Keras."""

from __future__ import annotations

import re
from typing import Any

from .._info import TensorInfo


def weights(f: Any, kind: str) -> list[TensorInfo]:
    """Every weight dataset (optimizer state left out), named by its path in the file."""
    import h5py

    out: list[TensorInfo] = []
    skip = ("optimizer/", "optimizer_weights/")

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith(skip):
            shape = tuple(int(d) for d in obj.shape)
            n = 1
            for d in shape:
                n *= d
            out.append(TensorInfo(name, shape, str(obj.dtype), n * obj.dtype.itemsize))

    if f is not None:
        f.visititems(visit)
    return out


def layer_table(config: dict[str, Any] | None, tensors: list[TensorInfo]) -> list[dict[str, Any]]:
    """torchinfo-style rows: layer name, class, output shape where the config records it, params."""
    layers = []
    inner = (config or {}).get("config")
    for layer in (inner.get("layers") if isinstance(inner, dict) else None) or []:
        if not isinstance(layer, dict):
            continue
        raw = layer.get("config")
        cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
        name = str(cfg.get("name", ""))
        row: dict[str, Any] = {"name": name, "class": layer.get("class_name")}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not isinstance(shape, list):
            shape = None
        if shape is None and isinstance(cfg.get("units"), int):
            shape = [None, cfg["units"]]
        if shape is not None:
            row["output_shape"] = shape
        row["params"] = sum(t.numel for t in tensors if _layer_of(t.name) == name)
        layers.append(row)
    if layers and not any(r["params"] for r in layers) and tensors:
        # .keras archives name weight groups by class (dense, dense_1, ...), not by layer name
        counts: dict[str, int] = {}
        for row in layers:
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", str(row["class"])).lower()
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            row["params"] = sum(t.numel for t in tensors if _layer_of(t.name) == key)
    return layers


def _layer_of(tensor_name: str) -> str:
    parts = tensor_name.split("/")
    if parts[0] == "layers" and len(parts) > 1:
        return parts[1]
    if parts[0] == "model_weights" and len(parts) > 1:
        return parts[1]
    return parts[0]

"""Classifiers exported by skl2onnx: the class list recorded in the graph, and ZipMap outputs.

skl2onnx ends a classifier with a ``ZipMap`` node by default: its probability output is a
sequence of maps ``{class: probability}``, which onnxruntime returns as a list of dicts. The
class list, in the order scikit-learn's ``classes_`` had, is an attribute of that node (and of
the ``ai.onnx.ml`` classifier node before it); :func:`class_list` reads it from the proto, and
:func:`zipmap_to_array` turns the dicts into one ``(rows, classes)`` array in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import FormatError

_ML = "ai.onnx.ml"
_CLASSIFIERS = ("LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")
#: attribute names holding class labels, by node: ZipMap's and the classifiers' spellings
_ATTRS = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def class_list(proto: Any) -> list[Any] | None:
    """The classes in column order: from the ZipMap node if there is one, else from the
    ``ai.onnx.ml`` classifier node; None for graphs that record none (or several differing)."""
    zipmaps = [n for n in proto.graph.node if n.op_type == "ZipMap" and n.domain == _ML]
    nodes = zipmaps or [
        n for n in proto.graph.node if n.op_type in _CLASSIFIERS and n.domain == _ML
    ]
    found: list[list[Any]] = []
    for node in nodes:
        labels = _labels_of(node)
        if labels is not None and labels not in found:
            found.append(labels)
    return found[0] if len(found) == 1 else None


def _labels_of(node: Any) -> list[Any] | None:
    for attr in node.attribute:
        if attr.name not in _ATTRS:
            continue
        if attr.name == "classlabels_strings":
            return [s.decode("utf-8", "replace") for s in attr.strings]
        return [int(i) for i in attr.ints]
    return None


def is_zipmap(value: Any) -> bool:
    """Whether an onnxruntime output is a ZipMap result (a list of dicts)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def zipmap_to_array(
    value: list[dict[Any, float]], classes: list[Any] | None, path: Path | str
) -> Any:
    """The probabilities of a ZipMap output as a float32 array, one column per class, in
    the recorded class order (else in the order of the first row's keys)."""
    import numpy as np

    keys = list(value[0])
    order = (
        classes
        if classes is not None and len(classes) == len(keys) and set(classes) == set(keys)
        else keys
    )
    try:
        return np.array([[row[k] for k in order] for row in value], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        msg = (
            f"{path}: the model's probability output (a ZipMap) does not give every row the same "
            f"classes ({order[:10]}); read its raw outputs with model.run(x)"
        )
        raise FormatError(msg) from None


def map_labels(values: Any, classes: list[Any] | None, labels: list[Any] | None) -> list[Any]:
    """A classifier's label output as a list: the class values themselves, mapped through
    ``labels`` (names saved with the model) only when the classes are ``0..n-1``."""
    out = [v.item() if hasattr(v, "item") else v for v in values]
    if not labels:
        return out
    if classes is not None:
        if classes == list(range(len(labels))):
            return [labels[int(i)] for i in out]
        return out
    if all(isinstance(i, int) and 0 <= i < len(labels) for i in out):
        return [labels[i] for i in out]
    return out

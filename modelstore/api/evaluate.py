"""``ms.evaluate``: accuracy, per-class precision / recall / F1 and the confusion matrix.

Works with anything ``ms.predict`` runs (torch, Keras, scikit-learn and ONNX models, loaded or
as a path, loaded safely). Classes are compared by name: the model's saved labels, the
``labels=`` given here (names by class index), or the values of ``y`` themselves. Computed
with numpy alone, so scikit-learn is not needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._info import printable
from ..errors import ArgumentError


@dataclass(frozen=True)
class Evaluation:
    """How well a classifier did on ``(X, y)``.

    ``labels`` are the class names in the order of every per-class list and of the confusion
    matrix's rows (true class) and columns (predicted class). ``wrong`` holds the indices of
    the misclassified samples.
    """

    n: int
    accuracy: float
    labels: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]
    wrong: list[int] = field(default_factory=list)

    @property
    def macro_f1(self) -> float:
        """The unweighted mean of the per-class F1 scores (classes with support only)."""
        scores = [f for f, s in zip(self.f1, self.support) if s]
        return sum(scores) / len(scores) if scores else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {**dataclasses.asdict(self), "macro_f1": self.macro_f1}

    def __str__(self) -> str:
        shown = [printable(x) for x in self.labels]  # class names may come from the file
        width = max([len(x) for x in shown] + [len("macro avg")])
        lines = [
            f"accuracy {self.accuracy:.4f} ({self.n - len(self.wrong)}/{self.n} correct)",
            "",
            f"{'class':<{width}}  precision  recall     f1  support",
        ]
        for name, p, r, f, s in zip(shown, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}}  {p:9.3f}  {r:6.3f}  {f:5.3f}  {s:7d}")
        lines.append(
            f"{'macro avg':<{width}}  {_mean(self.precision, self.support):9.3f}  "
            f"{_mean(self.recall, self.support):6.3f}  {self.macro_f1:5.3f}  {self.n:7d}"
        )
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        cell = max([len(x) for x in shown] + [len(str(v)) for row in self.confusion for v in row])
        lines.append(" " * width + "  " + " ".join(x.rjust(cell) for x in shown))
        for name, row in zip(shown, self.confusion):
            lines.append(f"{name:<{width}}  " + " ".join(str(v).rjust(cell) for v in row))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(x)}</th>" for x in self.labels)
        body = "".join(
            f"<tr><th>{html.escape(n)}</th><td>{p:.3f}</td><td>{r:.3f}</td><td>{f:.3f}</td><td>{s}</td></tr>"
            for n, p, r, f, s in zip(
                self.labels, self.precision, self.recall, self.f1, self.support
            )
        )
        conf = "".join(
            f"<tr><th>{html.escape(n)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
            for n, row in zip(self.labels, self.confusion)
        )
        return (
            f"<p>accuracy <b>{self.accuracy:.4f}</b> ({self.n - len(self.wrong)}/{self.n})</p>"
            f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>"
            f"{body}</table><p>confusion matrix (rows: true, columns: predicted)</p>"
            f"<table><tr><th></th>{head}</tr>{conf}</table>"
        )


def _mean(values: list[float], support: list[int]) -> float:
    kept = [v for v, s in zip(values, support) if s]
    return sum(kept) / len(kept) if kept else 0.0


def evaluate(
    model_or_path: Any,
    X: Any,
    y: Any,
    *,
    labels: list[Any] | None = None,
    batch_size: int | None = None,
) -> Evaluation:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix of a classifier.

    Parameters
    ----------
    model_or_path : a loaded model or a model file (torch, Keras, scikit-learn, ONNX).
    X : the inputs, as ``ms.predict`` takes them.
    y : the true classes, as indices (0..k-1) or as names.
    labels : class names by index, when the model was saved without them (or to rename them).
    batch_size : passed to ``ms.predict``.

    Returns
    -------
    Evaluation (``str()`` of it is a readable report).

    Raises
    ------
    ArgumentError : ``y`` and ``X`` differ in length, or a class index has no label.

    Examples
    --------
    >>> result = ms.evaluate("digits.safetensors", x_test, y_test)
    >>> print(result)            # accuracy, a per-class table and the confusion matrix
    >>> result.accuracy, result.confusion[3][8]
    """
    import numpy as np

    n = _length(X)
    labels = labels if labels is not None else saved_labels(model_or_path)
    truth = true_names(y, labels, n)
    pred = predicted_names(model_or_path, X, labels, batch_size=batch_size)
    if not set(truth) & set(pred):
        shown_t, shown_p = sorted(set(truth), key=_natural)[:5], sorted(set(pred), key=_natural)[:5]
        msg = (
            f"y holds {shown_t} but the model predicts {shown_p}: no class in common. If y holds "
            f"indices and the model names, pass labels=[...] (names by index) to map them"
        )
        raise ArgumentError(msg)
    classes = _class_order(labels, truth, pred)
    index = {c: i for i, c in enumerate(classes)}
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(conf, ([index[t] for t in truth], [index[p] for p in pred]), 1)
    tp = np.diag(conf).astype(np.float64)
    predicted_count = conf.sum(axis=0).astype(np.float64)
    support = conf.sum(axis=1)
    precision = np.divide(tp, predicted_count, out=np.zeros_like(tp), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return Evaluation(
        n=n,
        accuracy=float(tp.sum() / n),
        labels=classes,
        precision=[float(v) for v in precision],
        recall=[float(v) for v in recall],
        f1=[float(v) for v in f1],
        support=[int(v) for v in support],
        confusion=conf.tolist(),
        wrong=[i for i in range(n) if truth[i] != pred[i]],
    )


def _length(X: Any) -> int:
    if isinstance(X, (tuple, list)) and X and hasattr(X[0], "shape") and len(X[0].shape) > 1:
        X = X[0]  # several inputs: the first one's rows
    try:
        n = len(X)
    except TypeError:
        raise ArgumentError(
            f"X must be a batch of inputs (an array, list or tensor), not {type(X).__name__}"
        ) from None
    if n == 0:
        raise ArgumentError("X holds no samples; nothing to evaluate")
    return n


def _name(value: Any, labels: list[Any] | None) -> str:
    """One class as its name: an integer index goes through ``labels`` when given."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if labels is not None and isinstance(value, int) and not isinstance(value, bool):
        names = [str(x) for x in labels]
        if str(value) in names and labels and not isinstance(labels[0], str):
            return str(value)  # integer labels: the value is the label itself
        if not 0 <= value < len(labels):
            raise ArgumentError(
                f"class index {value} has no name: labels= lists {len(labels)} classes"
            )
        return str(labels[value])
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def true_names(y: Any, labels: list[Any] | None, n: int) -> list[str]:
    """The true classes as names; their number must match the inputs'."""
    if labels is not None and (not isinstance(labels, (list, tuple)) or not labels):
        raise ArgumentError(f"labels must be a non-empty list of class names, not {labels!r:.100}")
    values = y.tolist() if hasattr(y, "tolist") else list(y)
    if len(values) != n:
        raise ArgumentError(
            f"y has {len(values)} classes for {n} inputs; give one class per input row"
        )
    if values and isinstance(values[0], list):
        raise ArgumentError(
            "y must hold one class per sample (indices or names), not one-hot rows; "
            "use y.argmax(axis=1)"
        )
    return [_name(v, labels) for v in values]


def predicted_names(
    model_or_path: Any, X: Any, labels: list[Any] | None, *, batch_size: int | None = None
) -> list[str]:
    """The model's predicted classes as names (saved labels, else ``labels=``, else the values)."""
    from .predict import predict

    out = predict(model_or_path, X, output="label", batch_size=batch_size)
    values = out.tolist() if hasattr(out, "tolist") else list(out)
    return [_name(v, labels) for v in values]


def saved_labels(model_or_path: Any) -> list[Any] | None:
    """The class names saved with a model file, or carried by a model modelstore loaded."""
    import os

    if isinstance(model_or_path, (str, os.PathLike)):
        from .inspect import inspect

        return inspect(model_or_path).labels or None
    from ..formats.base import attached

    found = attached(model_or_path).get("labels")
    return list(found) if isinstance(found, list) and found else None


def _class_order(labels: list[Any] | None, truth: list[str], pred: list[str]) -> list[str]:
    seen = set(truth) | set(pred)
    if labels is not None:
        names = list(dict.fromkeys(str(x) for x in labels))
        return names + sorted(seen - set(names), key=_natural)
    return sorted(seen, key=_natural)


def _natural(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)

"""A third-party modelstore backend, written with public names only: scikit-learn linear models
(``LinearRegression``, ``Ridge``, ``Lasso``, ``LogisticRegression``) as plain JSON.

Why a plugin like this: a JSON file of coefficients carries no code at all, so it is safe to
share where a pickle is not. With ``priority = 10`` it becomes the default for the objects it
can save: ``ms.save(LogisticRegression(...).fit(X, y), "model")`` writes ``model.linear.json``
through this backend instead of a joblib pickle (a ``.joblib`` suffix still picks joblib).

Install it (``pip install ./examples/plugin_linear_json``) and call
``modelstore.refresh_backends()``, or ``modelstore.register(LinearJsonBackend)`` directly.
scikit-learn and numpy are imported inside the methods only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelstore import Finding, ScanReport
from modelstore.backends import (
    Backend,
    Inspection,
    LoadRequest,
    PredictRequest,
    TensorInfo,
    check_checksum,
    format_checksum,
    is_instance_of,
    new_checksum,
)
from modelstore.errors import ArgumentError, FormatError

#: The classes this format holds, by the name written in the file. The file names one of
#: these keys; nothing else it says is ever imported or called.
CLASSES = {
    "LinearRegression": ("sklearn.linear_model", "LinearRegression", False),
    "Ridge": ("sklearn.linear_model", "Ridge", False),
    "Lasso": ("sklearn.linear_model", "Lasso", False),
    "LogisticRegression": ("sklearn.linear_model", "LogisticRegression", True),
}
FORMAT = "linear-json/1"
MAX_BYTES = 256 << 20


@dataclass(frozen=True)
class SaveOptions:
    """``indent``: pretty-print the JSON (None: compact)."""

    indent: int | None = None

    def __post_init__(self) -> None:
        if self.indent is not None and (type(self.indent) is not int or not 0 <= self.indent <= 8):
            raise ArgumentError(f"indent= must be an int from 0 to 8, not {self.indent!r}")


def _kind(obj: Any) -> str | None:
    for name, (module, qualname, _) in CLASSES.items():
        if type(obj).__name__ == qualname and is_instance_of(obj, module, qualname):
            return name
    return None


def dump(
    model: Any, path: Path, meta: dict[str, Any] | None = None, indent: int | None = None
) -> None:
    """This format's own writer (what a user of the format would call without modelstore)."""
    kind = _kind(model)
    if kind is None:
        raise TypeError(f"not a supported linear model: {type(model).__qualname__}")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "class": kind,
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist()
        if hasattr(model.intercept_, "tolist")
        else float(model.intercept_),
        "n_features_in": int(model.n_features_in_),
    }
    if CLASSES[kind][2]:
        doc["classes"] = model.classes_.tolist()
    if meta is not None:
        doc["modelstore"] = meta
        doc["checksum"] = _checksum(doc)
    path.write_text(
        json.dumps(doc, indent=indent, allow_nan=False)
    )  # "format" first: sniffing sees it


def read(path: Path) -> dict[str, Any]:
    """The document, validated field by field (a file is hostile input)."""
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise FormatError(f"{path}: {len(raw)} bytes is too large for a linear model")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise FormatError(f"{path}: not a linear-json file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("class") not in CLASSES:
        raise FormatError(f"{path}: not a linear-json file (format {FORMAT} with a known class)")
    n = doc.get("n_features_in")
    if type(n) is not int or not 0 < n <= 1_000_000:
        raise FormatError(f"{path}: n_features_in must be a positive int")
    if not _numbers(doc.get("coef"), depth=2) or not _numbers(doc.get("intercept"), depth=1):
        raise FormatError(f"{path}: coef and intercept must be numbers")
    return doc


def _numbers(value: Any, depth: int) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return depth > 0 and isinstance(value, list) and all(_numbers(v, depth - 1) for v in value)


def _checksum(doc: dict[str, Any]) -> str:
    hasher = new_checksum()
    hasher.update(
        json.dumps({k: v for k, v in doc.items() if k != "checksum"}, sort_keys=True).encode()
    )
    return format_checksum(hasher)


def load_json(path: Path) -> Any:
    """This format's own reader: the estimator, fitted, from the numbers in the file."""
    import importlib

    import numpy as np

    doc = read(path)
    module, qualname, classifier = CLASSES[doc["class"]]
    est = getattr(importlib.import_module(module), qualname)()
    coef = np.asarray(doc["coef"], dtype=np.float64)
    if coef.ndim not in (1, 2) or coef.shape[-1] != doc["n_features_in"]:
        raise FormatError(f"{path}: coef has shape {coef.shape}, not (..., {doc['n_features_in']})")
    est.coef_ = coef
    est.intercept_ = (
        np.asarray(doc["intercept"], dtype=np.float64)
        if isinstance(doc["intercept"], list)
        else float(doc["intercept"])
    )
    est.n_features_in_ = doc["n_features_in"]
    if classifier:
        classes = doc.get("classes")
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or not all(isinstance(c, (int, str)) and not isinstance(c, bool) for c in classes)
        ):
            raise FormatError(f"{path}: a classifier needs a list of at least two class labels")
        rows = 1 if len(classes) == 2 else len(classes)
        if coef.ndim != 2 or coef.shape[0] != rows:
            raise FormatError(f"{path}: coef has {coef.shape[0]} rows for {len(classes)} classes")
        est.classes_ = np.asarray(classes)
    return est


class LinearJsonBackend(Backend):
    """scikit-learn linear models as JSON: no code, no pickle."""

    name = "linearjson"
    framework = "sklearn"
    suffixes = (".linear.json",)
    risk = "safe"  # declared; the pipeline still runs scan() because this is a plugin
    extra = None
    requires = ("sklearn",)
    embeds_metadata = True
    reads_one_file = True
    priority = 10  # above the built-in joblib backend: the default for these objects
    SaveOptions = SaveOptions

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.lstrip().startswith(b"{") and FORMAT.encode() in head[:64]

    def accepts(self, path: Path, head: bytes) -> bool:
        return head.lstrip().startswith(b"{")

    def can_save(self, obj: Any) -> bool:
        return _kind(obj) is not None and hasattr(obj, "coef_")

    def can_predict(self, obj: Any) -> bool:
        return _kind(obj) is not None

    def describe(self, obj: Any) -> dict[str, Any]:
        import sklearn

        return {
            "framework": "sklearn",
            "framework_version": sklearn.__version__,
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        dump(obj, tmp, meta, indent=options.indent)  # tmp: the pipeline renames it into place
        return None

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        doc = read(path)
        meta = doc.get("modelstore")
        if not isinstance(meta, dict):
            return None
        return (
            {**meta, "checksum": doc.get("checksum")}
            if isinstance(doc.get("checksum"), str)
            else meta
        )

    def verify(self, path: Path, meta: dict[str, Any]) -> None:
        doc = read(path)
        check_checksum(path, str(meta["checksum"]), _checksum(doc), "its checksum field")

    def scan(self, path: Path) -> ScanReport:
        try:
            read(path)
        except FormatError as e:
            return ScanReport(
                str(path), self.name, "unknown", [Finding("file", "warning", f"format: {e}")]
            )
        return ScanReport(str(path), self.name, "safe", [Finding("file", "info", "numbers only")])

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; a linear-json file holds the whole model"
            )
        return load_json(path)

    def inspect(self, path: Path) -> Inspection:
        doc = read(path)
        coef = doc["coef"]
        rows = len(coef) if isinstance(coef[0], list) else 1
        shape = (
            (rows, doc["n_features_in"]) if isinstance(coef[0], list) else (doc["n_features_in"],)
        )
        tensors = [TensorInfo("coef", shape, "float64", 8 * rows * doc["n_features_in"])]
        return Inspection(
            framework="sklearn",
            tensors=tensors,
            meta=self.read_meta(path),
            extra_metadata={"class": doc["class"]},
            labels=doc.get("classes"),
        )

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        import numpy as np

        from modelstore.backends import labels_from_scores

        x = np.asarray(inputs, dtype=np.float64)
        if request.output == "proba" and hasattr(model, "predict_proba"):
            return model.predict_proba(x)
        if request.output == "label" and hasattr(model, "predict_proba"):
            return (
                labels_from_scores(model.predict_proba(x), request.labels)
                if request.labels
                else model.predict(x).tolist()
            )
        return model.predict(x)

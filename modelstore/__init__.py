"""modelstore: save, load, inspect, run and convert trained models, safely.

>>> import modelstore as ms
>>> ms.save(net, "digits.safetensors", config={"hidden": 32}, labels=list("0123456789"))
>>> net = ms.load("digits.safetensors", model=Net)
>>> ms.predict(net, x, output="label")

Importing this package imports no framework (torch, tensorflow, sklearn, onnx) and no numpy;
each backend imports its framework the first time it is used.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import backends as _plugin_api  # noqa: F401 - first, so `backends` below is the function
from ._info import Finding, ModelInfo, ScanReport, TensorInfo
from ._version import __version__
from .api import (
    backends,
    convert,
    export,
    export_onnx,
    inspect,
    load,
    predict,
    refresh_backends,
    register,
    save,
    scan,
)

if _TYPE_CHECKING:
    from .api.evaluate import Evaluation, evaluate
    from .api.plots import plot_predictions, plot_weights
    from .api.quantize import quantize
    from .api.signing import SigningPolicy, VerifiedSignature, sign, verify
    from .api.stats import TensorStats, stats
    from .api.summary import summary
    from .api.summary_table import LayerSummary, Summary
    from .store import ModelVersion, Store
from . import errors as _errors
from .errors import *  # noqa: F403 - the error and warning tree, listed in errors.__all__

__all__ = [
    "__version__",
    # calls
    "save",
    "load",
    "predict",
    "inspect",
    "scan",
    "export",
    "export_onnx",
    "convert",
    "quantize",
    "register",
    # OpenSSF model signing (needs modelstore-safe[signing]; imported on first use)
    "sign",
    "verify",
    "SigningPolicy",
    "VerifiedSignature",
    "backends",
    "refresh_backends",
    # a versioned store on a local folder or any fsspec URI (s3://, gs://, memory://)
    "Store",
    # tutorials in a line: a layer table, weight statistics and pictures, classifier metrics
    "summary",
    "stats",
    "plot_weights",
    "evaluate",
    "plot_predictions",
    "Summary",
    "LayerSummary",
    "TensorStats",
    "Evaluation",
    # data
    "ModelVersion",
    "ModelInfo",
    "TensorInfo",
    "ScanReport",
    "Finding",
    # errors and warnings: see errors.__all__
]
__all__ += _errors.__all__

_LAZY = {  # not needed to save or load a file: imported on first use
    "Store": "store",
    "ModelVersion": "store",
    "summary": "api.summary",
    "Summary": "api.summary_table",
    "LayerSummary": "api.summary_table",
    "stats": "api.stats",
    "TensorStats": "api.stats",
    "evaluate": "api.evaluate",
    "Evaluation": "api.evaluate",
    "plot_weights": "api.plots",
    "plot_predictions": "api.plots",
    "quantize": "api.quantize",
    "sign": "api.signing",
    "verify": "api.signing",
    "SigningPolicy": "api.signing",
    "VerifiedSignature": "api.signing",
}


def __getattr__(name: str) -> _Any:
    """Import the store on first use, keeping ``import modelstore`` lean."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""The public calls: thin functions, each one straight line through :mod:`modelstore.pipeline`."""

from .convert import convert, export_onnx
from .export import export
from .inspect import inspect, recorded_metadata, scan
from .load import load
from .plugins import backends, refresh_backends, register
from .predict import OUTPUTS, predict
from .save import save

__all__ = [
    "OUTPUTS",
    "backends",
    "convert",
    "export",
    "export_onnx",
    "inspect",
    "load",
    "predict",
    "recorded_metadata",
    "refresh_backends",
    "register",
    "save",
    "scan",
]

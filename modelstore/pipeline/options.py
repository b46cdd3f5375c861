"""Typed options: each backend declares ``SaveOptions``/``LoadOptions`` (frozen dataclasses);
a keyword no field names is refused with the valid names, never ignored."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ArgumentError
from ..formats.base import Backend

#: Words tutorials teach for other libraries, and what to write here instead.
HINTS = {
    "map_location": "use device= (e.g. device='cpu')",
    "weights_only": "weights-only is the default; trust= opts out (trust=['module.Name'] or trust=True)",
    "pickle_module": "modelstore never takes a pickle module; trust= decides what may be unpickled",
    "safe_mode": "the safe mode is the default; trust= opts out",
    "compile": "Keras models load uncompiled only if you recompile them yourself after ms.load",
    "custom_objects": "pass trust=['module.Name'] for each custom class the file names",
    "mmap": "safetensors files are memory-mapped already",
    "_use_new_zipfile_serialization": "modelstore always writes the zip format",
    "providers": "ONNX Runtime providers are an option of .onnx loads only",
    "max_shard_size": (
        "max_shard_size= writes sharded safetensors: save to a folder, a NAME.safetensors "
        "or a NAME.safetensors.index.json"
    ),
    "compress": "compress= is a joblib option (scikit-learn files: .joblib, .pkl)",
}


def parse(backend: Backend, action: str, given: dict[str, Any], where: Path | str) -> Any:
    """``given`` as ``backend``'s ``SaveOptions`` (action ``"save"``) or ``LoadOptions``."""
    cls = backend.SaveOptions if action == "save" else backend.LoadOptions
    fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(k for k in given if k not in fields)
    if unknown:
        valid = ", ".join(f"{f}=" for f in fields) or "none"
        hints = "; ".join(f"{k}=: {HINTS[k]}" for k in unknown if k in HINTS)
        msg = (
            f"{where}: {action} of a {backend.name} file got unknown option(s) "
            f"{', '.join(k + '=' for k in unknown)}; the {backend.name} backend takes: {valid}"
        )
        raise ArgumentError(msg + (f" ({hints})" if hints else ""))
    try:
        return cls(**given)
    except ArgumentError as e:
        raise ArgumentError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{where}: invalid {backend.name} {action} option ({e})") from None

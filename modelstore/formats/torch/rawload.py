"""``torch.load`` as modelstore calls it: ``weights_only=True`` unless ``trust=True``, widened
only by the caller's ``trust=[...]`` names, on the file mapped (``mmap=True``) unless it is a
legacy stream, and its errors worded as :class:`~modelstore.ModelstoreError` subclasses."""

from __future__ import annotations

import importlib
import pickle
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ...errors import IntegrityError, MissingDependencyError, UnsafeModelError
from ..base import LoadRequest


def torch_load(path: Path, request: LoadRequest) -> Any:
    """``torch.load`` with ``weights_only=True`` (unless trust=True), errors translated."""
    import torch

    if request.trust is not True and _torch_version(torch) < (2, 10):
        msg = (
            f"{path}: loading an untrusted .pt needs torch >= 2.10 (its weights_only unpickler "
            f"had a heap corruption before); this is torch {torch.__version__}. Upgrade torch, "
            f"or pass trust=True only if you trust the file's author"
        )
        raise MissingDependencyError(msg, name="torch")
    legacy = not zipfile.is_zipfile(path)
    missing: list[str] = []
    try:
        with _allowing(request.trust, missing):
            obj = torch.load(
                path,
                map_location=request.device or "cpu",
                weights_only=request.trust is not True,
                mmap=not legacy,
            )
    except pickle.UnpicklingError as e:
        if missing:
            raise _class_not_importable(path, ", ".join(missing)) from None
        raise _translate(path, e) or e from None
    except Exception as e:
        mapped = _translate(path, e)
        if mapped is None:
            raise
        raise mapped from None
    return obj


def _torch_version(torch: Any) -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return (0, 0)


def _allowing(trust: bool | list[str], missing: list[str] | None = None) -> Any:
    """torch's weights_only unpickler, widened by the caller's ``trust=[...]`` globals (the
    names that cannot be imported are added to ``missing``)."""
    if isinstance(trust, bool) or not trust:
        return nullcontext()
    import torch

    objs = []
    for name in trust:
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as e:
            if missing is not None:
                missing.append(f"{name} ({type(e).__name__}: {e})")
            continue
        objs.append(obj)
        if name == "numpy.dtype":
            # torch's unpickler also checks the type of each dtype it rebuilds (Float64DType, ...):
            # trusting numpy.dtype means trusting what it makes
            import numpy

            objs.extend(
                v
                for v in vars(numpy.dtypes).values()
                if isinstance(v, type) and issubclass(v, numpy.dtype)
            )
    return torch.serialization.safe_globals(objs)


def _translate(path: Path, e: Exception) -> Exception | None:
    """What torch raised reading ``path``, as a ModelstoreError (None: not ours to word)."""
    if isinstance(e, (ImportError, AttributeError)):  # trust=True: a pickled module's class
        if isinstance(e, AttributeError) and "Can't get attribute" not in str(e):
            return None
        return _class_not_importable(path, str(e).splitlines()[0])
    if isinstance(e, pickle.UnpicklingError):
        msg = (
            f"{path}: torch refused to unpickle it with weights_only=True ({str(e).splitlines()[0]}). "
            f"Pass trust=True only if you trust the file's author"
        )
        return UnsafeModelError(msg)
    if isinstance(e, (RuntimeError, EOFError, ValueError, OSError)):
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return IntegrityError(
            f"{path}: torch could not read the file ({first}); it is damaged or truncated"
        )
    return None


def _class_not_importable(path: Path, detail: str) -> MissingDependencyError:
    """A pickled whole module names its class by import path: moved or renamed code, or a
    script's ``__main__``, cannot be found again (the file is not damaged)."""
    return MissingDependencyError(
        f"{path}: a class the file was pickled with could not be imported ({detail}). A pickled "
        f"whole module stores only the import path of its class, so the code must be importable "
        f"under the same name as when it was saved (not moved, renamed or defined in __main__). "
        f"Put that module on sys.path, or in the code that made the file re-save the weights: "
        f"ms.save(model, 'model.safetensors'), loaded later with model=YourClass"
    )

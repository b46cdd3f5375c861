"""The second line of defence: unpicklers whose ``find_class`` enforces the allow-list.

The static scan decides before anything is read; these make sure that even a stream the
scanner misread cannot import anything outside the allow-list plus the caller's trust list.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..errors import UnsafeModelError


def _guarded(base: type, allowed: Callable[[str], bool], trusted: Collection[str], path: Path) -> type:
    class Guarded(base):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            mod, nm = module, name
            if getattr(self, "proto", 3) < 3:
                if (mod, nm) in _compat_pickle.NAME_MAPPING:
                    mod, nm = _compat_pickle.NAME_MAPPING[(mod, nm)]
                elif mod in _compat_pickle.IMPORT_MAPPING:
                    mod = _compat_pickle.IMPORT_MAPPING[mod]
            qualname = f"{mod}.{nm}"
            if not (allowed(qualname) or qualname in trusted):
                msg = (
                    f"{path}: refusing to import {qualname} while unpickling; nothing from the "
                    f"file was executed. Pass trust=[{qualname!r}] if you trust its author"
                )
                raise UnsafeModelError(msg, [qualname])
            return super().find_class(module, name)

    return Guarded


def load_pickle(path: Path, allowed: Callable[[str], bool], trusted: Collection[str]) -> Any:
    """Unpickle a plain pickle file with the guarded ``find_class``."""
    with open(path, "rb") as f:
        return _guarded(pickle.Unpickler, allowed, trusted, path)(f).load()


def load_joblib(path: Path, allowed: Callable[[str], bool], trusted: Collection[str]) -> Any:
    """``joblib.load`` with the guarded ``find_class`` (handles compression and raw arrays)."""
    from joblib.numpy_pickle import NumpyUnpickler
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    cls = _guarded(NumpyUnpickler, allowed, trusted, path)
    with open(path, "rb") as f, _validate_fileobject_and_memmap(f, str(path), None) as (fobj, _):
        if isinstance(fobj, str):
            # joblib < 0.10 kept arrays in companion files: not supported
            raise pickle.UnpicklingError("a joblib < 0.10 file with companion array files")
        return cls(str(path), fobj, ensure_native_byte_order=True).load()

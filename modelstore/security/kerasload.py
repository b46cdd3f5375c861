"""The load-time Keras size check: build the model the way Keras' loader does, without
allocating a variable, and compare what it declares with what the file stores
(:mod:`.kerassize` holds the checks; :mod:`.kerasfile` reads the stored sizes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .kerasbuild import check_build
from .kerassize import SizeError


def check_load(
    path: Path, kind: str, configs: list[tuple[str, dict[str, Any], bool]], *, safe: bool
) -> None:
    """The load-time check of every model config in ``path`` (see :func:`check_build`), as
    ModelstoreErrors: UnsafeModelError for sizes the file does not back. A config Keras cannot
    build raises Keras' own error, which the backend reports as it reports a failed load."""
    from ..errors import FormatError, UnsafeModelError
    from .kerasfile import KerasFileError, stored_sizes

    try:
        stored = stored_sizes(path, kind)
    except KerasFileError as e:
        raise FormatError(f"{path}: {e}") from None
    for name, config, legacy in configs:
        if name == "training_config":
            continue
        try:
            with _safe_mode(safe):
                check_build(config, legacy, stored, where=f"the model config ({name})", safe=safe)
        except SizeError as e:
            msg = f"{path}: refusing to load: {e}. Nothing was allocated; the file is damaged or hostile"
            raise UnsafeModelError(msg, []) from None


@contextmanager
def _safe_mode(safe: bool) -> Iterator[None]:
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        yield
        return
    with SafeModeScope(safe):
        yield

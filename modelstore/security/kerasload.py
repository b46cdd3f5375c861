"""The load-time Keras size check: build the model the way Keras' loader does, without
allocating a variable, and compare what it declares with what the file stores
(:mod:`.kerassize` holds the checks; :mod:`.kerasfile` reads the stored sizes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .kerasbuild import declared_by, match
from .kerassize import SizeError


def check_load(
    path: Path,
    kind: str,
    configs: list[tuple[str, dict[str, Any], bool]],
    *,
    safe: bool,
    early: Any = None,
) -> None:
    """The load-time check of every model config in ``path`` (see :func:`.kerasbuild.declared_by` and :func:`~.kerasbuild.match`),
    as ModelstoreErrors: UnsafeModelError for sizes the file does not back. A config Keras cannot
    build raises Keras' own error, which the backend reports as it reports a failed load.
    ``early``: a build already made of one of these very configs in the same safe mode, while
    the HDF5 guard ran (``.result``: config, safe mode, and the declared variables or what the
    build raised); it is used instead of building again."""
    from ..errors import FormatError, UnsafeModelError
    from .kerasfile import KerasFileError, stored_weights

    try:
        stored = stored_weights(path, kind)
    except KerasFileError as e:
        raise FormatError(f"{path}: {e}") from None
    for name, config, legacy in configs:
        if name == "training_config":
            continue
        where = f"the model config ({name})"
        try:
            declared = _built(early, config, safe)
            if declared is None:
                with _safe_mode(safe):
                    declared = declared_by(config, legacy, where, safe=safe)
            match(declared, stored, where)
        except SizeError as e:
            msg = f"{path}: refusing to load: {e}. Nothing was allocated; the file is damaged or hostile"
            raise UnsafeModelError(msg, []) from None


def _built(early: Any, config: dict[str, Any], safe: bool) -> Any:
    """What ``early`` built for exactly ``config`` in ``safe`` mode (re-raising what the build
    raised), or None when it built nothing or something else."""
    result = getattr(early, "result", None)
    if result is None:
        return None
    built, built_safe, outcome = result
    if built_safe is not safe or built != config:
        return None
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@contextmanager
def _safe_mode(safe: bool) -> Iterator[None]:
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        yield
        return
    with SafeModeScope(safe):
        yield

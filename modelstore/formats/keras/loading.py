"""Keras loads: the safe-mode decision, the Keras version the gated path needs, thread-local
safe mode, weights-only files, and Keras' errors as modelstore errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import (
    ArchitectureMismatchError,
    ArgumentError,
    FormatError,
    MissingDependencyError,
    ModelstoreError,
    UnsafeModelError,
)
from ...security.kerasaudit import Audit
from ..base import is_instance_of

#: The oldest Keras whose loader the gated path relies on (safe mode that fails closed for
#: Lambda and TFSMLayer, zip-bomb and non-modelling-API guards of its own).
MIN_KERAS = (3, 13, 2)


def _safe_mode_for(path: Path, found: Audit, trust: bool | list[str]) -> bool:
    """Keras' safe mode for this load: off only when every finding that needs it off (and
    every other finding) is named in ``trust``; a trust list widens exactly what it names."""
    trusted = set(trust) if isinstance(trust, list) else set()
    left = [f.subject for f in found.findings if f.subject not in trusted]
    if left:  # the gate refused these already; a second line, not a second policy
        msg = (
            f"{path}: refusing to load: the file references {', '.join(left)}, which trust= does "
            f"not name; nothing from the file was run"
        )
        raise UnsafeModelError(msg, left)
    return not found.needs_unsafe


def _keras_ok(version: str) -> bool:
    numbers = [int(p) for p in (version.split("+")[0].split(".") + ["0", "0"])[:3] if p.isdigit()]
    return tuple(numbers) >= MIN_KERAS


def _require_keras(path: Path, version: str) -> None:
    if not _keras_ok(version):
        want = ".".join(map(str, MIN_KERAS))
        msg = (
            f"{path}: loading a Keras file safely needs keras >= {want} (installed: {version}); "
            f'run: pip install -U "keras>={want}"'
        )
        raise MissingDependencyError(msg, name="keras")


@contextlib.contextmanager
def _pinned_safe_mode(safe: bool) -> Iterator[None]:
    """Pin Keras' safe mode for this thread while loading: a process-wide
    ``keras.config.enable_unsafe_deserialization()`` would otherwise override safe_mode=True."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a Keras without it: the audit and safe_mode= remain
        yield
        return
    with SafeModeScope(safe):
        yield


def _load_error(path: Path, e: Exception, kind: str) -> ModelstoreError:
    """The answer to a Keras error while rebuilding: ``kind`` ("keras", "h5") says which hint
    fits (``path`` may be a descriptor's path without the file's suffix)."""
    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)[:300]
    if "safe_mode" in str(e) or "unsafe" in str(e).lower():
        return UnsafeModelError(
            f"{path}: Keras refused part of the config in safe mode ({first}); nothing "
            f"from the file was run"
        )
    reason = _keras_reason(e)
    hint = (
        " It may come from another Keras (Keras 2 / tf.keras): load it with the Keras that wrote "
        "it and re-save it as .keras"
    )
    return FormatError(
        f"{path}: Keras could not rebuild this model: {reason}. The file was read, "
        f"not run.{hint if kind == 'h5' else ''}"
    )


def _keras_reason(e: Exception) -> str:
    """The informative part of a Keras deserialisation error: Keras wraps the cause as
    "Error when deserializing class X using config={...}. Exception encountered: CAUSE"."""
    text = " ".join(str(e).split())
    cls = text.partition("Error when deserializing class ")[2].partition(" ")[0].strip("'\"")
    cause = (
        text.rpartition("Exception encountered:")[2].strip()
        if "Exception encountered:" in text
        else ""
    )
    if cls and cause:
        return f"{type(e).__name__} in layer class {cls}: {cause[:300]}"
    return f"{type(e).__name__}: {(cause or text or type(e).__name__)[:300]}"


def _load_weights(path: Path, model: Any, open_as: str | None = None) -> Any:
    if model is None or isinstance(model, type) or not is_instance_of(model, "keras", "Model"):
        msg = (
            f"{path}: a .weights.h5 file holds weights only: pass model= a Keras model you built "
            f"(same layers, built with the same input shape)"
        )
        raise ArgumentError(msg)
    try:
        model.load_weights(open_as or path)  # open_as: a suffixed link to a descriptor
    except ValueError as e:
        detail = " ".join(str(e).split())[:400]
        msg = (
            f"{path}: the weights do not fit {type(model).__qualname__} {model.name!r}: "
            f"{detail} Build the model exactly as it was when saved"
        )
        raise ArchitectureMismatchError(msg) from None
    except Exception as e:  # h5py and Keras raise KeyError/OSError/TypeError on odd files
        raise FormatError(
            f"{path}: Keras could not read the weights ({type(e).__name__}: {e})"[:500]
        ) from None
    return model


class EarlyBuild:
    """:func:`~modelstore.security.kerasfile.check`'s ``meanwhile`` for a ``.keras`` load: the
    stateless size-check build of the archive's config, run while the guard child walks the
    HDF5 weights (two cores: the child's interpreter start and the build overlap), so that
    ``check_load`` only compares it with the stored sizes. It builds only a config with no
    audit finding at all (a trusted Lambda's code runs in a build: that waits until the whole
    scan has passed), within the size limits that do not depend on the stored weights, whose
    declared weights fit the most the weights member could hold. Whatever is wrong with the
    file is left to the scan that follows, which reports it as it always does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: (config, safe mode, declared variables or what the build raised), once built
        self.result: tuple[dict[str, Any], bool, Any] | None = None
        #: the built model and its uninitialised variables, for the load to finish (reuse.py)
        self.kept: list[Any] = []
        #: the weights member as the checked archive records it (reuse.py reads no other)
        self.member: tuple[int, int, int, int] | None = None

    def __call__(self) -> None:
        from ...security.kerasbuild import declared_by
        from ...security.kerasfile import archive_configs, audit_configs, held_ratio
        from ...security.kerash5 import MAX_RATIO
        from ...security.kerassize import check_config

        try:
            configs, _ = archive_configs(self.path)
            (_, config, _), *_ = configs
            found = audit_configs(configs)
            # any finding, even a trusted one (a Lambda's code runs in the build), waits until
            # the whole scan has passed (check_load builds then). The build makes no tensor:
            # statistics and RNN states are declared or inferred (kerasbuild.declared_by)
            if found.findings:
                return
            # the size limits, and the weights declared against the most the weights member
            # can store (the scan checks them against what it does store): a file refused for
            # its sizes is refused without building, nor importing Keras
            self.member = _member(self.path)  # read after every CRC passed
            check_config(
                config,
                [MAX_RATIO * (self.member or (0,))[0] + (1 << 20)],
                held_ratio=held_ratio(self.path, "config.json"),
            )
            import keras

            if not _keras_ok(keras.__version__):  # load refuses it after the scan
                return
        except Exception:  # refused or unreadable: the scan that follows says so
            return
        outcome: Any
        try:  # no finding: safe mode on, as the load will have it
            with _pinned_safe_mode(True):
                outcome = declared_by(
                    config, False, "the model config (config.json)", safe=True, keep=self.kept
                )
        except Exception as e:  # raised again by check_load, where the build would have been
            outcome = e
        self.result = (config, True, outcome)


def _member(path: Path) -> tuple[int, int, int, int] | None:
    """What the checked archive says of its ``model.weights.h5``: (size, stored size, CRC,
    offset); None without one."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    i = infos.get("model.weights.h5")
    return None if i is None else (i.file_size, i.compress_size, i.CRC, i.header_offset)

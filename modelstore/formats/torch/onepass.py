"""The gated read of an untrusted ``.pt``: one pass where it can be, the scan first where not.

A plain ``torch.save`` zip archive loaded without ``trust`` is read once, by modelstore's
restricted unpickler inside ``torch.load`` (:mod:`modelstore.security.torch_load`). Everything
else keeps the two passes it had: the static scan (refusing what the allow-list does not
name), then ``torch.load(weights_only=True)`` (widened only by the caller's ``trust=[...]``):
legacy streams, shard indexes, a caller's trust list, and archives whose records use a
construct the one-pass reader leaves to torch (sparse, quantized, subclass tensors,
expanded views, tensor metadata), which it signals before calling anything.

A refusal is a refusal either way: when the one pass refuses, the scan runs only to word the
error the way ``ms.scan`` would; if the scan finds nothing to say, the one-pass refusal stands.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._info import ScanReport
from ...errors import ModelstoreError, UnsafeModelError
from ...security import enforce
from ..base import LoadRequest


def gated_load(
    path: Path,
    request: LoadRequest,
    scan: Callable[[Path], ScanReport],
    two_pass: Callable[[Path, LoadRequest], Any],
    translate: Callable[[Path, Exception], Exception | None],
) -> Any:
    """Load ``path`` as ``torch.load`` would, under the gate. ``two_pass`` is torch.load with
    weights_only (after the scan here); ``translate`` turns what torch raises into a
    ModelstoreError (None: re-raise as is)."""
    if request.trust is True:
        return two_pass(path, request)
    if request.trust or not zipfile.is_zipfile(path) or _forced_weights_only():
        enforce(scan(path), request.trust)
        return two_pass(path, request)
    from ...security.pickle_stream import PickleStreamError
    from ...security.torch_load import Unsupported, load
    from ...security.torchfile import TorchFileError, check_zip

    try:
        check_zip(path)
    except TorchFileError as e:
        enforce(scan(path), request.trust)  # words the refusal as ms.scan does
        raise _stream_error(path, e) from None
    try:
        return load(path, str(path), request.device or "cpu")
    except Unsupported:
        enforce(scan(path), request.trust)
        return two_pass(path, request)
    except (ModelstoreError, PickleStreamError) as e:
        enforce(scan(path), request.trust)
        if isinstance(e, PickleStreamError):
            raise _stream_error(path, e) from None
        raise
    except Exception as e:
        mapped = translate(path, e)
        if mapped is None:
            raise
        raise mapped from None


def _forced_weights_only() -> bool:
    """torch then refuses any pickle_module: keep to its own weights_only unpickler."""
    import os

    return os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true")


def _stream_error(path: Path, e: Any) -> ModelstoreError:
    """A PickleStreamError or TorchFileError (``kind``: suspicious, or damage) as the error
    the two-pass path raises for it."""
    from ...errors import IntegrityError

    if e.kind == "suspicious":
        msg = f"{path}: refusing to load: the file is crafted ({e}). Nothing from the file was executed"
        return UnsafeModelError(msg, [])
    return IntegrityError(
        f"{path}: the pickle could not be read ({e}); the file is damaged or truncated. Fetch it again"
    )

"""The public plugin API: everything a third-party backend needs, by public names.

A backend subclasses :class:`Backend` and declares its ``name``, ``suffixes``, ``risk``
(``"safe"``, ``"restricted"`` or ``"pickle"``: how dangerous a naive load of its files is),
``extra``/``requires`` (what installs its framework), how it recognises files (``sniff``)
and objects (``can_save``/``can_predict``, which must not import a framework: use
:func:`is_instance_of`), a ``priority`` for objects several backends can save, typed
``SaveOptions``/``LoadOptions`` (frozen dataclasses; unknown keywords are refused for it),
and ``companions(path)`` (files beside the model that its load reads).

The write contract: :meth:`Backend.write` writes the whole model to ``tmp``, a fresh file
beside the target; the pipeline fsyncs it and renames it over the target, so a crash leaves
the previous model whole. Never write the target itself. Backends that do not embed
metadata get a ``PATH.modelstore.json`` sidecar written by the pipeline; the suffixes
``.modelstore.json`` and ``.index.json`` are reserved and cannot be claimed.

The pipeline, not the backend, runs the trust gate and the confinement of companion files:
a plugin that declares ``risk = "safe"`` is still scanned (its ``scan`` decides). Test a
plugin with :class:`modelstore.testing.BackendContract`; install it under the entry-point
group ``modelstore.backends`` and call :func:`modelstore.refresh_backends`.
"""

from __future__ import annotations

from .._info import ScanReport, TensorInfo
from ..formats.base import (
    ATTR,
    Backend,
    Exported,
    Inspection,
    LoadRequest,
    NoOptions,
    PredictRequest,
    Risk,
    attached,
    describe_inputs,
    is_instance_of,
    labels_from_scores,
)
from ..storage.hashing import (
    check_checksum,
    file_checksum,
    format_checksum,
    new_checksum,
    update_from_file,
)

__all__ = [
    "ATTR",
    "Backend",
    "Exported",
    "Inspection",
    "LoadRequest",
    "NoOptions",
    "PredictRequest",
    "Risk",
    "ScanReport",
    "TensorInfo",
    "attached",
    "check_checksum",
    "describe_inputs",
    "file_checksum",
    "format_checksum",
    "is_instance_of",
    "labels_from_scores",
    "new_checksum",
    "update_from_file",
]

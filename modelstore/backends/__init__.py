"""Backends: one module per format family. Plugin authors subclass :class:`Backend`.

Modules here import no framework at module level; see ``modelstore._registry`` for the table.
"""

from __future__ import annotations

from ._base import Backend, Inspection, LoadRequest, PredictRequest, Risk

__all__ = ["Backend", "Inspection", "LoadRequest", "PredictRequest", "Risk"]

"""What to say when inputs do not fit a model: the expected shape, and "add a batch
dimension" when the inputs are one sample of it. Imports no framework."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def expected_shapes(meta: dict[str, Any]) -> list[list[Any]] | None:
    """The input shapes a recorded ``signature`` names (batch dimension None), or None."""
    sig = meta.get("signature") if isinstance(meta, dict) else None
    inputs = sig.get("inputs") if isinstance(sig, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return None
    shapes = [i.get("shape") for i in inputs if isinstance(i, dict)]
    if not shapes or not all(isinstance(s, list) for s in shapes):
        return None
    return [list(s) for s in shapes if isinstance(s, list)]


def _show(shape: Sequence[Any]) -> str:
    dims = [str(d) if isinstance(d, int) else "N" for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _fits(given: Sequence[int], expected: Sequence[Any]) -> bool:
    return len(given) == len(expected) and all(
        not isinstance(e, int) or e == g for g, e in zip(given, expected, strict=True)
    )


def fit_hint(given: Sequence[Sequence[int]], expected: list[list[Any]] | None) -> str:
    """`` The model expects (N, 64).`` and, for one unbatched sample, how to batch it."""
    if not expected:
        return ""
    wanted = ", ".join(_show(e) for e in expected)
    if len(given) == len(expected) and all(
        len(g) == len(e) - 1 and _fits(g, e[1:]) for g, e in zip(given, expected, strict=True)
    ):
        batched = ", ".join(_show((1, *g)) for g in given)
        return (
            f" These look like one sample without its batch dimension: add one, "
            f"x[None] or x.unsqueeze(0) (shape {batched}); the model expects {wanted}."
        )
    return f" The model expects {wanted}."


def runtime_message(error: BaseException) -> str:
    """A framework's error on one line, keeping the detail lines (``index: 1 Got: 2
    Expected: 64``) and dropping boilerplate."""
    lines = [re.sub(r"\s*Please fix either.*$", "", ln).strip() for ln in str(error).splitlines()]
    text = " ".join(ln for ln in lines if ln)[:600] or type(error).__name__
    return text if text.endswith((".", ")")) else text + "."

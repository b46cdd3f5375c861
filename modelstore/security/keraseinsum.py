"""Keras' EinsumDense, read from its config alone (no Keras): the axes of its equation, the
shape it outputs and its kernel's shape, as Keras' ``_analyze_einsum_string`` makes them."""

from __future__ import annotations

import re
from typing import Any

from .kerasvocab import _int

#: Keras' three forms of an EinsumDense equation (``_analyze_einsum_string``, "..." read as
#: "0", matched from the start as ``re.match`` does): none elided, left elided, right elided.
_EINSUM = (
    (re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), False),
    (re.compile(r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)"), True),
    (re.compile(r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0"), False),
)


def einsum_axes(equation: Any, output_shape: Any, input_shape: list[Any] | None) -> Any:
    """(kernel letters, input shape, full output shape, input and output axis of each
    letter), as Keras' ``_analyze_split_string`` makes them; None if Keras would not."""
    if not isinstance(equation, str):
        return None
    text = equation.replace("...", "0")
    found = next(((m, left) for p, left in _EINSUM if (m := p.match(text))), None)
    if found is None:
        return None
    (source, kernel, out), left = found[0].groups(), found[1]
    shape = list(input_shape or [None] * (len(source) + left))
    wanted = output_shape if isinstance(output_shape, (list, tuple)) else [output_shape]
    elided = len(shape) - len(source)
    outs = [shape[0], *wanted]
    if elided > 0 and left:
        outs[1:1] = reversed(shape[1:elided])  # Keras inserts them at 1, one by one
    elif elided > 0:
        outs += shape[len(shape) - elided :]
    skip = elided if left else 0
    in_at = {c: i + skip - (len(shape) if left else 0) for i, c in enumerate(source)}
    out_at = {c: i + skip for i, c in enumerate(out)}
    return kernel, shape, outs, in_at, out_at


def einsum_output(equation: Any, output_shape: Any, input_shape: list[Any]) -> list[Any] | None:
    """The shape an EinsumDense outputs for ``input_shape`` (Keras' ``full_output_shape``)."""
    parts = einsum_axes(equation, output_shape, input_shape)
    return None if parts is None else list(parts[2])


def einsum_sizes(
    equation: Any, output_shape: Any, input_shape: list[Any] | None
) -> list[int] | None:
    """The kernel's dimensions (an unknown one: 1); None where Keras would not build it."""
    parts = einsum_axes(equation, output_shape, input_shape)
    return None if parts is None else kernel_sizes(parts)


def kernel_sizes(parts: Any) -> list[int] | None:
    """The kernel's dimensions from :func:`einsum_axes`' parts (an unknown one: 1)."""
    kernel, shape, outs, in_at, out_at = parts
    sizes = []
    for c in kernel:
        where, at = (outs, out_at[c]) if c in out_at else (shape, in_at.get(c))
        if at is None or not -len(where) <= at < len(where):
            return None
        sizes.append(_int(where[at]) or 1)
    return sizes

"""``Summary`` and ``LayerSummary``: what ``ms.summary`` returns, printed as a table, JSON or HTML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._info import printable

Shape = list[int | None]


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its name, type, output shape and the parameters it owns itself.

    ``params`` and ``trainable`` count the layer's own parameters (not its children's), so the
    column adds up to the total; ``buffers`` counts its own buffer values.
    """

    name: str
    type: str
    depth: int
    output_shape: Shape | None
    params: int
    trainable: int | None
    buffers: int = 0


@dataclass(frozen=True)
class Summary:
    """A model's layers with totals; ``str()`` is a table, ``to_dict()`` JSON, and notebooks
    show ``_repr_html_``.

    ``trainable_params`` is None where the format does not record it (ONNX).
    """

    name: str
    framework: str
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int | None
    buffers: int
    input_shapes: list[Shape] | None = None
    notes: list[str] = field(default_factory=list)
    size_bytes: int | None = None  # parameters and buffers as stored (None where unknown)

    @property
    def frozen_params(self) -> int | None:
        return None if self.trainable_params is None else self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "frozen_params": self.frozen_params}

    def _rows(self) -> list[list[str]]:
        rows = [["layer", "type", "output shape", "params", "trainable"]]
        for r in self.layers:
            shape = (
                ""
                if r.output_shape is None
                else "x".join("?" if d is None else str(d) for d in r.output_shape)
            )
            rows.append(
                [
                    "  " * (r.depth - 1) + printable(r.name),
                    printable(r.type),
                    shape,
                    f"{r.params:,}" if r.params else "-",
                    ""
                    if r.trainable is None or not r.params
                    else (
                        "yes"
                        if r.trainable == r.params
                        else "no"
                        if r.trainable == 0
                        else f"{r.trainable:,}"
                    ),
                ]
            )
        return rows

    def __str__(self) -> str:
        rows = self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {3}
        lines = [f"{self.name} ({self.framework})"]
        if self.input_shapes:
            lines[0] += "  input " + ", ".join(
                "x".join("?" if d is None else str(d) for d in s) for s in self.input_shapes
            )
        lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        for i, r in enumerate(rows):
            cells = [
                c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))
            ]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append(lines[1])
        lines.append(lines[1])
        lines.append(f"total params: {self.total_params:,}")
        if self.trainable_params is not None:
            lines.append(f"trainable params: {self.trainable_params:,}")
            lines.append(f"frozen params: {self.frozen_params:,}")
        lines.append(f"buffers (not params): {self.buffers:,}")
        if self.size_bytes is not None:
            lines.append(f"weights size: {_human(self.size_bytes)} (params and buffers)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        rows = self._rows()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
        )
        totals = f"total params {self.total_params:,}"
        if self.trainable_params is not None:
            totals += f", trainable {self.trainable_params:,}, frozen {self.frozen_params:,}"
        totals += f"; buffers {self.buffers:,}"
        notes = "".join(f"<br><i>{html.escape(n)}</i>" for n in self.notes)
        return (
            f"<p><b>{html.escape(self.name)}</b> ({html.escape(self.framework)})</p>"
            f"<table><tr>{head}</tr>{body}</table><p>{totals}{notes}</p>"
        )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

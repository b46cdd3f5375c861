"""A budget for the walks that list what a loaded or scanned file holds (``inspect``,
``stats``): through the pickle memo a few hundred bytes can be a graph with exponentially
many paths from its root, and each path's dotted name can be megabytes long (red team)."""

from __future__ import annotations

#: Visits a walk makes at most; a real state dict has one node per tensor and container.
MAX_VISITS = 1_000_000


class WalkBudget:
    """What one walk may still visit; shared by the recursive calls of that walk."""

    __slots__ = ("left",)

    def __init__(self, visits: int = MAX_VISITS) -> None:
        self.left = visits

    def spend(self, name: str = "") -> bool:
        """Charge one visit, and its name's length per 64 characters; False once spent."""
        self.left -= 1 + len(name) // 64
        return self.left >= 0

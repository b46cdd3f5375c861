"""The allow-list's vocabulary: an :class:`Entry` (one exact object, its kind, its reason)
and the kinds (see :mod:`.allowlist`)."""

from __future__ import annotations

from dataclasses import dataclass

CONSTRUCT, CALL, VALUE = "construct", "call", "value"


@dataclass(frozen=True)
class Entry:
    """One allowed object: where a stream finds it, how it may use it, and why it is safe."""

    module: str
    name: str
    kind: str
    reason: str
    #: ``"module:qualname"`` of the object when the stream's spelling is an alias (numpy 1.x's
    #: ``numpy.core`` for numpy 2's ``numpy._core``); empty when the spelling is the home.
    home: str = ""

    @property
    def key(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def target(self) -> tuple[str, str]:
        if self.home:
            module, _, qual = self.home.partition(":")
            return module, qual
        return self.module, self.name


def group(kind: str, reason: str, module: str, names: str, home: str | None = None) -> list[Entry]:
    """Entries for several names of one module sharing a reason (``home``: their real module)."""
    return [Entry(module, n, kind, reason, f"{home}:{n}" if home else "") for n in names.split()]

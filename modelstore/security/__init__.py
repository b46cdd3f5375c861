"""The trust policy: classify what a file references, and refuse what is not allowed.

Backends produce a :class:`~modelstore.ScanReport`; :func:`enforce` is the one gate the
front door applies to every load of a non-``safe`` backend.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .._info import Finding, ScanReport, Verdict
from ..errors import FormatError, IntegrityError, UnsafeModelError

if TYPE_CHECKING:
    from .pickle_scan import PickleReport

TrustArg = bool | Collection[str]


def classify(
    path: Path,
    fmt: str,
    streams: Iterable[tuple[str, PickleReport]],
    allowed: frozenset[str] | Callable[[str], bool],
) -> ScanReport:
    """A verdict for pickle streams: unsafe if any global is outside ``allowed``,
    unknown if a stream could not be followed, else safe."""
    findings: list[Finding] = []
    globals_: list[str] = []
    unknown = False
    for label, rep in streams:
        for g in rep.globals:
            if g not in globals_:
                globals_.append(g)
        if rep.error:
            unknown = True
            findings.append(Finding(label, "warning", f"{DAMAGED}: cannot be read statically: {rep.error}"))
    ok = allowed.__contains__ if isinstance(allowed, frozenset) else allowed
    for g in globals_:
        if not ok(g):
            findings.append(Finding(g, "critical", _reason(g)))
    verdict: Verdict = "unsafe" if any(f.severity == "critical" for f in findings) else (
        "unknown" if unknown else "safe")
    return ScanReport(str(path), fmt, verdict, findings, globals_)


#: Reason prefixes of an "unknown" verdict, which the gate turns into the right error.
DAMAGED, WRONG_FORMAT = "damaged", "not this format"


def unreadable(path: Path, fmt: str, kind: str, message: str, subject: str = "file") -> ScanReport:
    """An "unknown" verdict for a file the scanner could not read. ``kind`` is "damaged"
    (IntegrityError on load), "format" (FormatError) or anything else (refused as unsafe)."""
    prefix = {"damaged": f"{DAMAGED}: ", "format": f"{WRONG_FORMAT}: "}.get(kind, "")
    return ScanReport(str(path), fmt, "unknown", [Finding(subject, "warning", prefix + message)])


def _reason(g: str) -> str:
    if g.startswith("<computed>"):
        return "a global whose name is computed while unpickling (an obfuscation pattern)"
    if g.startswith("<copyreg-extension>"):
        return "a copyreg extension code, which names a global indirectly"
    if g.startswith("<build>"):
        return "state set on a plain value through __setstate__"
    return "imported and run by unpickling; not on modelstore's data allow-list"


def enforce(report: ScanReport, trust: TrustArg) -> None:
    """Raise :class:`UnsafeModelError` unless every finding is allowed by ``trust``."""
    if trust is True:
        return
    trusted = set() if trust is False else set(trust)
    blocked = [g for g in report.untrusted if g not in trusted]
    if blocked:
        by_reason: dict[str, list[str]] = {}
        for f in report.findings:
            if f.severity == "critical" and f.subject in blocked:
                by_reason.setdefault(f.reason, []).append(f.subject)
        what = "; ".join(f"{', '.join(subjects)} ({reason})" for reason, subjects in by_reason.items())
        suggestion = ", ".join(repr(g) for g in blocked)
        msg = (
            f"{report.path}: refusing to load: the file references {what}. Nothing from the "
            f"file was executed. If you trust the file's author, pass trust=[{suggestion}] "
            f"(or trust=True to allow anything)"
        )
        if report.format == "torch":
            msg += (
                ". A whole pickled module is best re-saved as weights: in the code that made "
                "it, ms.save(model, 'model.safetensors') and load it with model=YourClass"
            )
        raise UnsafeModelError(msg, blocked)
    if report.verdict == "unknown":
        reasons = "; ".join(f"{f.subject}: {f.reason}" for f in report.findings)
        kinds = {f.reason.split(":", 1)[0] for f in report.findings if f.severity == "warning"}
        if kinds == {WRONG_FORMAT}:
            raise FormatError(f"{report.path}: {reasons}; pass the right format= or none")
        if kinds == {DAMAGED}:
            msg = (
                f"{report.path}: the file is damaged or truncated ({reasons}); nothing from it "
                f"was run. Fetch it again"
            )
            raise IntegrityError(msg)
        msg = (
            f"{report.path}: refusing to load: the file cannot be checked ({reasons}). "
            f"Pass trust=True only if you trust its author"
        )
        raise UnsafeModelError(msg, [])

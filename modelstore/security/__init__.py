"""The trust policy: classify what a file references, and refuse what is not allowed.

Backends produce a :class:`~modelstore.ScanReport`; :func:`enforce` is the one gate the front
door applies to every load of a non-``safe`` backend that scans before loading. Pickle loads
go through the restricted unpickler (:mod:`.pickle_load`), which applies the same allow-list
while it reads, so ``scan`` and ``load`` judge a stream by the same rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._info import Finding, ScanReport, Verdict
from ..errors import FormatError, IntegrityError, UnsafeModelError
from .allowlist import is_attack

if TYPE_CHECKING:
    from .pickle_scan import PickleReport

TrustArg = bool | Collection[str]

#: Reason prefixes of an "unknown" verdict, which the gate turns into the right error.
DAMAGED, WRONG_FORMAT = "damaged", "not this format"
#: Subject of findings about how a stream uses what it references (not a global to trust).
STRUCTURE = "<stream>"
#: Subject of a finding that the file is another format modelstore does not read (TorchScript,
#: a pickled object array); its reason is the whole answer, refused unless trust=True.
FOREIGN = "<foreign format>"
ATTACK = "an attack payload: it runs code, touches files or the network, or imports code"
NOT_ALLOWED = "imported and run by unpickling; not on modelstore's allow-list"


def classify(
    path: Path, fmt: str, streams: Iterable[tuple[str, PickleReport]], lookup: Any
) -> ScanReport:
    """A verdict for pickle streams: unsafe if any global is outside the allow-list
    (``lookup(module, name)`` -> entry or None), if a stream uses an allowed object in a way
    the loader refuses, or if it breaks the reading rules; unknown if it could not be read."""
    findings: list[Finding] = []
    globals_: list[str] = []
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, rep in streams:
        for g, pair in zip(rep.globals, rep.pairs):
            if g not in seen:
                seen.add(g)
                globals_.append(g)
                pairs.append(pair)
        for reason in rep.misuse:
            findings.append(Finding(STRUCTURE, "critical", f"{label}: {reason}"))
        if rep.error:
            if rep.suspicious:
                findings.append(Finding(STRUCTURE, "critical", f"{label}: {rep.error}"))
            else:
                findings.append(
                    Finding(label, "warning", f"{DAMAGED}: cannot be read statically: {rep.error}")
                )
    for g, (module, name) in zip(globals_, pairs):
        if lookup(module, name) is None:
            findings.append(
                Finding(g, "critical", ATTACK if is_attack(module, name) else NOT_ALLOWED)
            )
    verdict: Verdict = (
        "unsafe"
        if any(f.severity == "critical" for f in findings)
        else ("unknown" if findings else "safe")
    )
    return ScanReport(str(path), fmt, verdict, findings, globals_)


def unreadable(path: Path, fmt: str, kind: str, message: str, subject: str = "file") -> ScanReport:
    """An "unknown" verdict for a file the scanner could not read. ``kind`` is "damaged"
    (IntegrityError on load), "format" (FormatError) or anything else (refused as unsafe)."""
    if kind not in ("damaged", "format"):
        return ScanReport(str(path), fmt, "unsafe", [Finding(STRUCTURE, "critical", message)])
    prefix = {"damaged": f"{DAMAGED}: ", "format": f"{WRONG_FORMAT}: "}[kind]
    return ScanReport(str(path), fmt, "unknown", [Finding(subject, "warning", prefix + message)])


def enforce(report: ScanReport, trust: TrustArg) -> None:
    """Raise unless every finding is allowed by ``trust``: UnsafeModelError for what is
    refused (with the exact ``trust=[...]`` recipe only for names that are not attack
    primitives), IntegrityError for a damaged file, FormatError for one of another kind."""
    if trust is True:
        return
    trusted = set() if trust is False else set(trust)
    foreign = [f.reason for f in report.findings if f.subject == FOREIGN]
    if foreign:
        raise UnsafeModelError(
            f"{report.path}: {foreign[0]}. Nothing from the file was executed", []
        )
    critical = [f for f in report.findings if f.severity == "critical"]
    structure = [f.reason for f in critical if f.subject == STRUCTURE]
    blocked = [f for f in critical if f.subject != STRUCTURE and f.subject not in trusted]
    if structure or blocked:
        raise UnsafeModelError(_refusal(report, structure, blocked), [f.subject for f in blocked])
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


def _refusal(report: ScanReport, structure: list[str], blocked: list[Finding]) -> str:
    attacks = [f.subject for f in blocked if f.reason == ATTACK]
    others = [f.subject for f in blocked if f.reason != ATTACK]
    parts = []
    if attacks:
        parts.append(
            f"the file calls {', '.join(attacks)}: {ATTACK}. This is not a model; do not load it"
        )
    if structure:
        parts.append(f"the file is crafted: {'; '.join(structure[:5])}")
    if others:
        by_reason: dict[str, list[str]] = {}
        for f in blocked:
            if f.reason != ATTACK:
                by_reason.setdefault(f.reason, []).append(f.subject)
        what = "; ".join(
            f"{', '.join(subjects)} ({reason})" for reason, subjects in by_reason.items()
        )
        parts.append(f"the file references {what}")
    msg = f"{report.path}: refusing to load: {'. '.join(parts)}. Nothing from the file was executed"
    if any(s.startswith("external:") for s in others):
        # confinement is not a trust matter: no trust list lets a model read outside its folder
        return msg + ". Keep external data as regular files beside the model, in its own folder"
    if others and not attacks and not structure:
        recipe = ", ".join(repr(g) for g in others)
        msg += f". If you trust the file's author, pass trust=[{recipe}] (or trust=True to allow anything)"
        if report.format == "torch":
            msg += (
                ". A whole pickled module is best re-saved as weights: in the code that made "
                "it, ms.save(model, 'model.safetensors') and load it with model=YourClass"
            )
    return msg

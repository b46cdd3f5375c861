"""SARIF 2.1.0 for scan results, so code-scanning dashboards show model findings.

One run, one artifact per scanned file (with its sha256), one result per finding that is not
merely informational, and one result for a file whose verdict is ``unknown`` without a
finding saying why. Levels: a critical finding is an ``error``, a warning a ``warning``.
The format is the OASIS standard (https://docs.oasis-open.org/sarif/sarif/v2.1.0/); GitHub
code scanning reads it with ``github/codeql-action/upload-sarif``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from pathlib import Path
from typing import Any

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
VERSION = "2.1.0"
INFO_URI = "https://github.com/modelstore/modelstore/blob/main/docs/security.md"

# rule id -> (short name, description, default level)
RULES: dict[str, tuple[str, str, str]] = {
    "MS001": (
        "untrusted-code",
        "The file names code outside modelstore's allow-list; loading it "
        "without trust= is refused, and a naive loader would run that code.",
        "error",
    ),
    "MS002": (
        "suspicious-content",
        "The scan found something that needs a look (a damaged part, an "
        "unusual structure, a companion file problem).",
        "warning",
    ),
    "MS003": (
        "unknown-format",
        "modelstore could not judge the file (an unknown format or an "
        "unreadable file); treat it as unsafe until a person looks.",
        "warning",
    ),
}
_LEVEL_RULE = {"critical": "MS001", "warning": "MS002"}


def build(
    records: list[dict[str, Any]], *, tool_version: str, base: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """A SARIF log from scan inventory records (``path``, ``format``, ``verdict``, ``sha256``,
    ``size_bytes``, ``findings``: each ``subject``, ``severity``, ``reason``).

    Paths under ``base`` (default: the current folder) become relative URIs under
    ``%SRCROOT%``, which is what a repository dashboard needs; others become ``file://`` URIs.
    """
    root = Path(base if base is not None else os.getcwd()).resolve()
    artifacts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, rec in enumerate(records):
        location = _location(str(rec["path"]), root)
        artifact: dict[str, Any] = {
            "location": location,
            "description": {
                "text": f"{rec.get('format', 'unknown')} file, verdict {rec['verdict']}"
            },
        }
        if rec.get("sha256"):
            artifact["hashes"] = {"sha-256": rec["sha256"]}
        if isinstance(rec.get("size_bytes"), int):
            artifact["length"] = rec["size_bytes"]
        artifacts.append(artifact)
        judged, before = False, len(results)
        for f in rec.get("findings") or []:
            rule = _LEVEL_RULE.get(str(f.get("severity")))
            if rule is None:
                continue  # informational findings stay in the JSON inventory
            if rule == "MS002" and rec["verdict"] == "unknown":
                rule = "MS003"  # the warning is why the file could not be judged
            results.append(_result(rule, f"{f['subject']}: {f['reason']}", location, index, rec, f))
            judged = judged or rule == "MS001"
        if rec["verdict"] == "unknown" and len(results) == before:
            results.append(
                _result(
                    "MS003",
                    f"{rec['path']}: the scan could not judge this file",
                    location,
                    index,
                    rec,
                    None,
                )
            )
        elif rec["verdict"] == "unsafe" and not judged:
            # an unsafe verdict always shows as an error, even when its findings were warnings
            results.append(
                _result(
                    "MS001",
                    f"{rec['path']}: unsafe to load without trust=",
                    location,
                    index,
                    rec,
                    None,
                    level="error",
                )
            )
    driver = {
        "name": "modelstore",
        "version": tool_version,
        "informationUri": INFO_URI,
        "rules": [
            {
                "id": rid,
                "name": name,
                "shortDescription": {"text": desc.split(";")[0]},
                "fullDescription": {"text": desc},
                "defaultConfiguration": {"level": level},
                "helpUri": INFO_URI,
            }
            for rid, (name, desc, level) in RULES.items()
        ],
    }
    return {
        "$schema": SCHEMA,
        "version": VERSION,
        "runs": [
            {
                "tool": {"driver": driver},
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.as_uri() + "/"}},
                "artifacts": artifacts,
                "results": results,
                "invocations": [{"executionSuccessful": True}],
            }
        ],
    }


def _location(path: str, root: Path) -> dict[str, Any]:
    p = Path(path).absolute()
    try:
        rel = p.relative_to(root)
    except ValueError:
        return {"uri": p.as_uri()}
    # a URI reference: '#', '?', '%' and spaces in a file name must not change which file it names
    # (of the name's bytes, as Path.as_uri: a name that is not UTF-8 is quoted, not a crash)
    return {"uri": urllib.parse.quote(os.fsencode(rel.as_posix())), "uriBaseId": "%SRCROOT%"}


def _result(
    rule: str,
    text: str,
    location: dict[str, Any],
    index: int,
    rec: dict[str, Any],
    finding: dict[str, Any] | None,
    level: str | None = None,
) -> dict[str, Any]:
    subject = finding["subject"] if finding else rule
    # stable across runs on the same bytes, so a dashboard tracks one alert per file and finding
    fingerprint = hashlib.sha256(
        f"{rec.get('sha256') or rec['path']}|{rule}|{subject}".encode()
    ).hexdigest()
    return {
        "ruleId": rule,
        "ruleIndex": list(RULES).index(rule),
        "level": level or RULES[rule][2],
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": {**location, "index": index}}}],
        "partialFingerprints": {"modelstoreFinding/v1": fingerprint},
        "properties": {"verdict": rec["verdict"], "format": rec.get("format")},
    }

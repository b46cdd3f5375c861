"""A model folder as a whole (a ``save_pretrained`` or trainer checkpoint folder): every file
in it for ``inspect``, and for ``scan`` the files beside the model that a framework would
also load (``optimizer.pt``, ``rng_state.pth``, ``training_args.bin``, ``scheduler.pt``)
through the same scanners, plus a ``config.json`` that would make transformers fetch or run
code. Each file is reached through the one confinement check; nothing is deserialised."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from .._info import Finding, ModelInfo, ScanReport
from ..errors import ModelstoreError
from ..formats.base import Backend
from ..security.confine import ConfinementError, confine
from ..storage.files import read_head, removals_done
from ..storage.sidecar import SIDECAR_SUFFIX
from .read import reading
from .registry import REGISTRY

#: Folders of real models hold tens of files; a listing stops here.
MAX_FILES = 10_000


def listing(folder: Path) -> dict[str, int]:
    """Every entry of ``folder`` that is a file or a link (not followed), name -> bytes."""
    removals_done()  # a save that returned leaves no temp name in the folder
    out: dict[str, int] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if len(out) >= MAX_FILES:
                break
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                out[entry.name] = st.st_size
    return dict(sorted(out.items()))


def with_files(info: ModelInfo, folder: Path) -> ModelInfo:
    """``info`` of a folder's model with every file of the folder (``size_bytes`` stays the
    model's own files; the folder's total is the sum of ``files``)."""
    return dataclasses.replace(info, files=listing(folder))


def scan_folder(folder: Path, main: Path, backend: Backend, report: ScanReport) -> ScanReport:
    """``report`` (the model's own) with the folder's config problems and the verdict of every
    other file a backend recognises; a link leading out of the folder is a finding too."""
    findings = list(report.findings)
    own = {main.name, main.name + SIDECAR_SUFFIX}
    try:  # the model's own scan and the config check judge these (and where they lead)
        own.update(backend.companions(main))
    except ModelstoreError:
        pass
    for name in listing(folder):
        if name in own or name.startswith("."):
            continue
        findings += _side_findings(folder, name)
    verdict = report.verdict
    if any(f.severity == "critical" for f in findings):
        verdict = "unsafe"
    elif verdict == "safe" and len(findings) > len(report.findings):
        verdict = "unknown"
    return dataclasses.replace(report, verdict=verdict, findings=findings)


def with_config(main: Path, backend: Backend, report: ScanReport) -> ScanReport:
    """``report`` with the problems of a Hugging Face ``config.json`` beside ``main``: keys
    that make transformers fetch or run code make the verdict unsafe (load refuses them)."""
    problems = _config_problems(main, backend)
    if not problems:
        return report
    findings = [*report.findings, *(Finding("config.json", "critical", p) for p in problems)]
    return dataclasses.replace(report, verdict="unsafe", findings=findings)


def _config_problems(main: Path, backend: Backend) -> list[str]:
    from ..formats.torch import hf

    if backend.framework != "torch":
        return []
    try:
        config = hf.read_config(main)
    except ModelstoreError as e:
        return [f"cannot be read safely: {e}"]
    return hf.config_problems(config) if config is not None else []


def _side_findings(folder: Path, name: str) -> list[Finding]:
    """Findings of one side file, each subject prefixed with its name."""
    try:
        # a Hugging Face cache snapshot links every file to its repository's blobs
        path = confine(folder, name, what="the file", source=folder, hf_cache=True)
    except ConfinementError as e:
        return [Finding(name, "critical", e.detail)]
    except (ModelstoreError, OSError):
        return []
    candidates = REGISTRY.for_suffix(Path(name))
    head = read_head(path)
    backend = next((b for b in map(REGISTRY.get, candidates) if b.accepts(path, head)), None)
    if backend is None and not candidates:  # training_args.bin: a torch file by its content
        sniffed = REGISTRY.sniff(path, head)
        backend = REGISTRY.get(sniffed) if sniffed else None
    if backend is None:
        if not candidates:
            return []  # tokenizer files, README, ...: not models
        return [Finding(name, "warning", f"not a readable {candidates[0]} file")]
    if backend.risk == "safe" and type(backend).__module__.startswith("modelstore.formats."):
        return []
    try:
        with reading(path, "scan"):
            rep = backend.scan(path)
    except ModelstoreError as e:
        return [Finding(name, "warning", f"cannot be scanned: {e}")]
    return [Finding(f"{name}: {f.subject}", f.severity, f.reason) for f in rep.findings]

"""``torch.export`` archives (``.pt2``): checked by modelstore, then read by torch.

``torch.export.load`` unpickles sample inputs (falling back to ``weights_only=False``), pickled
weights and constants, torchbind and opaque objects, hands symbolic-shape strings to
``sympy.sympify`` (``eval``), compiles ``guards_code`` and ``dlopen``-s AOTInductor libraries
(the audit: docs/formats.md, "torch.export archives"). So the archive is checked here first
(:mod:`modelstore.security.pt2file`): strict zip, only a plain program's members, every pickle
through the tensor allow-list, every operator, expression and guard checked as text. Loading
copies the file's bytes once into a private file, checks that copy and hands that same copy to
``torch.export.load``; ``trust=True`` skips the checks.

``ms.load("m.pt2")`` returns the :class:`torch.export.ExportedProgram` (what
``torch.export.load`` returns; ``.module()`` gives a runnable module); ``ms.predict`` runs it.
``ms.export(module, "m.pt2", sample_input=x)`` writes one (see :mod:`modelstore.api.export`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._info import Finding, ScanReport
from ...errors import ArgumentError, IntegrityError, UnsafeModelError, UnsupportedModelError
from ...security import STRUCTURE, classify, enforce, unreadable
from ..base import Backend, Inspection, LoadRequest, PredictRequest, is_instance_of

RECORD = "modelstore.json"
MAX_RECORD = 16 << 20
_MODULES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ExportCheck:
    """What ``ms.export`` asks the write to check (not a user option of ``save``)."""

    program: Any
    samples: tuple[Any, ...]
    rtol: float
    atol: float
    check: bool


def is_program(obj: Any) -> bool:
    return is_instance_of(obj, "torch.export.exported_program", "ExportedProgram")


class Pt2Backend(Backend):
    """``torch.export`` programs in ``torch.export.save``'s archive format."""

    name = "pt2"
    framework = "torch"
    suffixes = (".pt2",)
    risk = "restricted"  # pickles, expressions and operators checked before torch reads it
    extra = "torch"
    requires = ("torch",)
    reads_one_file = True
    priority = -1

    def sniff(self, path: Path, head: bytes) -> bool:
        if not head.startswith(b"PK\x03\x04"):
            return False
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
            return False
        return any(n.partition("/")[2] == "archive_format" for n in names) and any(
            n.partition("/")[2].startswith("models/") for n in names
        )

    def accepts(self, path: Path, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04")

    def can_save(self, obj: Any) -> bool:
        return is_program(obj)

    def can_predict(self, obj: Any) -> bool:
        return is_program(obj)

    def save_hint(self, obj: Any) -> str:
        return (
            "a .pt2 holds a torch.export program: use ms.export(model, 'model.pt2', "
            "sample_input=x), which exports, writes and checks it"
        )

    def describe(self, obj: Any) -> dict[str, Any]:
        import torch

        return {
            "framework": "torch",
            "framework_version": torch.__version__,
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
            "exporter": "torch.export",
        }

    # -- writing --------------------------------------------------------------------------
    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        import torch

        program = obj
        if isinstance(options, ExportCheck):
            program = options.program  # what ms.export made of ``obj``, the module
        if not is_program(program):
            raise UnsupportedModelError(f"{target}: {self.save_hint(obj)}")
        record = {k: v for k, v in meta.items() if k not in ("checksum", "payload_size")}
        extra = {RECORD: json.dumps(record, sort_keys=True, allow_nan=False)}
        with open(tmp, "wb") as f:
            torch.export.save(program, f, extra_files=extra)
        if isinstance(options, ExportCheck) and options.check:
            from .pt2check import parity

            meta["export_check"] = parity(self, tmp, obj, options)
        return None

    # -- metadata carried inside the archive ------------------------------------------------
    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """``extra/modelstore.json``, which ``ms.export`` writes (torch reads it as text and
        hands it to no one): the metadata when the file travels without its sidecar."""
        import zipfile

        from ...errors import FormatError
        from ...security.jsonsafe import loads
        from ..base import check_meta

        try:
            with zipfile.ZipFile(path) as zf:
                found = [
                    i for i in zf.infolist() if i.filename.partition("/")[2] == f"extra/{RECORD}"
                ]
                if not found:
                    return None
                if len(found) > 1 or found[0].file_size > MAX_RECORD:
                    raise FormatError(
                        f"{path}: its extra/{RECORD} record is not one modelstore writes"
                    )
                raw = zf.read(found[0])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
            return None
        meta = loads(raw, where=f"{path}: extra/{RECORD}", max_bytes=MAX_RECORD)
        check_meta(path, meta, f"its extra/{RECORD} record")
        return dict(meta)

    def intact(self, path: Path) -> dict[str, Any] | None:
        from ...errors import FormatError
        from ...security.zipcheck import ArchiveError, check_archive

        try:
            check_archive(path, crc=True)
            return self.read_meta(path) or {}
        except (ArchiveError, FormatError, OSError):
            return None

    # -- reading --------------------------------------------------------------------------
    def _report(self, path: Path, shown: Path | None = None) -> tuple[ScanReport, Any]:
        from ...security.policy import TORCH_POLICY
        from ...security.pt2file import Pt2Error, read_archive

        try:
            archive = read_archive(path, str(shown or path))
        except Pt2Error as e:
            return unreadable(path, self.name, e.kind, str(e)), None
        except ArgumentError:
            raise
        except ValueError as e:  # bounded JSON reader (a FormatError)
            return unreadable(path, self.name, "suspicious", str(e)), None
        report = classify(path, self.name, archive.pickles, TORCH_POLICY.entry)
        findings = list(report.findings)
        for subject, reason, trustable in archive.graph.problems:
            findings.append(
                Finding(
                    subject if trustable else STRUCTURE,
                    "critical",
                    reason if trustable else f"{subject}: {reason}",
                )
            )
        verdict = "unsafe" if any(f.severity == "critical" for f in findings) else report.verdict
        return ScanReport(str(path), self.name, verdict, findings, report.globals), archive

    def scan(self, path: Path) -> ScanReport:
        return self._report(path)[0]

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.model is not None:
            raise ArgumentError(f"{path}: model= is for weights files; a .pt2 holds the program")
        folder = Path(tempfile.mkdtemp(prefix="modelstore-pt2-"))
        try:
            copy = folder / "model.pt2"
            shutil.copyfile(path, copy)  # one read of the file: checked and loaded below
            if request.trust is not True:
                report, _ = self._report(copy, path)
                enforce(ScanReport(str(path), *_fields(report)), request.trust)
            return self._torch_load(path, copy)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _torch_load(self, shown: Path, copy: Path) -> Any:
        import torch

        try:
            return torch.export.load(copy)
        except (UnsafeModelError, IntegrityError):
            raise
        except Exception as e:  # torch raises many types for archives it cannot rebuild
            first = (str(e).splitlines() or [type(e).__name__])[0][:300]
            raise IntegrityError(
                f"{shown}: torch.export.load could not rebuild the program ({type(e).__name__}: "
                f"{first}); the archive passed modelstore's checks, so it may be damaged or "
                f"written by another torch version"
            ) from None

    def inspect(self, path: Path) -> Inspection:
        from .pt2check import describe_archive

        report, archive = self._report(path)
        if archive is None:
            enforce(report, False)  # says why the archive cannot be read
            raise IntegrityError(f"{path}: not a readable torch.export archive")
        details = describe_archive(archive)
        blocked = [
            f.subject if f.subject != STRUCTURE else f.reason
            for f in report.findings
            if f.severity == "critical"
        ]
        return Inspection(
            framework="torch",
            tensors=archive.weights + archive.constants,
            num_params=sum(max(t.numel, 0) for t in archive.weights),
            extra_metadata=details,
            executes_code=bool(blocked),
            globals=blocked,
            size_bytes=None,
        )

    # -- running --------------------------------------------------------------------------
    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        from .predict import predict
        from .pt2check import runner

        module = _MODULES.get(model)
        if module is None:
            module = _MODULES[model] = runner(model)
        return predict(module, inputs, request)


def _fields(report: ScanReport) -> tuple[Any, ...]:
    return (report.format, report.verdict, report.findings, report.globals)


__all__ = ["ExportCheck", "Pt2Backend", "is_program"]

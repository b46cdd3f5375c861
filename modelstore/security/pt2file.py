"""Check a ``torch.export`` archive (``.pt2``) before torch sees it.

What ``torch.export.load`` (torch 2.13) would do with each member, and what is checked here
(the audit is in docs/formats.md, "torch.export archives"):

- the archive: read by torch's own zip reader; here by the strict reader
  (:func:`~modelstore.security.zipcheck.check_archive`): one root folder, no links, no bombs,
  no names that leave it, and only the members ``torch.export.save`` writes for a plain
  program. AOTInductor packages (``data/aotinductor/``: a compiled ``.so`` torch ``dlopen``-s),
  ExecuTorch/MTIA payloads and any other member are refused;
- ``models/NAME.json``: bounded JSON, then :mod:`.pt2graph` (operators, sympy expressions,
  guard code);
- ``data/weights`` and ``data/constants``: raw tensor bytes (``use_pickle: false``) are data;
  a pickled record (``use_pickle: true``: ``torch.load(weights_only=False)``) is a torch zip
  whose pickle goes through the tensor allow-list; torchbind objects (``custom_obj_*``,
  ``torch._C._pickle_load_obj``) and opaque objects (``opaque_obj_*``, ``pickle.loads``) are
  refused;
- ``data/sample_inputs/NAME.pt``: ``torch.load``, retried with ``weights_only=False`` when the
  safe load fails, so its pickle goes through the tensor allow-list too.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._info import TensorInfo
from . import jsonsafe
from .pickle_scan import PickleReport
from .pt2graph import GraphCheck, check_program
from .torchfile import TorchFileError, read_pickles

MAX_JSON = 256 << 20
MAX_PICKLE = 256 << 20

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}"
_MEMBER = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|"
    r"\.format_version|\.storage_alignment|"
    rf"models/{_NAME}\.json|"
    rf"data/weights/{_NAME}_weights_config\.json|data/weights/weight_\d{{1,12}}|"
    rf"data/constants/{_NAME}_constants_config\.json|"
    r"data/constants/(tensor|custom_obj|opaque_obj)_\d{1,12}|"
    rf"data/sample_inputs/{_NAME}\.pt|"
    r"extra/[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,200}"
)
_RAW = re.compile(r"data/weights/weight_\d{1,12}|data/constants/tensor_\d{1,12}")
_CODE = (".so", ".dll", ".dylib", ".o", ".a", ".cubin", ".ptx", ".hsaco", ".cpp", ".py", ".pte")
_DTYPES = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "float32",
    8: "float64",
    9: "complex32",
    10: "complex64",
    11: "complex128",
    12: "bool",
    13: "bfloat16",
    28: "uint16",
    29: "float8_e4m3fn",
    30: "float8_e5m2",
    34: "uint32",
    35: "uint64",
}


class Pt2Error(Exception):
    """Not a readable archive: ``kind`` is "format", "damaged" or "suspicious"."""

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Pt2Archive:
    """What a ``.pt2`` holds, as read without torch."""

    root: str
    programs: dict[str, Any] = field(default_factory=dict)
    graph: GraphCheck = field(default_factory=GraphCheck)
    pickles: list[tuple[str, PickleReport]] = field(default_factory=list)
    weights: list[TensorInfo] = field(default_factory=list)
    constants: list[TensorInfo] = field(default_factory=list)
    size_bytes: int = 0


def compiled_member(name: str) -> bool:
    """A member holding compiled or executable code (AOTInductor, ExecuTorch, scripts)."""
    rest = name.partition("/")[2]
    return rest.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")) or any(
        rest.endswith(s) for s in _CODE
    )


def read_archive(path: Path, shown: str | None = None) -> Pt2Archive:
    """Everything torch.export.load would read from ``path``, checked; raises Pt2Error.
    ``shown`` names the file in messages (``path`` may be a private copy)."""
    from .zipcheck import ArchiveError, check_archive

    try:
        # raw tensor bytes are data torch copies as they are: their CRCs are not needed to
        # judge the archive (as for a torch.save file's storages); every other member's is
        infos = check_archive(path, crc=lambda n: not _RAW.fullmatch(n.partition("/")[2]))
    except ArchiveError as e:
        raise Pt2Error(e.detail, e.kind) from None
    names = [i.filename for i in infos]
    roots = {n.partition("/")[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        raise Pt2Error(
            f"the archive holds records under several roots {sorted(roots)[:5]}", "suspicious"
        )
    root = roots.pop()
    code = [n for n in names if compiled_member(n)]
    if code:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        raise Pt2Error(
            f"the archive holds compiled code ({shown}), which torch.export.load loads into "
            f"the process (an AOTInductor package); modelstore reads plain programs only",
            "suspicious",
        )
    odd = [n for n in names if not _MEMBER.fullmatch(n.partition("/")[2])]
    if odd:
        raise Pt2Error(
            f"the archive holds records torch.export.save does not write for a plain program "
            f"({', '.join(odd[:3])})",
            "suspicious",
        )
    # torch's zip reader (miniz, no case-sensitive flag) finds a record by its name with ASCII
    # letters folded: ``models/m.json`` reads ``data/sample_inputs/M.pt``. So records are
    # looked up here the same way, and names that differ only in case are refused
    exact: dict[str, str] = {}
    for n in names:
        rel = n.partition("/")[2]
        if _fold(rel) in exact:
            raise Pt2Error(
                f"the archive holds records whose names differ only in case ({exact[_fold(rel)]}"
                f", {rel}); torch's reader does not tell them apart",
                "suspicious",
            )
        exact[_fold(rel)] = rel
    sizes = {_fold(i.filename.partition("/")[2]): i.file_size for i in infos}
    out = Pt2Archive(root=root, size_bytes=sum(sizes.values()))
    with zipfile.ZipFile(path) as zf:

        def read(rel: str, cap: int) -> bytes:
            key = _fold(rel)
            if key not in sizes:
                raise Pt2Error(f"the archive has no {rel} record")
            if sizes[key] > cap:
                raise Pt2Error(f"the {rel} record is {sizes[key]} bytes (at most {cap})")
            return zf.read(f"{root}/{exact[key]}")

        if read("archive_format", 64).strip() != b"pt2":
            raise Pt2Error("not a torch.export archive (archive_format is not 'pt2')")
        version = read("archive_version", 64).strip()
        if version != b"0":
            raise Pt2Error(f"archive version {version[:20]!r}; this reader knows version 0")
        # torch lists programs by their exact names (``models/`` in lower case)
        models = [
            r[len("models/") : -len(".json")] for r in exact.values() if r.startswith("models/")
        ]
        if not models:
            raise Pt2Error("the archive holds no program (models/*.json)")
        tmp = Path(tempfile.mkdtemp(prefix="modelstore-pt2-"))
        try:
            for model in models:
                _read_model(out, model, read, sizes, tmp, shown or str(path))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fold(rel: str) -> str:
    """A record name as torch's zip reader compares it: ASCII letters in lower case."""
    return rel.translate(_LOWER)


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _json(read: Any, rel: str, where: str) -> Any:
    return jsonsafe.loads(read(rel, MAX_JSON), where=f"{where}:{rel}")


def _read_model(
    out: Pt2Archive, model: str, read: Any, sizes: dict[str, int], tmp: Path, where: str
) -> None:
    program = _json(read, f"models/{model}.json", where)
    out.programs[model] = program
    check_program(program, out.graph)
    weights = _json(read, f"data/weights/{model}_weights_config.json", where)
    out.weights += _payloads(out, weights, "data/weights/", ("weight_",), read, sizes, tmp, where)
    constants = _json(read, f"data/constants/{model}_constants_config.json", where)
    out.constants += _payloads(
        out, constants, "data/constants/", ("tensor_",), read, sizes, tmp, where
    )
    inputs = f"data/sample_inputs/{model}.pt"
    if sizes.get(_fold(inputs)):
        out.pickles.append((inputs, _pickle(read(inputs, MAX_PICKLE), tmp, f"{where}:{inputs}")))


def _payloads(
    out: Pt2Archive,
    config: Any,
    folder: str,
    prefixes: tuple[str, ...],
    read: Any,
    sizes: dict[str, int],
    tmp: Path,
    where: str,
) -> list[TensorInfo]:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise Pt2Error(f"{folder} has a malformed payload config")
    infos = []
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise Pt2Error(f"{folder}: malformed entry for {str(fqn)[:80]!r}")
        name = meta["path_name"]
        rel = folder + name
        if name.startswith("custom_obj_"):
            out.graph.refuse(
                rel,
                "a torchbind object, rebuilt by torch's TorchScript unpickler from classes "
                "of compiled libraries",
            )
            continue
        if name.startswith("opaque_obj_"):
            out.graph.refuse(rel, "an opaque object, rebuilt by pickle.loads")
            continue
        if not name.startswith(prefixes) or _fold(rel) not in sizes:
            raise Pt2Error(
                f"{folder}: entry {str(fqn)[:80]!r} names a missing record {name[:80]!r}"
            )
        if meta.get("use_pickle"):
            out.pickles.append((rel, _pickle(read(rel, MAX_PICKLE), tmp, f"{where}:{rel}")))
            continue
        tm = meta.get("tensor_meta") or {}
        sizes_ = [s.get("as_int") for s in tm.get("sizes") or [] if isinstance(s, dict)]
        shape = tuple(int(d) if isinstance(d, int) else -1 for d in sizes_)
        if sizes[_fold(rel)] == 0 and 0 not in shape:
            # torch.export.load makes torch.zeros(sizes) for an empty record: a few bytes of
            # JSON would allocate (and fill) any amount of memory
            raise Pt2Error(
                f"{folder}: entry {str(fqn)[:80]!r} declares a tensor of shape {shape[:8]} but "
                f"its record {name[:80]!r} is empty (torch.export.load would allocate it as "
                f"zeros); torch.export.save writes empty records for empty tensors only",
                "suspicious",
            )
        code = tm.get("dtype")
        dtype = _DTYPES.get(code, f"dtype {code}") if isinstance(code, int) else "unknown"
        infos.append(TensorInfo(str(fqn), shape, dtype, sizes[_fold(rel)]))
    return infos


def _pickle(data: bytes, tmp: Path, where: str) -> PickleReport:
    """A ``torch.save`` record inside the archive, analysed by the torch-file reader."""
    copy = tmp / f"record-{len(list(tmp.iterdir()))}.pt"
    copy.write_bytes(data)
    try:
        pickles = read_pickles(copy)
    except TorchFileError as e:
        return PickleReport(error=f"{where}: {e}", suspicious=e.kind == "suspicious")
    finally:
        copy.unlink(missing_ok=True)
    streams = list(pickles.streams.values())
    if len(streams) == 1:
        return streams[0]
    return PickleReport(error=f"{where}: {len(streams)} pickles in one record", suspicious=True)


__all__ = ["Pt2Archive", "Pt2Error", "compiled_member", "read_archive"]

"""An ONNX model's files: modelstore's metadata and checksum in ``metadata_props``, and the
external data files beside the graph (confined, renamed per export, removed when stale)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import FormatError
from ...security.onnxfile import external_refs, ref_problem, tensors
from ...storage.hashing import format_checksum, new_checksum, update_from_file

META_KEY = "modelstore"
CHECKSUM_KEY = "modelstore.checksum"


def _confined_external(path: Path, location: str) -> tuple[Path | None, str | None]:
    """An external-data location of the model at ``path`` through the one confinement check
    (security/confine.py): (the regular file it names inside the model's folder, None) or
    (None, why not)."""
    from ...errors import ModelNotFoundError
    from ...security.confine import ConfinementError, confine

    try:
        return confine(path.parent, location, what="the external data file", main=path), None
    except ConfinementError as e:
        return None, str(e)
    except ModelNotFoundError:
        return None, f"needs {location}, which does not exist"


def external_data_problems(proto: Any, path: Path) -> list[tuple[str, str]]:
    """(subject, reason) for every external-data reference that is malformed or leaves the
    model's folder, found by the one walker over every tensor in the model."""
    problems = []
    for ref in external_refs(proto):
        problem = ref_problem(ref, path, _confined_external)
        if problem is not None:
            problems.append((f"external:{ref.get('location') or ref.tensor}", problem))
    return problems


def proto_checksum(proto: Any, folder: Path, opened: Any = None) -> str:
    """Checksum of the model without modelstore's own props, plus its external data files
    (each through ``opened(location)``, an open binary file, where given)."""
    clean = type(proto)()
    clean.CopyFrom(proto)
    keep = [p for p in clean.metadata_props if p.key != CHECKSUM_KEY]
    del clean.metadata_props[:]
    clean.metadata_props.extend(keep)
    hasher = new_checksum()
    hasher.update(clean.SerializeToString(deterministic=True))
    model = folder / "model.onnx"  # any name in the folder: only its parent matters
    for loc in sorted({ref.get("location") or "" for ref in external_refs(proto)}):
        if opened is not None:
            hasher.update(loc.encode())
            with opened(loc) as f:
                update_from_file(hasher, folder / loc, file=f)
            continue
        target, _ = _confined_external(model, loc)
        if target is not None:  # the scan refuses the others
            hasher.update(loc.encode())
            update_from_file(hasher, target)
    return format_checksum(hasher)


def embed_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Write modelstore's metadata and checksum into the model's metadata_props."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    keep = [p for p in proto.metadata_props if p.key not in (META_KEY, CHECKSUM_KEY)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.helper.set_metadata_props(
        proto, {**{p.key: p.value for p in keep}, META_KEY: json.dumps(meta, sort_keys=True)}
    )
    checksum = proto_checksum(proto, path.parent)
    onnx.helper.set_metadata_props(
        proto, {**{p.key: p.value for p in proto.metadata_props}, CHECKSUM_KEY: checksum}
    )
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def rename_external_data(tmp: Path, target: Path) -> list[Path]:
    """Exporters name external data after the temp file. Give each data file a name of its
    own beside the target (``model.onnx.<token>.data``), so the previous model keeps reading
    its previous data until the new model file replaces it; returns the new data files."""
    import onnx

    proto = onnx.load(str(tmp), load_external_data=False)
    moved: dict[str, str] = {}
    token = os.urandom(4).hex()
    for _, t in tensors(proto):
        for entry in t.external_data:
            if entry.key == "location" and entry.value.startswith(tmp.name):
                new = f"{target.name}.{token}{entry.value[len(tmp.name) :]}"
                if any(_plain_name(n) is None for n in (entry.value, new)):
                    raise FormatError(
                        f"{target}: the exporter named external data {entry.value!r}, which is "
                        f"not a plain file name beside the model; refusing to move it"
                    )
                moved[entry.value] = new
                entry.value = new
    for old, new in moved.items():
        fd = os.open(tmp.parent / old, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp.parent / old, tmp.parent / new)
    if moved:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
    return [tmp.parent / new for new in moved.values()]


def remove_stale_external_data(target: Path) -> None:
    """Delete data files an earlier export of ``target`` left, now that nothing reads them."""
    import onnx

    used = {
        ref.get("location")
        for ref in external_refs(onnx.load(str(target), load_external_data=False))
    }
    for f in target.parent.glob(f"{target.name}.*.data"):
        if f.name not in used and f.is_file() and not f.is_symlink():
            f.unlink(missing_ok=True)


def _plain_name(name: str) -> str | None:
    """``name`` if it is one file name (no folder, no link out of the folder), else None."""
    ok = (
        name
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )
    return name if ok else None

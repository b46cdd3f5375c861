"""modelstore's own metadata file beside formats that cannot embed it: ``PATH.modelstore.json``.

A sidecar is a companion file: confined to the model's folder and parsed with the bounded
JSON reader. It keeps the newest two entries so a reader that meets the old payload between
the two renames of a save still finds its metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import FormatError, ModelstoreError

SIDECAR_SUFFIX = ".modelstore.json"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


SIDECAR_VERSION = 2
#: How many versions a sidecar remembers: the new one and the one it replaces, so a reader
#: that meets the old payload between the two renames of a save still finds its metadata.
SIDECAR_KEEP = 2


def sidecar_versions(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The metadata entries of a sidecar, newest first (version 1 held a single entry)."""
    if data is None:
        return []
    versions = data.get("versions") if data.get("sidecar_version") == SIDECAR_VERSION else [data]
    if not isinstance(versions, list):
        return []
    return [v for v in versions if isinstance(v, dict)]


def choose_version(
    path: Path, versions: list[dict[str, Any]], checksum: str | None
) -> dict[str, Any] | None:
    """The entry describing the payload now on disk: the one whose checksum matches, else the
    newest whose size matches, else the newest (verification then reports the mismatch)."""
    if not versions:
        return None
    if checksum is not None:
        for v in versions:
            if v.get("checksum") == checksum:
                return v
        return versions[0]
    size = path.stat().st_size
    return next((v for v in versions if v.get("payload_size") == size), versions[0])


#: A sidecar holds metadata: far below this even with large user metadata.
MAX_SIDECAR = 64 << 20


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of ``path`` as a dict, or None if there is none. It is a companion file:
    confined to the model's folder (no link leading out, no hard link, no FIFO or device),
    opened without following links, and parsed with the bounded JSON reader."""
    from ..security.confine import read_confined
    from ..security.jsonsafe import loads

    side = sidecar_path(path)
    if not os.path.lexists(side):
        return None
    raw = read_confined(
        path.parent, side.name, what="the sidecar", source=path, main=path, max_bytes=MAX_SIDECAR
    )
    try:
        data = loads(raw, where=f"the sidecar {side}")
    except FormatError as e:
        raise FormatError(f"{e}; delete it to load {path.name} without metadata") from None
    if not isinstance(data, dict):
        raise FormatError(f"{side}: the modelstore sidecar must hold a JSON object")
    return data


def sidecar_problem(path: Path) -> str | None:
    """Why the sidecar of ``path`` would be refused as leading outside its folder (for
    ``scan``, which reads no metadata but must not call such a model safe), else None."""
    from ..security.confine import ConfinementError, confine

    side = sidecar_path(path)
    if not os.path.lexists(side):
        return None
    try:
        confine(path.parent, side.name, what="the sidecar", source=path, main=path)
    except ConfinementError as e:
        return str(e)
    except ModelstoreError:
        return None
    return None

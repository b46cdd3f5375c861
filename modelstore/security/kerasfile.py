"""Read Keras files without Keras or TensorFlow: ``.keras`` zips, legacy ``.h5``, ``.weights.h5``.

Checks the container before Keras sees it (the strict zip reader of :mod:`.zipcheck`; HDF5
external, soft and virtual links, external storage, filter plugins and declared sizes never
stored, in :mod:`.kerash5`) and audits the model config (:mod:`.kerasaudit`) for anything a load could run, import
or read from elsewhere. Only ``zipfile``, ``json`` and ``h5py`` are used.
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._info import Finding
from ..errors import FormatError
from . import jsonsafe
from .kerasaudit import Audit
from .kerasaudit import audit_config as _audit
from .kerash5 import MAX_RATIO, check_h5, guard_h5, start_guard
from .kerash5 import KerasFileError as KerasFileError  # importers take it from here
from .kerastable import layer_table as layer_table  # importers take it from here
from .kerastable import weights as weights
from .zipcheck import ArchiveError, check_archive
from .zipwindow import open_stored

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Declared total size of all members above this is refused outright.
MAX_TOTAL = 64 << 30
#: What a .keras archive holds: Keras' config, metadata and weights, its assets, our metadata.
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5", "modelstore.json")


def kind_of(path: Path, head: bytes) -> str | None:
    """ "keras" (zip), "h5" (full model), "weights" (weights only) or None. Recognition only:
    :func:`check` decides whether the container is acceptable."""
    if head.startswith(HDF5_MAGIC):
        return "weights" if path.name.lower().endswith(".weights.h5") else "h5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except Exception:  # zipfile raises many types on hostile archives; the scan explains
            return None
        if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
            return "keras"
    return None


# -- containers ------------------------------------------------------------------------------


def keras_member(name: str) -> bool:
    return name in KERAS_MEMBERS or (name.startswith("assets/") and len(name) > len("assets/"))


def check_zip(path: Path, crc: bool | Any = False) -> list[zipfile.ZipInfo]:
    """The strict archive check (structure always; CRCs of the members ``crc`` selects)."""
    try:
        return check_archive(
            path, expected=keras_member, max_ratio=MAX_RATIO, max_total=MAX_TOTAL, crc=crc
        )
    except ArchiveError as e:
        raise KerasFileError(e.detail, e.kind) from None


def check(path: Path, kind: str, meanwhile: Callable[[], None] | None = None) -> None:
    """Everything about the container, before anything else reads it: the whole archive with
    every CRC, or the HDF5 structure walked in a child process. For an archive, ``meanwhile``
    runs once every CRC has passed, while the child walks (a load's stateless build: it reads
    only the JSON members); it must not open the HDF5 data, which the child has not yet
    cleared."""
    if kind == "keras":
        infos = check_zip(path)  # the structure first, then the child walks the weights
        if "model.weights.h5" not in {i.filename for i in infos}:
            check_zip(path, crc=True)
            if meanwhile is not None:
                meanwhile()
            return
        guard = start_guard(path, "model.weights.h5")
        try:
            check_zip(path, crc=True)  # every CRC while the child walks the HDF5 structure
            if meanwhile is not None:
                meanwhile()
        except BaseException:
            guard.cancel()
            raise
        guard.wait()
    else:
        guard_h5(path)


@contextmanager
def open_h5(path: Path, kind: str) -> Iterator[Any]:
    """The HDF5 file holding the weights: the file itself, or model.weights.h5 in the zip.
    Call :func:`check` first: this checks the archive's structure and the HDF5 links only."""
    import h5py

    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as zf:
                fd = zf.fp.fileno()  # type: ignore[union-attr]
                # the structure and the HDF5 walk of the archive opened here, not of the path
                here = Path(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else path
                if "model.weights.h5" not in {i.filename for i in check_zip(here)}:
                    yield None
                    return
                guard_h5(here, "model.weights.h5", fd)
                with (
                    open_stored(zf, "model.weights.h5") or zf.open("model.weights.h5") as fh,
                    h5py.File(fh, "r") as f,
                ):
                    _check_once(f, os.fstat(fd), "model.weights.h5")
                    yield f
        else:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                guard_h5(path, "", fd)  # the file h5py opens below: this descriptor's
                proc = f"/proc/self/fd/{fd}"
                with h5py.File(proc if os.path.isdir("/proc/self/fd") else path, "r") as f:
                    _check_once(f, os.fstat(f.id.get_vfd_handle()), "")
                    yield f
            finally:
                os.close(fd)
    except KerasFileError:
        raise
    except zipfile.BadZipFile as e:
        raise KerasFileError(f"damaged archive ({e})", "damaged") from None
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        raise KerasFileError(f"the HDF5 data cannot be read ({e})", "damaged") from None


#: File versions (of the file actually opened: fstat, not the path) whose HDF5 structure
#: check_h5 accepted; a scan and a load open the same file several times.
_H5_OK: OrderedDict[tuple[Any, ...], None] = OrderedDict()


def _check_once(f: Any, st: os.stat_result, member: str) -> None:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, member)
    if key in _H5_OK:
        return
    check_h5(f)
    _H5_OK[key] = None
    while len(_H5_OK) > 64:
        _H5_OK.popitem(last=False)


def read_config(path: Path, kind: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(model config, file-level facts such as keras_version) without building anything."""
    configs, facts = read_configs(path, kind)
    return next((c for name, c, _ in configs if name != "training_config"), None), facts


def read_configs(
    path: Path, kind: str
) -> tuple[list[tuple[str, dict[str, Any], bool]], dict[str, Any]]:
    """Every config a Keras load deserialises, with its name and whether it is legacy (H5)
    JSON: ``config.json`` of an archive; ``model_config`` and ``training_config`` of H5."""
    if kind == "keras":
        configs, facts = archive_configs(path)
        _check_sizes(configs, stored_sizes(path, kind), held_ratio(path, "config.json"))
        _check_assets(path)  # here, not in archive_configs: the early build reads no asset
        return configs, facts
    keys = ("keras_version", "backend", "model_config", "training_config")
    with open_h5(path, kind) as f:
        attrs = {k: _text(v) for k, v in f.attrs.items() if k in keys}
        stored = [-(-t.nbytes // 4) for t in weights(f, kind)]
    configs = []
    for key in ("model_config", "training_config"):
        raw = attrs.pop(key, None)
        if raw is None or raw == "":
            continue
        value = _json(raw if isinstance(raw, str) else str(raw), f"{path} (HDF5 attribute {key})")
        if not isinstance(value, dict):
            raise KerasFileError(f"the HDF5 {key} attribute is not a JSON object", "damaged")
        configs.append((key, value, True))
    _check_sizes(configs, stored)
    return configs, attrs


def archive_configs(path: Path) -> tuple[list[tuple[str, dict[str, Any], bool]], dict[str, Any]]:
    """``config.json`` (and ``metadata.json``'s facts) of a ``.keras`` archive, JSON only: the
    HDF5 weights are not opened, so this may run while their guard child walks them."""
    check_zip(path, crc=lambda name: name in ("config.json", "metadata.json"))
    try:
        with zipfile.ZipFile(path) as zf:
            config = _json(zf.read("config.json"), f"{path} (config.json)")
            names = zf.namelist()
            facts = (
                _json(zf.read("metadata.json"), f"{path} (metadata.json)")
                if "metadata.json" in names
                else {}
            )
    except KerasFileError:
        raise
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise KerasFileError(
            f"the archive's config cannot be read ({type(e).__name__})", "damaged"
        ) from None
    if not isinstance(config, dict):
        raise KerasFileError("the archive's config.json is not a JSON object", "damaged")
    return [("config.json", config, False)], (facts if isinstance(facts, dict) else {})


def _check_assets(path: Path) -> None:
    """A lookup layer whose config has no vocabulary reads it from its asset, one entry a line,
    into a numpy string array that pads every line to the longest (see kerasvocab)."""
    from .kerassize import SLACK
    from .kerasvocab import PAD_FACTOR, lines_padded

    with zipfile.ZipFile(path) as zf:
        for info in (i for i in zf.infolist() if i.filename.startswith("assets/")):
            try:
                with zf.open(info) as stream:
                    pad, held = lines_padded(stream)
            except (zipfile.BadZipFile, OSError) as e:
                msg = f"the asset {info.filename} cannot be read ({type(e).__name__})"
                raise KerasFileError(msg, "damaged") from None
            held = int(held * _ratio(info))  # what the file holds: deflated, less
            if pad > SLACK + PAD_FACTOR * held:
                raise KerasFileError(
                    f"the asset {info.filename} holds {held:,} characters in lines that, "
                    f"padded to the longest as Keras reads a vocabulary, make {pad:,} "
                    f"({pad >> 18:,} MiB as numpy strings; at most "
                    f"{SLACK + PAD_FACTOR * held:,} are accepted)",
                    "suspicious",
                )


#: file version -> (elements, item size) of each stored weight dataset
_STORED: dict[tuple[str, int, int, int, int], list[tuple[int, int]]] = {}


def stored_sizes(path: Path, kind: str) -> list[int]:
    """The sizes of the weight datasets the file stores in float32 elements (bytes / 4,
    rounded up), from HDF5 metadata only: what :func:`.kerassize.check_config` compares the
    config's layers with."""
    return [-(-n * size // 4) for n, size in stored_weights(path, kind)]


def stored_weights(path: Path, kind: str) -> list[tuple[int, int]]:
    """(elements, item size) of each weight dataset the file stores, from HDF5 metadata only.
    Remembered per file version (path, size, mtime, inode, ctime): scan and load both ask."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key in _STORED:
        return _STORED[key]
    if kind == "keras":
        if "model.weights.h5" not in {i.filename for i in check_zip(path)}:
            return []
        guard_h5(path, "model.weights.h5")  # cached: the gate's scan walked it already
    with open_h5(path, kind) as f:
        sizes = [(t.numel, t.nbytes // max(t.numel, 1) or 1) for t in weights(f, kind)]
    if len(_STORED) > 64:
        _STORED.clear()
    _STORED[key] = sizes
    return sizes


def held_ratio(path: Path, member: str) -> float:
    """The bytes an archive spends on ``member`` per byte of it (1 when stored, as Keras
    writes them): vocabularies are charged for what the file holds (see kerasvocab)."""
    with zipfile.ZipFile(path) as zf:
        return _ratio(zf.getinfo(member))


def _ratio(info: zipfile.ZipInfo) -> float:
    return min(1.0, info.compress_size / info.file_size) if info.file_size else 1.0


def _check_sizes(
    configs: list[tuple[str, dict[str, Any], bool]], stored: list[int], ratio: float = 1.0
) -> None:
    """Layers must not declare more weights than the file stores (see kerassize)."""
    from .kerassize import SizeError, check_config

    for name, config, _ in configs:  # training_config too: the metrics a compile makes
        try:
            check_config(config, stored, f"the model config ({name})", held_ratio=ratio)
        except SizeError as e:
            raise KerasFileError(str(e), "suspicious") from None


def _json(data: bytes | str, where: str) -> Any:
    try:
        return jsonsafe.loads(data, where=where)
    except FormatError as e:
        raise KerasFileError(str(e).replace(f"{where}: ", ""), "damaged") from None


def _text(v: Any) -> Any:
    return (
        v.decode() if isinstance(v, bytes) else (v if isinstance(v, (str, int, float)) else str(v))
    )


# -- config audit ----------------------------------------------------------------------------


def audit_file(path: Path, kind: str) -> Audit:
    """The audit of every config the file holds (nothing for weights-only files)."""
    return audit_configs(read_configs(path, kind)[0])


def audit_configs(configs: list[tuple[str, dict[str, Any], bool]]) -> Audit:
    """The audit of configs as :func:`read_configs` returns them, merged."""
    out = Audit()
    for _, config, legacy in configs:
        part = _audit(config, legacy_root=legacy)
        for f in part.findings:
            out.add(f.subject, f.reason, unsafe=f.subject in part.needs_unsafe)
    return out


def audit_config(config: Any) -> list[Finding]:
    """Everything in a model config that a load could run, import or read (see kerasaudit)."""
    return _audit(config).findings

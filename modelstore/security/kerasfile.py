"""Read Keras files without Keras or TensorFlow: ``.keras`` zips, legacy ``.h5``, ``.weights.h5``.

Checks the container before Keras sees it (zip entry names, duplicates, zip bombs; HDF5
external links, external storage, virtual datasets) and walks the model config for things a
load could run: Lambda layers carrying Python bytecode, and functions or classes from modules
outside Keras. Only ``zipfile``, ``json`` and ``h5py`` are used.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._info import Finding, TensorInfo

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: A member whose declared size exceeds this many times its compressed size is a zip bomb.
MAX_RATIO = 200
#: Declared total size of all members above this is refused outright.
MAX_TOTAL = 64 << 30
SAFE_MODULES = ("keras",)


class KerasFileError(Exception):
    """The file is not a readable Keras file (``kind``: "format", "damaged" or "suspicious")."""

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind


def kind_of(path: Path, head: bytes) -> str | None:
    """"keras" (zip), "h5" (full model), "weights" (weights only) or None."""
    if head.startswith(HDF5_MAGIC):
        return "weights" if path.name.lower().endswith(".weights.h5") else "h5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return None
        if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
            return "keras"
    return None


# -- containers ------------------------------------------------------------------------------


def check_zip(zf: zipfile.ZipFile) -> None:
    names = [i.filename for i in zf.infolist()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise KerasFileError(f"the archive holds duplicate entries {dupes}", "suspicious")
    for info in zf.infolist():
        n = info.filename
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise KerasFileError(f"the archive entry {n!r} is a symbolic link", "suspicious")
        if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/") or ":" in n:
            raise KerasFileError(f"the archive entry {n!r} points outside the archive", "suspicious")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > (1 << 20):
            raise KerasFileError(f"the entry {n!r} inflates {info.file_size // info.compress_size}x (a zip bomb?)",
                                 "suspicious")
    if sum(i.file_size for i in zf.infolist()) > MAX_TOTAL:
        raise KerasFileError("the archive declares more than 64 GiB of content", "suspicious")


def check_h5(f: Any) -> None:
    """Refuse external links, external raw storage and virtual datasets (they read other files)."""
    import h5py

    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"{name} is an external link to {link.filename}")
        elif isinstance(link, h5py.HardLink):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    problems.append(f"{name} stores its data in external files")
                if obj.is_virtual:
                    problems.append(f"{name} is a virtual dataset mapping other files")
                declared = obj.size * obj.dtype.itemsize
                stored = obj.id.get_storage_size()
                if declared > MAX_RATIO * stored + (1 << 20):
                    # reading it would allocate what the file never stored (fill values)
                    problems.append(f"{name} declares {declared} bytes but stores {stored}")

    f.visititems_links(visit)
    if problems:
        raise KerasFileError("; ".join(problems[:5]), "suspicious")


#: How long the HDF5 library may take to walk a file's structure and attributes.
GUARD_SECONDS = 5
_GUARD = """
import sys, h5py
f = h5py.File(sys.argv[1], "r")
def attrs(obj):
    for key in obj.attrs:
        obj.attrs[key]
attrs(f)
f.visititems(lambda name, obj: attrs(obj))
f.visititems_links(lambda name, link: None)
"""
_GUARDED: dict[tuple[str, int, int, int], str | None] = {}  # file version -> failure, if any


def guard_h5(path: Path) -> None:
    """Walk the HDF5 structure and read every attribute in a child process first.

    The HDF5 C library can loop forever on some damaged files (seen: a variable-length
    string attribute pointing into a corrupt global heap), and C code cannot be interrupted
    in-process. A walk that does not finish in GUARD_SECONDS means a damaged file; one that
    does means the same reads are safe here. Done once per file version per process.
    """
    import subprocess
    import sys

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _GUARDED:
        try:
            proc = subprocess.run([sys.executable, "-c", _GUARD, str(path)], capture_output=True, text=True,
                                  timeout=GUARD_SECONDS)
            last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            _GUARDED[key] = None if proc.returncode == 0 else f"the HDF5 structure cannot be read ({last[:200]})"
        except subprocess.TimeoutExpired:
            _GUARDED[key] = f"the HDF5 library did not finish reading the file's structure in {GUARD_SECONDS} s"
    failure = _GUARDED[key]
    if failure is not None:
        raise KerasFileError(failure, "damaged")


@contextmanager
def open_h5(path: Path, kind: str) -> Iterator[Any]:
    """The HDF5 file holding the weights: the file itself, or model.weights.h5 in the zip."""
    import h5py

    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as zf:
                check_zip(zf)
                if "model.weights.h5" not in zf.namelist():
                    yield None
                    return
                with zf.open("model.weights.h5") as fh, h5py.File(fh, "r") as f:
                    check_h5(f)
                    yield f
        else:
            guard_h5(path)
            with h5py.File(path, "r") as f:
                check_h5(f)
                yield f
    except KerasFileError:
        raise
    except zipfile.BadZipFile as e:
        raise KerasFileError(f"damaged archive ({e})", "damaged") from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise KerasFileError(f"the HDF5 data cannot be read ({e})", "damaged") from None


def read_config(path: Path, kind: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(model config, file-level facts such as keras_version) without building anything."""
    if kind == "keras":
        try:
            with zipfile.ZipFile(path) as zf:
                check_zip(zf)
                config = json.loads(zf.read("config.json"))
                facts = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
        except KerasFileError:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, RecursionError) as e:
            raise KerasFileError(f"the archive's config cannot be read ({type(e).__name__})", "damaged") from None
        if not isinstance(config, dict):
            raise KerasFileError("the archive's config.json is not a JSON object", "damaged")
        return config, (facts if isinstance(facts, dict) else {})
    with open_h5(path, kind) as f:
        attrs = {k: _text(v) for k, v in f.attrs.items() if k in ("keras_version", "backend", "model_config")}
    raw = attrs.pop("model_config", None)
    try:
        config = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise KerasFileError("the HDF5 model_config attribute is not JSON", "damaged") from None
    if config is not None and not isinstance(config, dict):
        raise KerasFileError("the HDF5 model_config attribute is not a JSON object", "damaged")
    return config, attrs


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else (v if isinstance(v, (str, int, float)) else str(v))


# -- config audit ----------------------------------------------------------------------------


def audit_config(config: Any) -> list[Finding]:
    """Everything in a model config that a load could run or import."""
    findings: list[Finding] = []
    seen: set[str] = set()

    def add(subject: str, reason: str) -> None:
        if subject not in seen:
            seen.add(subject)
            findings.append(Finding(subject, "critical", reason))

    def walk(node: Any, depth: int) -> None:
        if depth > 64:
            add("<config>", "the config nests deeper than 64 levels")
            return
        if isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
            return
        if not isinstance(node, dict):
            return
        cls = node.get("class_name")
        cfg = node.get("config")
        if cls == "Lambda":
            fn = cfg.get("function") if isinstance(cfg, dict) else None
            if isinstance(fn, dict) and fn.get("class_name") == "__lambda__" or (
                    isinstance(cfg, dict) and cfg.get("function_type") == "lambda"):
                add("keras.layers.Lambda", "a Lambda layer carrying Python bytecode, run when the model is built")
            elif isinstance(fn, str):
                add(f"{cfg.get('module') or '?'}.{fn}" if isinstance(cfg, dict) else fn,
                    "a Lambda layer calling a named Python function")
        module = node.get("module")
        if isinstance(module, str) and isinstance(cls, str) and not _keras_module(module):
            name = cfg if cls == "function" and isinstance(cfg, str) else cls
            add(f"{module}.{name}", f"a {'function' if cls == 'function' else 'class'} from outside Keras, "
                "imported when the model is loaded")
        for value in node.values():
            walk(value, depth + 1)

    walk(config, 0)
    return findings


def _keras_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in SAFE_MODULES)


# -- weights and layers, for inspect --------------------------------------------------------


def weights(f: Any, kind: str) -> list[TensorInfo]:
    """Every weight dataset (optimizer state left out), named by its path in the file."""
    import h5py

    out: list[TensorInfo] = []
    skip = ("optimizer/", "optimizer_weights/")

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith(skip):
            shape = tuple(int(d) for d in obj.shape)
            n = 1
            for d in shape:
                n *= d
            out.append(TensorInfo(name, shape, str(obj.dtype), n * obj.dtype.itemsize))

    if f is not None:
        f.visititems(visit)
    return out


def layer_table(config: dict[str, Any] | None, tensors: list[TensorInfo]) -> list[dict[str, Any]]:
    """torchinfo-style rows: layer name, class, output shape where the config records it, params."""
    layers = []
    inner = (config or {}).get("config")
    for layer in (inner.get("layers") if isinstance(inner, dict) else None) or []:
        if not isinstance(layer, dict):
            continue
        raw = layer.get("config")
        cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
        name = str(cfg.get("name", ""))
        row: dict[str, Any] = {"name": name, "class": layer.get("class_name")}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not isinstance(shape, list):
            shape = None
        if shape is None and isinstance(cfg.get("units"), int):
            shape = [None, cfg["units"]]
        if shape is not None:
            row["output_shape"] = shape
        row["params"] = sum(t.numel for t in tensors if _layer_of(t.name) == name)
        layers.append(row)
    if layers and not any(r["params"] for r in layers) and tensors:
        # .keras archives name weight groups by class (dense, dense_1, ...), not by layer name
        counts: dict[str, int] = {}
        for row in layers:
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", str(row["class"])).lower()
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            row["params"] = sum(t.numel for t in tensors if _layer_of(t.name) == key)
    return layers


def _layer_of(tensor_name: str) -> str:
    parts = tensor_name.split("/")
    if parts[0] == "layers" and len(parts) > 1:
        return parts[1]
    if parts[0] == "model_weights" and len(parts) > 1:
        return parts[1]
    return parts[0]

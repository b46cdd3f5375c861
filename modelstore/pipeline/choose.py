"""Choose the backend: ``format=`` > the suffix checked against the content > magic bytes;
folders (and names a save wrote under another name) by what the backends declare."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from ..errors import FormatError, StorageError, UnsupportedModelError
from ..formats.base import Backend
from ..storage.files import existing_file, not_a_path, read_head
from .registry import REGISTRY


def model_file(path: Any) -> Path:
    """The main file of the model ``path`` names: the file itself; for a folder, the file a
    backend claims from its layout (a shard index); for a name that does not exist, a file a
    save to that name writes instead (``NAME.safetensors`` -> ``NAME.safetensors.index.json``)."""
    try:
        p = Path(os.fspath(path))
    except TypeError as e:
        raise not_a_path(path, e) from None
    if p.is_dir():
        try:
            names = sorted(entry.name for entry in p.iterdir() if entry.is_file())
        except OSError as e:
            raise StorageError(
                e.errno or errno.EIO, f"{p}: cannot list the folder: {e.strerror}", str(p)
            ) from None
        found = REGISTRY.entry_file(names)
        if found is None:
            msg = (
                foreign_folder(p, names)
                or f"{p}: is a directory, not a model file; pass the path of the file inside it"
            )
            raise FormatError(msg)
        return existing_file(p / found[1])
    if not os.path.lexists(p):
        for other in REGISTRY.alternatives(p.name):
            if (p.parent / other).is_file():
                return existing_file(p.parent / other)
    return existing_file(p)


def for_file(path: Path, fmt: str | None) -> Backend:
    """``format=`` wins; else the suffix, checked against the file's first bytes; else sniffing."""
    head = read_head(path)
    if fmt is not None:
        return REGISTRY.get(fmt)
    candidates = REGISTRY.for_suffix(path)
    for name in candidates:
        backend = REGISTRY.get(name)
        if backend.accepts(path, head):
            return backend
    sniffed = REGISTRY.sniff(path, head)
    if candidates:
        claimed = candidates[0]
        if sniffed:
            msg = (
                f"{path}: the suffix says {claimed} but the content is {sniffed}; rename the file "
                f"or pass format={sniffed!r}"
            )
        else:
            msg = f"{path}: not a valid {claimed} file (its first bytes are {head[:16]!r}); the file is corrupt or of another kind"
        raise FormatError(msg)
    if sniffed is None and path.name in SAVED_MODEL_FILES:
        raise FormatError(foreign_folder(path.parent, [path.name]) or "")
    if sniffed is None:
        msg = f"{path}: unrecognised model file (first bytes {head[:16]!r}); pass format= with one of {REGISTRY.names()}"
        raise FormatError(msg)
    return REGISTRY.get(sniffed)


def for_save(model: Any, path: Path, fmt: str | None) -> Backend:
    """``format=`` wins; else a backend whose suffix matches and that can save ``model``
    (an export target such as ONNX counts: it converts); else the object decides."""
    if fmt is not None:
        backend = REGISTRY.get(fmt)
    else:
        candidates = [REGISTRY.get(n) for n in REGISTRY.for_suffix(path)]
        able = [b for b in candidates if b.exports_to or b.can_save(model)]
        if candidates and not able:
            names = "/".join(b.name for b in candidates)
            msg = f"{path}: a {type(model).__qualname__} cannot be saved as {names}; {candidates[0].save_hint(model)}"
            raise UnsupportedModelError(msg)
        backend = able[0] if able else REGISTRY.for_object(model)
    if not backend.exports_to and not backend.can_save(model):
        raise UnsupportedModelError(
            f"{path}: the {backend.name} backend cannot save a {type(model).__qualname__}"
        )
    return backend


def for_object(model: Any, action: str = "save") -> Backend:
    return REGISTRY.for_object(model, action=action)


#: The graph file of a TensorFlow SavedModel folder (``tf.saved_model.save``, ``model.export``).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def foreign_folder(folder: Path, names: list[str]) -> str | None:
    """What to say about a folder of a format modelstore does not read, or None."""
    if any(n in SAVED_MODEL_FILES for n in names):
        return (
            f"{folder}: this is a TensorFlow SavedModel folder, which modelstore does not read "
            f"(loading one runs the TensorFlow graph functions it holds, and may load custom op "
            f"libraries). If you trust it: tf.saved_model.load({str(folder)!r}), or convert it "
            f"once with python -m tf2onnx.convert --saved-model {folder} --output model.onnx and "
            f"load the .onnx file here"
        )
    return None

"""``ms.save(model, folder)`` for a transformers model or a ``PyTorchModelHubMixin``: a folder
``from_pretrained`` reads.

The model's own ``save_pretrained`` writes into a staging folder beside the target (so the
weights carry the names transformers expects, tied weights dropped the way it drops them,
and the config its ``from_pretrained`` reads), then modelstore's metadata is added (to the
single file's header, rewritten with the same tensors; or to the shard index), and the files
are moved into place: a new folder by one rename; an existing one file by file, weights
first and ``config.json`` last, weights files of an earlier save that the new one does not
name removed afterwards. A failure before the moves leaves the folder as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...errors import ModelExistsError, StorageError
from ...security.jsonsafe import loads
from ...storage.files import fsync_dir, fsync_file
from ..base import is_instance_of
from ..torch import hf as _hf

_WEIGHTS = re.compile(r"(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)(\.index\.json)?")


def saves_pretrained(obj: Any, target: Path) -> bool:
    """A transformers model or hub mixin saved to a folder (an existing one, or a name
    without a suffix)."""
    hf = is_instance_of(obj, "transformers", "PreTrainedModel") or is_instance_of(
        obj, "huggingface_hub", "ModelHubMixin"
    )
    return (
        hf
        and callable(getattr(obj, "save_pretrained", None))
        and (target.is_dir() or (not target.suffix and not os.path.lexists(target)))
    )


def write_pretrained(
    obj: Any, target: Path, meta: dict[str, Any], options: Any, overwrite: bool
) -> Path:
    """Write the folder; return its main file (``model.safetensors`` or the index)."""
    if target.is_dir() and not overwrite and any(_WEIGHTS.fullmatch(n) for n in os.listdir(target)):
        msg = f"{target}: already holds a model and overwrite=False; pick another folder or pass overwrite=True"
        raise ModelExistsError(errno.EEXIST, msg, str(target))
    if not target.parent.is_dir():
        msg = f"{target}: the folder {target.parent} does not exist; create it first"
        raise StorageError(errno.ENOENT, msg, str(target))
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.modelstore-", dir=target.parent))
    try:
        kwargs: dict[str, Any] = {}
        if options.max_shard_size is not None:
            kwargs["max_shard_size"] = options.max_shard_size
        if is_instance_of(obj, "transformers", "PreTrainedModel") and _takes(
            obj.save_pretrained, "safe_serialization"
        ):
            kwargs["safe_serialization"] = True  # transformers 4: never the pickle format
        try:
            obj.save_pretrained(str(stage), **kwargs)
        except OSError as e:
            raise StorageError(
                e.errno or errno.EIO, f"{target}: saving failed: {e}", str(target)
            ) from e
        main = _embed_meta(obj, stage, meta)
        written = sorted(os.listdir(stage))
        for name in written:
            fsync_file(stage / name)
        if not os.path.lexists(target):
            os.rename(stage, target)
            fsync_dir(target.parent)
            return target / main
        order = sorted(written, key=lambda n: (n.endswith(".json"), n == main, n))  # data first
        for name in order:
            os.replace(stage / name, target / name)
        fsync_dir(target)
        for stale in os.listdir(target):
            if _WEIGHTS.fullmatch(stale) and stale not in written and not (target / stale).is_dir():
                (target / stale).unlink(missing_ok=True)
        return target / main
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _takes(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _embed_meta(obj: Any, stage: Path, meta: dict[str, Any]) -> str:
    """Put modelstore's metadata where its loader reads it; the main file's name."""
    from .file import META_KEY, read_header
    from .write import write_tensors

    index = stage / "model.safetensors.index.json"
    if index.is_file():
        data = loads(index.read_bytes(), where=str(index))
        data.setdefault("metadata", {})["modelstore"] = meta
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return index.name
    single = stage / "model.safetensors"
    if not single.is_file():
        found = _hf.SAFETENSORS_NAMES + _hf.BIN_NAMES
        names = [n for n in found if (stage / n).is_file()]
        return names[0] if names else "config.json"
    header = read_header(single)
    sd = obj.state_dict()
    infos = header.tensors()
    names = [t.name for t in infos]
    if not all(n in sd and tuple(sd[n].shape) == tuple(t.shape) for n, t in zip(names, infos)):
        return single.name  # transformers renamed keys on the way out: keep its file as written
    stored = {_where(sd[n]): n for n in names}
    tied = {k: stored[_where(v)] for k, v in sd.items() if k not in names and _where(v) in stored}
    if tied:
        meta = {**meta, "tied": tied}
    tensors = {n: sd[n].detach().to("cpu").contiguous() for n in names}
    tmp = stage / ".model.safetensors.tmp"
    write_tensors(tmp, tensors, {"format": "pt", META_KEY: json.dumps(meta, sort_keys=True)})
    os.replace(tmp, single)
    return single.name


def _where(t: Any) -> tuple[int, tuple[int, ...], str]:
    """Tensors that are one and the same weight (tied) start at one address with one shape."""
    return t.data_ptr(), tuple(t.shape), str(t.dtype)

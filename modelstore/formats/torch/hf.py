"""Hugging Face model folders (``save_pretrained``): their file names and their ``config.json``.

A folder written by transformers or ``PyTorchModelHubMixin`` holds the weights under fixed
names (``model.safetensors``, ``model.safetensors.index.json`` and its shards,
``pytorch_model.bin``, ``pytorch_model.bin.index.json`` and its shards) beside a
``config.json``. The config is hostile input like every other companion: read through the
one confinement check, size-bounded, parsed with the bounded JSON reader, and checked for
keys that make transformers fetch or run code (``auto_map``, ``trust_remote_code``,
attention or kernel implementations naming a repository). Nothing it names is ever
imported: ``load(folder, model=BertModel)`` builds the class the *caller* passed, from
``BertModel.config_class.from_dict(config)``; a ``PyTorchModelHubMixin`` class from the
config's keyword arguments.

torch and transformers are never imported here: the caller's class carries what is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import FormatError, ModelNotFoundError, UnsafeModelError
from ...security.confine import read_confined
from ...security.jsonsafe import loads

CONFIG = "config.json"
#: A model's config is a few KB; the largest real ones (with vocabularies inlined) < 1 MB.
MAX_CONFIG = 4 << 20
#: Weight files transformers (4 and 5) and huggingface_hub write, main files first.
SAFETENSORS_NAMES = ("model.safetensors.index.json", "model.safetensors")
BIN_NAMES = ("pytorch_model.bin.index.json", "pytorch_model.bin")
#: Keys that make transformers import code from the Hub or from the folder.
_CODE_KEYS = ("auto_map", "custom_pipelines", "trust_remote_code")
#: Keys naming an implementation transformers may fetch from a repository ("org/repo").
_IMPL_HINTS = ("implementation", "kernel")
_MAX_WALK = 20_000


def is_hf_weights(path: Path) -> bool:
    """Whether ``path`` is a weights file under one of Hugging Face's names (or a shard of one)."""
    name = path.name
    if name in SAFETENSORS_NAMES or name in BIN_NAMES:
        return True
    return (name.startswith("model-") and name.endswith(".safetensors")) or (
        name.startswith("pytorch_model-") and name.endswith(".bin")
    )


def config_companion(path: Path) -> list[str]:
    """``["config.json"]`` when ``path`` is a Hugging Face weights file with a config beside it."""
    return [CONFIG] if is_hf_weights(path) and os.path.lexists(path.parent / CONFIG) else []


def optional_config(path: Path) -> list[str]:
    """``["config.json"]`` when ``path`` is under a Hugging Face weights name (it may have one)."""
    return [CONFIG] if is_hf_weights(path) else []


def read_config(path: Path) -> dict[str, Any] | None:
    """The ``config.json`` beside the weights file ``path``, read as hostile input, or None
    when there is none (or ``path`` is not under a Hugging Face name)."""
    if not config_companion(path):
        return None
    try:
        # hf_cache: in a Hugging Face cache snapshot the config links to the repository's blobs
        raw = read_confined(
            path.parent,
            CONFIG,
            what="the config",
            source=path,
            main=path,
            hf_cache=True,
            max_bytes=MAX_CONFIG,
        )
    except ModelNotFoundError:
        return None
    data = loads(raw, where=f"{path.parent / CONFIG}")
    if not isinstance(data, dict):
        raise FormatError(
            f"{path.parent / CONFIG}: a model config must be a JSON object, not {type(data).__name__}"
        )
    return data


def config_problems(config: dict[str, Any]) -> list[str]:
    """Why loading with this config through transformers could fetch or run code: every
    ``auto_map``/``custom_pipelines``/``trust_remote_code`` key at any depth (sub-configs
    carry their own), and implementation or kernel names that point at a repository."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", config)]
    seen = 0
    while stack and seen < _MAX_WALK:
        where, value = stack.pop()
        seen += 1
        if isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
            continue
        if not isinstance(value, dict):
            continue
        for key, v in value.items():
            at = f"{where}.{key}" if where else str(key)
            low = str(key).lower()
            if low in _CODE_KEYS and v not in (None, False, {}, []):
                problems.append(
                    f"{at}: makes transformers import code named by the file ({_short(v)})"
                )
            elif (
                any(h in low for h in _IMPL_HINTS) and isinstance(v, str) and ("/" in v or ":" in v)
            ):
                problems.append(
                    f"{at} = {_short(v)}: names a repository transformers would fetch code from"
                )
            elif isinstance(v, (dict, list)):
                stack.append((at, v))
    if stack:
        problems.append("the config is too large to check completely")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def refuse_problems(path: Path, config: dict[str, Any], trust: Any) -> None:
    """UnsafeModelError when the config would make transformers run or fetch code (only
    ``trust=True`` lets such a config build the caller's class)."""
    problems = config_problems(config)
    if problems and trust is not True:
        msg = (
            f"{path.parent / CONFIG}: the config would make transformers fetch or run code: "
            f"{'; '.join(problems[:5])}. modelstore never imports what a config names; remove "
            f"those keys, or pass trust=True only if you trust the folder's author"
        )
        raise UnsafeModelError(msg)


# -- building the caller's class from the folder's config -------------------------------------


def takes_hf_config(cls: Any) -> bool:
    """A transformers ``PreTrainedModel`` class (its ``config_class`` has ``from_dict``)."""
    config_class = getattr(cls, "config_class", None)
    return (
        isinstance(cls, type)
        and isinstance(config_class, type)
        and callable(getattr(config_class, "from_dict", None))
    )


def is_hub_mixin(cls: Any) -> bool:
    """A ``huggingface_hub.PyTorchModelHubMixin`` class (without importing huggingface_hub)."""
    import sys

    hub = sys.modules.get("huggingface_hub")
    mixin = getattr(hub, "ModelHubMixin", None) if hub is not None else None
    return isinstance(cls, type) and isinstance(mixin, type) and issubclass(cls, mixin)


def config_for(path: Path, request: Any) -> dict[str, Any] | None:
    """Constructor keyword arguments for ``request.model`` (a class) from the folder's
    config, or None to leave the request as it is: the caller's ``config=`` and a config
    modelstore recorded both win; only the caller's class is ever built."""
    cls = request.model
    if (
        not isinstance(cls, type)
        or request.config is not None
        or (request.meta or {}).get("config")
    ):
        return None
    hf, mixin = takes_hf_config(cls), is_hub_mixin(cls)
    if not (hf or mixin):
        return None
    config = read_config(path)
    if config is None:
        return None
    refuse_problems(path, config, request.trust)
    if hf:
        config_class: Any = getattr(cls, "config_class")  # noqa: B009  (checked by takes_hf_config)
        try:
            built = config_class.from_dict(config)
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
            msg = f"{path.parent / CONFIG}: {config_class.__name__} cannot read this config ({e})"
            raise FormatError(msg) from None
        return {"config": built}
    return _mixin_kwargs(cls, config, path)


def _mixin_kwargs(cls: type, config: dict[str, Any], path: Path) -> dict[str, Any]:
    """A hub mixin records its ``__init__`` keyword arguments; keep those the class takes."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return dict(config)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(config)
    if "config" in params and not any(k in params for k in config if k != "config"):
        return {"config": dict(config)}
    return {k: v for k, v in config.items() if k in params}


def describe(path: Path, found: Any) -> None:
    """Add the folder's config (and what in it would run code) to an ``Inspection``."""
    config = read_config(path)
    if config is None:
        return
    found.extra_metadata["hf_config"] = config
    problems = config_problems(config)
    if problems:
        found.extra_metadata["hf_config_problems"] = problems


def base_model_keys(sd: dict[str, Any], request: Any) -> dict[str, Any]:
    """Weights saved from a model with a head (``BertForMaskedLM``: ``bert.*``, ``cls.*``) for
    its base class (``BertModel``), as transformers maps them: when the caller's transformers
    class has no weights under its ``base_model_prefix`` but the file's are there, keep the
    keys under the prefix, without it (the head is left out). Anything else is unchanged."""
    cls = request.model
    prefix = getattr(cls, "base_model_prefix", None) if takes_hf_config(cls) else None
    config = request.config
    if not isinstance(prefix, str) or not prefix or not isinstance(config, dict):
        return sd
    head = prefix + "."
    if not any(k.startswith(head) for k in sd):
        return sd
    import torch

    try:
        with torch.device("meta"):
            own = list(cls(**config).state_dict())
    except Exception:  # noqa: BLE001 - the build that follows reports a class that cannot be built
        return sd
    if any(k.startswith(head) for k in own) or not own:
        return sd
    return {k[len(head) :]: v for k, v in sd.items() if k.startswith(head)}

"""Every weight array of a model, as numpy arrays by name: safetensors through its header and a
memory map, Keras through h5py, ONNX initializers through onnx, pickle formats through the
same gate as ``load`` (a plain state dict needs no ``trust``). What :mod:`.stats` summarises
and plots."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path
from typing import Any

from .._walk import WalkBudget
from ..errors import FormatError, IntegrityError, UnsafeModelError


def is_torch_module(obj: Any) -> bool:
    """Without importing torch: an object can only be a module if torch is already imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def weights(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    dtypes: dict[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every weight array in the model as numpy, by name (a URI is fetched first; ``dtypes``
    gets the stored dtypes).
    """
    import numpy as np

    from ..pipeline import locate
    from ..pipeline.choose import for_file, model_file
    from ..pipeline.read import reading, renamed
    from ..storage import remote

    local, uri = locate.split(path)
    if uri is not None:
        with (
            locate.fetched(uri, storage_options) as (copy, shown),
            renamed(copy.parent, remote.parent_uri(shown)),
        ):
            return weights(copy, trust=trust, dtypes=dtypes)
    path = local

    from .load import load

    p = model_file(path)
    backend = for_file(p, None)
    if backend.name == "safetensors":
        from ..formats.safetensors import index as shards

        if not shards.is_index(p):
            with open(p, "rb") as f:  # one descriptor: the header checked is the data read
                return _safetensors_arrays(p, dtypes, f)
        merged: dict[str, Any] = {}
        for name in shards.read_index(p).shards:  # each shard confined, like load
            with shards.open_shard(p, name) as f:
                merged.update(_safetensors_arrays(p.parent / name, dtypes, f))
        return merged
    if backend.name == "keras":
        return _keras_arrays(p, dtypes)
    if backend.name == "onnx":
        import onnx
        from onnx import numpy_helper
        from onnx.external_data_helper import load_external_data_for_model

        from ..formats.onnx.backend import external_data_problems

        with open(p, "rb") as f:  # the bytes checked below are the bytes read
            data = f.read()
        with reading(p, "read the weights of"):  # onnx's own refusals and damaged tensors
            proto = onnx.load_model_from_string(data)
            problems = external_data_problems(proto, p)
            if problems:
                reasons = "; ".join(reason for _, reason in problems[:5])
                raise UnsafeModelError(
                    f"{p}: not reading its weights: {reasons}", [s for s, _ in problems]
                )
            load_external_data_for_model(proto, str(p.parent))
            inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        if dtypes is not None:
            dtypes.update({k: str(v.dtype) for k, v in inits.items()})
        return inits
    # GGUF: quantized tensors are raw blocks, not weights: their statistics would mislead
    options: dict[str, Any] = {"quantized": "skip"} if backend.name == "gguf" else {}
    try:  # the same gate as load: plain state dicts and allow-listed objects need no trust
        obj = load(p, trust=trust, **options)
    except UnsafeModelError as e:
        if trust:
            raise
        msg = (
            f"{e} (reading the weights of this {backend.name} file means unpickling objects beyond "
            f"plain tensors: pass --trust / trust=True only if you trust its author, or ask for a "
            f"safetensors file)"
        )
        raise UnsafeModelError(msg, e.untrusted) from None
    out: dict[str, Any] = {}
    collect_arrays(obj, "", out, np, 0, dtypes, source=p)
    return out


def _safetensors_arrays(p: Path, dtypes: dict[str, str] | None, f: Any) -> dict[str, Any]:
    """The tensors of the safetensors file open as ``f`` (``p`` names it in messages)."""
    import numpy as np

    from ..formats.safetensors.backend import DTYPES, read_header

    h = read_header(p, f)
    out: dict[str, Any] = {}
    if not h.entries:
        return out
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for name, e in h.entries.items():
            b, end = e["data_offsets"]
            raw = np.frombuffer(mm, dtype=np.uint8, count=end - b, offset=h.data_start + b).copy()
            dtype = DTYPES[e["dtype"]][0]
            if dtype == "bfloat16":
                arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dtype.startswith("float8"):
                continue  # no numpy type for 8-bit floats
            else:
                arr = raw.view(np.dtype(dtype))
            out[name] = arr.reshape(e["shape"])
            if dtypes is not None:
                dtypes[name] = dtype
    return out


def _keras_arrays(p: Path, dtypes: dict[str, str] | None = None) -> dict[str, Any]:
    import h5py

    from ..pipeline.read import reading
    from ..security.kerasfile import KerasFileError, check, kind_of, open_h5
    from ..storage.files import read_head

    kind = kind_of(p, read_head(p)) or "h5"
    out: dict[str, Any] = {}
    try:
        check(p, kind)  # the container checks of the scan (every CRC, the HDF5 walk in a child)
        with open_h5(p, kind) as f, reading(p, "read the weights of"):
            if f is not None:
                f.visititems(
                    lambda n, o: (
                        out.__setitem__(n, o[()])
                        if isinstance(o, h5py.Dataset)
                        and not n.startswith(("optimizer", "optimizer_weights"))
                        else None
                    )
                )
    except KerasFileError as e:  # internal to the Keras reader: say it as the load would
        if e.kind == "suspicious":
            raise UnsafeModelError(f"{p}: {e}; not reading its weights", []) from None
        raise FormatError(f"{p}: {e}") from None
    if dtypes is not None:
        dtypes.update({k: str(v.dtype) for k, v in out.items()})
    return out


def collect_arrays(
    obj: Any,
    prefix: str,
    out: dict[str, Any],
    np: Any,
    depth: int,
    dtypes: dict[str, str] | None = None,
    source: Path | None = None,
    budget: WalkBudget | None = None,
) -> None:
    """Numeric arrays of ``obj`` by name. ``source``: the file ``obj`` was read from, whose
    tensors may only hold what their storage holds (no view that repeats its bytes).
    ``budget``: what the walk may still visit (a loaded pickle can be a graph whose
    containers share children, exponentially many paths from a few hundred bytes)."""
    budget = WalkBudget() if budget is None else budget
    if depth > 6 or len(out) > 10_000 or not budget.spend(prefix):
        return
    name = prefix.rstrip(".") or "tensor"
    if is_torch_module(obj):  # a whole pickled module (trust=True), or one inside a checkpoint
        collect_arrays(obj.state_dict(), prefix, out, np, depth + 1, dtypes, source, budget)
    elif hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a torch tensor
        t = obj.detach()
        if t.is_meta or t.is_complex():
            return
        if t.dim() > 64:  # numpy's limit (red team: its ValueError escaped from stats)
            raise FormatError(f"{source}: the tensor {name!r} has {t.dim()} dimensions; at most 64")
        if source is not None and t.numel() * t.element_size() > t.untyped_storage().nbytes():
            # a stride-0 (expanded) view: a few stored bytes declaring any number of elements,
            # which the statistics below would copy (to float64) in full
            msg = (
                f"{source}: the tensor {name!r} declares {t.numel():,} elements over "
                f"{t.untyped_storage().nbytes():,} stored bytes (a view that repeats its data); "
                f"not reading its statistics"
            )
            raise IntegrityError(msg)
        out[name] = t.float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
        if dtypes is not None:
            dtypes[name] = str(t.dtype).replace("torch.", "")
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        out[name] = obj
        if dtypes is not None:
            dtypes[name] = str(obj.dtype)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            collect_arrays(v, f"{prefix}{k}.", out, np, depth + 1, dtypes, source, budget)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            collect_arrays(v, f"{prefix}{i}.", out, np, depth + 1, dtypes, source, budget)
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in (
        "sklearn",
        "xgboost",
        "lightgbm",
    ):
        for k, v in vars(obj).items():
            if k.endswith("_") or k == "steps":
                collect_arrays(v, f"{prefix}{k}.", out, np, depth + 1, dtypes, source, budget)

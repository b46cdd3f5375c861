"""Weight statistics and histograms for ``modelstore inspect --stats/--plot``.

Safe formats are read directly (safetensors through its header and a memory map, Keras
through h5py, ONNX initializers through onnx); pickle formats only when the caller trusts
the file, since reading their weights means unpickling them.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UnsafeModelError
from ..pipeline.choose import for_file, model_file

MAX_PLOTS = 16


def weights(path: str | os.PathLike[str], *, trust: bool = False,
            storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every weight array in the model as numpy, by name (a URI is fetched first)."""
    import numpy as np

    from ..pipeline import locate
    from ..pipeline.read import renamed
    from ..storage import remote

    local, uri = locate.split(path)
    if uri is not None:
        with locate.fetched(uri, storage_options) as (copy, shown), renamed(copy.parent, remote.parent_uri(shown)):
            return weights(copy, trust=trust)
    path = local

    from .inspect import scan
    from .load import load

    p = model_file(path)
    backend = for_file(p, None)
    if backend.name == "safetensors":
        return _safetensors_arrays(p)
    if backend.name == "keras":
        return _keras_arrays(p)
    if backend.name == "onnx":
        if scan(p).verdict != "safe":
            raise UnsafeModelError(f"{p}: external data leaves the model's folder; not reading it", [])
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(str(p))
        return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    if not trust:
        msg = (f"{p}: reading the weights of a {backend.name} file means unpickling it; pass --trust "
               f"(trust=True) if you trust its author, or convert it to safetensors first")
        raise UnsafeModelError(msg, [])
    obj = load(p, trust=True)
    out: dict[str, Any] = {}
    _collect(obj, "", out, np, 0)
    return out


def _safetensors_arrays(p: Path) -> dict[str, Any]:
    import numpy as np

    from ..formats.safetensors.backend import DTYPES, read_header

    h = read_header(p)
    out: dict[str, Any] = {}
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
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
    return out


def _keras_arrays(p: Path) -> dict[str, Any]:
    import h5py

    from ..security.kerasfile import kind_of, open_h5
    from ..storage.files import read_head

    kind = kind_of(p, read_head(p)) or "h5"
    out: dict[str, Any] = {}
    with open_h5(p, kind) as f:
        if f is not None:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                         and not n.startswith(("optimizer", "optimizer_weights")) else None)
    return out


def _collect(obj: Any, prefix: str, out: dict[str, Any], np: Any, depth: int) -> None:
    if depth > 6 or len(out) > 10_000:
        return
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a torch tensor
        out[prefix.rstrip(".") or "tensor"] = obj.detach().float().cpu().numpy() if obj.is_floating_point() \
            else obj.detach().cpu().numpy()
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _collect(v, f"{prefix}{k}.", out, np, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _collect(v, f"{prefix}{i}.", out, np, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("sklearn", "xgboost", "lightgbm"):
        for k, v in vars(obj).items():
            if k.endswith("_") or k == "steps":
                _collect(v, f"{prefix}{k}.", out, np, depth + 1)


def stats(arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """mean, std, min and max of each numeric array."""
    import numpy as np

    rows = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "biuf" or a.size == 0:
            continue
        v = a.astype(np.float64)
        rows.append({"name": name, "shape": list(a.shape), "mean": float(v.mean()), "std": float(v.std()),
                     "min": float(v.min()), "max": float(v.max())})
    return rows


def plot(arrays: dict[str, Any], png: str | os.PathLike[str], title: str) -> int:
    """Histograms of the (up to 16) largest floating arrays; returns how many were drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError('--plot needs matplotlib; run: pip install "modelstore-safe[plot]"',
                                     name="matplotlib") from None
    import numpy as np

    floats = [(n, np.asarray(a)) for n, a in arrays.items() if np.asarray(a).dtype.kind == "f" and np.asarray(a).size]
    floats = sorted(floats, key=lambda t: -t[1].size)[:MAX_PLOTS]
    floats.sort(key=lambda t: list(arrays).index(t[0]))
    if not floats:
        return 0
    cols = min(4, len(floats))
    rows = (len(floats) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, a) in zip(axes.ravel(), floats):
        ax.axis("on")
        ax.hist(a.astype(np.float64).ravel(), bins=50, color="#3b6ea8")
        ax.set_title(f"{name}\n{'x'.join(map(str, a.shape))}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return len(floats)

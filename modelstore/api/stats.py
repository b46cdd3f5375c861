"""Weight statistics and histograms: ``ms.stats``, ``ms.plot_weights``, ``inspect --stats/--plot``.

Safe formats are read directly (safetensors through its header and a memory map, Keras
through h5py, ONNX initializers through onnx). Pickle formats go through the same gate as
``load``: a plain ``torch.save`` state dict or checkpoint (tensors and plain Python values) and
a scikit-learn model on the allow-list are read without ``trust``; anything else needs the
caller's ``trust=True``, since reading its weights means running code from it.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    MissingDependencyError,
    UnsafeModelError,
    UnsupportedModelError,
)

MAX_PLOTS = 16


@dataclass(frozen=True)
class TensorStats:
    """Statistics of one weight tensor.

    ``mean``, ``std``, ``min`` and ``max`` are over the finite values (NaN and Inf are counted
    apart in ``nans`` and ``infs``; they are NaN when no value is finite); ``zeros`` is the
    fraction of elements that are exactly zero. ``dtype`` is the dtype as stored.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    mean: float
    std: float
    min: float
    max: float
    zeros: float
    nans: int
    infs: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the shape as a list; NaN as None)."""
        out = dataclasses.asdict(self)
        out["shape"] = list(self.shape)
        for k in ("mean", "std", "min", "max"):
            if isinstance(out[k], float) and not math.isfinite(out[k]):
                out[k] = None
        return out


def stats(path_or_model: Any, *, trust: bool = False) -> list[TensorStats]:
    """Statistics of every numeric weight tensor of a model file or a loaded model.

    Parameters
    ----------
    path_or_model : a model file (safetensors, torch ``.pt``/``.pth``, Keras, ONNX, joblib), a
        torch module or state dict, a Keras model or a fitted scikit-learn estimator.
    trust : needed only for pickle files the safe loader refuses (whole pickled modules).

    Returns
    -------
    list of TensorStats, in the file's (or the model's) order.

    Raises
    ------
    UnsafeModelError, FormatError, ModelNotFoundError, UnsupportedModelError

    Examples
    --------
    >>> for s in ms.stats("weights.pth"):          # a plain torch.save state dict, no trust needed
    ...     print(s.name, s.shape, f"{s.mean:+.3f} {s.std:.3f}", s.zeros)
    """
    dtypes: dict[str, str] = {}
    arrays = arrays_of(path_or_model, trust=trust, dtypes=dtypes)
    return summarize(arrays, dtypes)


def arrays_of(
    path_or_model: Any, *, trust: bool = False, dtypes: dict[str, str] | None = None
) -> dict[str, Any]:
    """Weights as numpy arrays by name, from a path or a loaded model."""
    if trust is not True and trust is not False:
        raise ArgumentError(f"trust must be True or False here, not {trust!r}")
    if isinstance(path_or_model, (str, os.PathLike)):
        return weights(path_or_model, trust=trust, dtypes=dtypes)
    own_path = getattr(path_or_model, "path", None)
    if type(path_or_model).__module__.startswith("modelstore.") and isinstance(
        own_path, (str, Path)
    ):
        return weights(own_path, trust=False, dtypes=dtypes)  # a loaded ONNX model: its file
    return _object_arrays(path_or_model, dtypes)


def _object_arrays(obj: Any, dtypes: dict[str, str] | None) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    if is_torch_module(obj):
        _collect(obj.state_dict(), "", out, np, 0, dtypes)
    elif hasattr(obj, "weights") and hasattr(obj, "get_config"):  # a Keras model or layer
        for w in obj.weights:
            name = str(getattr(w, "path", None) or w.name)
            arr = np.asarray(w.numpy())
            out[name] = arr
            if dtypes is not None:
                dtypes[name] = str(getattr(w, "dtype", arr.dtype))
    else:
        _collect(obj, "", out, np, 0, dtypes)
    if not out:
        msg = (
            f"found no weight tensors in a {type(obj).__module__}.{type(obj).__qualname__}; "
            f"pass a torch module or state dict, a Keras model, a fitted scikit-learn estimator "
            f"or a model file's path"
        )
        raise UnsupportedModelError(msg)
    return out


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
    try:  # the same gate as load: plain state dicts and allow-listed objects need no trust
        obj = load(p, trust=trust)
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
    _collect(obj, "", out, np, 0, dtypes, source=p)
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


def _collect(
    obj: Any,
    prefix: str,
    out: dict[str, Any],
    np: Any,
    depth: int,
    dtypes: dict[str, str] | None = None,
    source: Path | None = None,
) -> None:
    """Numeric arrays of ``obj`` by name. ``source``: the file ``obj`` was read from, whose
    tensors may only hold what their storage holds (no view that repeats its bytes)."""
    if depth > 6 or len(out) > 10_000:
        return
    name = prefix.rstrip(".") or "tensor"
    if is_torch_module(obj):  # a whole pickled module (trust=True), or one inside a checkpoint
        _collect(obj.state_dict(), prefix, out, np, depth + 1, dtypes, source)
    elif hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a torch tensor
        t = obj.detach()
        if t.is_meta or t.is_complex():
            return
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
            _collect(v, f"{prefix}{k}.", out, np, depth + 1, dtypes, source)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _collect(v, f"{prefix}{i}.", out, np, depth + 1, dtypes, source)
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in (
        "sklearn",
        "xgboost",
        "lightgbm",
    ):
        for k, v in vars(obj).items():
            if k.endswith("_") or k == "steps":
                _collect(v, f"{prefix}{k}.", out, np, depth + 1, dtypes, source)


def summarize(arrays: dict[str, Any], dtypes: dict[str, str] | None = None) -> list[TensorStats]:
    """TensorStats of each numeric array, in order (bool arrays count as 0/1)."""
    import numpy as np

    rows = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "biuf" or a.size == 0:
            continue
        v = a.astype(np.float64, copy=False).ravel()
        finite = np.isfinite(v)
        nans = int(np.isnan(v).sum()) if a.dtype.kind == "f" else 0
        infs = int(v.size - finite.sum() - nans)
        f = v[finite] if nans or infs else v
        nan = float("nan")
        rows.append(
            TensorStats(
                name=name,
                shape=tuple(int(d) for d in a.shape),
                dtype=(dtypes or {}).get(name, str(a.dtype)),
                mean=float(f.mean()) if f.size else nan,
                std=float(f.std()) if f.size else nan,
                min=float(f.min()) if f.size else nan,
                max=float(f.max()) if f.size else nan,
                zeros=float(np.count_nonzero(v == 0) / v.size),
                nans=nans,
                infs=infs,
            )
        )
    return rows


def plot(arrays: dict[str, Any], png: str | os.PathLike[str], title: str) -> int:
    """Histograms of the (up to 16) largest floating arrays; returns how many were drawn.

    Drawn on a matplotlib ``Figure`` with the Agg canvas: no pyplot, no global backend change.
    """
    import numpy as np

    figure_cls, canvas_cls = agg_figure()
    floats = [
        (n, np.asarray(a))
        for n, a in arrays.items()
        if np.asarray(a).dtype.kind == "f" and np.asarray(a).size
    ]
    floats = sorted(floats, key=lambda t: -t[1].size)[:MAX_PLOTS]
    order = {n: i for i, n in enumerate(arrays)}
    floats.sort(key=lambda t: order[t[0]])
    if not floats:
        return 0
    cols = min(4, len(floats))
    rows = (len(floats) + cols - 1) // cols
    fig = figure_cls(figsize=(3.2 * cols, 2.4 * rows))
    canvas_cls(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, a) in zip(axes.ravel(), floats):
        ax.axis("on")
        v = a.astype(np.float64).ravel()
        ax.hist(v[np.isfinite(v)], bins=50, color="#3b6ea8")
        ax.set_title(f"{name}\n{'x'.join(map(str, a.shape))}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return len(floats)


def agg_figure() -> tuple[Any, Any]:
    """matplotlib's ``Figure`` and Agg canvas classes, or an error naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            'plots need matplotlib; run: pip install "modelstore-safe[plot]"', name="matplotlib"
        ) from None
    return Figure, FigureCanvasAgg

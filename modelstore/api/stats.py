"""Weight statistics and histograms: ``ms.stats``, ``ms.plot_weights``, ``inspect --stats/--plot``.

Safe formats are read directly (safetensors through its header and a memory map, Keras
through h5py, ONNX initializers through onnx). Pickle formats go through the same gate as
``load``: a plain ``torch.save`` state dict or checkpoint (tensors and plain Python values) and
a scikit-learn model on the allow-list are read without ``trust``; anything else needs the
caller's ``trust=True``, since reading its weights means running code from it. The readers
are in :mod:`.weights`; this module summarises and plots what they return.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, MissingDependencyError, UnsupportedModelError
from .weights import collect_arrays, is_torch_module, weights

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
        collect_arrays(obj.state_dict(), "", out, np, 0, dtypes)
    elif hasattr(obj, "weights") and hasattr(obj, "get_config"):  # a Keras model or layer
        for w in obj.weights:
            name = str(getattr(w, "path", None) or w.name)
            arr = np.asarray(w.numpy())
            out[name] = arr
            if dtypes is not None:
                dtypes[name] = str(getattr(w, "dtype", arr.dtype))
    else:
        collect_arrays(obj, "", out, np, 0, dtypes)
    if not out:
        msg = (
            f"found no weight tensors in a {type(obj).__module__}.{type(obj).__qualname__}; "
            f"pass a torch module or state dict, a Keras model, a fitted scikit-learn estimator "
            f"or a model file's path"
        )
        raise UnsupportedModelError(msg)
    return out


def summarize(arrays: dict[str, Any], dtypes: dict[str, str] | None = None) -> list[TensorStats]:
    """TensorStats of each numeric array, in order (bool arrays count as 0/1)."""
    import numpy as np

    rows = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "biuf" or a.size == 0:
            continue
        flat = a.reshape(-1)
        n = mean = m2 = 0.0
        lo, hi, zeros, nans, infs = float("inf"), float("-inf"), 0, 0, 0
        for i in range(0, flat.size, CHUNK):  # float64 copies of a chunk at a time (red team:
            # a 1.7 MB .npz of 200M bools made stats hold 3.4 GiB of whole-array temporaries)
            v = flat[i : i + CHUNK].astype(np.float64)
            finite = np.isfinite(v)
            bad = v.size - int(finite.sum())
            if bad:
                chunk_nans = int(np.isnan(v).sum())
                nans, infs = nans + chunk_nans, infs + bad - chunk_nans
            zeros += int(np.count_nonzero(v == 0))
            f = v[finite] if bad else v
            if f.size:  # Chan et al.'s pairwise update of the mean and squared deviations
                k, fm = float(f.size), float(f.mean())
                delta = fm - mean
                total = n + k
                mean += delta * k / total
                m2 += float(((f - fm) ** 2).sum()) + delta * delta * n * k / total
                n = total
                lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
        nan = float("nan")
        rows.append(
            TensorStats(
                name=name,
                shape=tuple(int(d) for d in a.shape),
                dtype=(dtypes or {}).get(name, str(a.dtype)),
                mean=mean if n else nan,
                std=(m2 / n) ** 0.5 if n else nan,
                min=lo if n else nan,
                max=hi if n else nan,
                zeros=float(zeros / flat.size),
                nans=nans,
                infs=infs,
            )
        )
    return rows


#: Elements whose statistics are taken at a time (8 MiB of float64).
CHUNK = 1 << 20


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

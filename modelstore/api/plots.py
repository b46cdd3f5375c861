"""Pictures the tutorials draw by hand: weight histograms and a grid of predictions.

matplotlib is imported inside each call and drawn on its Agg canvas directly (no pyplot, no
change to the global backend, no window); ``pip install "modelstore-safe[plot]"`` brings it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from ..errors import ArgumentError, StorageError

MAX_IMAGES = 64


def plot_weights(
    path_or_model: Any,
    png_path: str | os.PathLike[str],
    *,
    trust: bool = False,
    title: str | None = None,
) -> Path:
    """Write histograms of a model's weight tensors (the 16 largest) to a PNG.

    Parameters
    ----------
    path_or_model : a model file or a loaded model (anything ``ms.stats`` takes).
    png_path : where the PNG goes.
    trust : needed only for pickle files the safe loader refuses.
    title : the figure's title (default: the file or class name).

    Returns
    -------
    The PNG's path.

    Examples
    --------
    >>> ms.plot_weights("weights.pth", "weights.png")   # a plain torch.save state dict: no trust
    """
    from .stats import arrays_of, plot

    arrays = arrays_of(path_or_model, trust=trust)
    if title is None:
        name = (
            Path(os.fspath(path_or_model)).name
            if isinstance(path_or_model, (str, os.PathLike))
            else type(path_or_model).__name__
        )
        title = f"{name}: weight histograms"
    png = Path(png_path)
    with _writing(png):
        drawn = plot(arrays, png, title)
    if not drawn:
        raise ArgumentError(f"{path_or_model!s:.200}: no floating-point weights to draw")
    return png


def plot_predictions(
    model_or_path: Any,
    images: Any,
    y_true: Any,
    png_path: str | os.PathLike[str],
    *,
    labels: list[Any] | None = None,
    max_images: int = 32,
    cols: int = 8,
) -> Path:
    """Draw the tutorials' prediction grid: each image titled with its prediction, wrong ones in red.

    Parameters
    ----------
    model_or_path : a loaded model or a model file (loaded safely, as ``ms.predict`` does).
    images : the model's inputs, one per row; shown as images: ``(n, h*w)`` square pixels,
        ``(n, h, w)``, ``(n, 1|3, h, w)`` or ``(n, h, w, 1|3)``.
    y_true : the true classes, as indices or as names.
    png_path : where the PNG goes.
    labels : class names by index, when the model was saved without them.
    max_images : draw at most this many (the wrong ones first).

    Returns
    -------
    The PNG's path.

    Examples
    --------
    >>> ms.plot_predictions("digits.safetensors", x_test, y_test, "grid.png")
    """
    import numpy as np

    from .evaluate import predicted_names, saved_labels, true_names
    from .stats import agg_figure

    if type(max_images) is not int or not 1 <= max_images <= MAX_IMAGES:
        raise ArgumentError(
            f"max_images must be an integer from 1 to {MAX_IMAGES}, not {max_images!r}"
        )
    x = np.asarray(images)
    if x.ndim < 2 or len(x) == 0:
        raise ArgumentError(
            f"images must be a batch (n, ...) of at least one image, got shape {x.shape}"
        )
    labels = labels if labels is not None else saved_labels(model_or_path)
    truth = true_names(y_true, labels, len(x))
    pred = predicted_names(model_or_path, x, labels)
    wrong = [i for i in range(len(x)) if pred[i] != truth[i]]
    right = [i for i in range(len(x)) if pred[i] == truth[i]]
    show = sorted(wrong[:max_images] + right[: max(0, max_images - len(wrong))])
    figure_cls, canvas_cls = agg_figure()
    ncols = min(cols, len(show))
    nrows = math.ceil(len(show) / ncols)
    fig = figure_cls(figsize=(ncols * 1.3, nrows * 1.5))
    canvas_cls(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), show):
        img = as_image(x[i])
        ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None)
        ok = pred[i] == truth[i]
        ax.set_title(
            f"{pred[i]}" if ok else f"{pred[i]} (true {truth[i]})",
            color="green" if ok else "red",
            fontsize=8,
        )
    fig.suptitle(
        f"{len(show)} of {len(x)} shown; {len(wrong)} of {len(x)} wrong (red), green = correct",
        fontsize=9,
    )
    fig.tight_layout()
    png = Path(png_path)
    with _writing(png):
        fig.savefig(png, dpi=100)
    return png


def as_image(sample: Any) -> Any:
    """One input row as a 2-D (grey) or 3-D (RGB) array to show."""
    import numpy as np

    a = np.asarray(sample, dtype=np.float64)
    if a.ndim == 1:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise ArgumentError(
                f"an input of {a.size} values is not a square image; pass images as (n, h, w)"
            )
        return a.reshape(side, side)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # channels first (torch) -> channels last (matplotlib)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 3:
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.ndim != 2:
        raise ArgumentError(f"cannot show an input of shape {a.shape} as an image")
    return a


class _writing:
    """Turn a failed write into a StorageError naming the file."""

    def __init__(self, png: Path) -> None:
        self.png = png

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Literal[False]:
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(
                exc.errno or 5,
                f"{self.png}: cannot write the picture: {exc.strerror or exc}",
                str(self.png),
            ) from None
        return False

"""Small plotting helpers for the lessons: image grids, metric curves from Lightning's CSVLogger, saving.

    from cifar_lightning import plots
    fig = plots.image_grid(images[:16], titles=[CLASSES[i] for i in labels[:16]])
    df = plots.read_metrics(trainer.logger.log_dir)          # one row per epoch
    fig = plots.plot_metric_curves({"lr": run_a, "lr/10": run_b}, metric="val_acc")
    plots.save_figure(fig, "lr-vs-lr10.png")                  # -> lesson.figure_path(...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cifar_lightning import lesson
from cifar_lightning.errors import check


def to_hwc(image) -> np.ndarray:
    """One image (uint8 0-255 or float 0-1; CHW tensor or HWC array) -> float HWC array in [0, 1] for imshow."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    check(arr.ndim == 3, f"expected one image with 3 dimensions, got shape {arr.shape}")
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.clip(arr, 0.0, 1.0)


def image_grid(
    images: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    row_labels: Sequence[str] | None = None,
    size: float = 1.1,
    suptitle: str | None = None,
):
    """A figure showing ``images`` in a grid of ``ncols`` columns, with optional per-image titles and row labels.

    ``images``: a uint8 ``[N, 3, H, W]`` tensor (as the DataModule holds them), float images in [0, 1],
    or a list of either.
    """
    n = len(images)
    check(n > 0, "image_grid needs at least one image")
    check(titles is None or len(titles) == n, f"got {n} images but {len(titles or [])} titles")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    check(row_labels is None or len(row_labels) == nrows, f"got {nrows} rows but {len(row_labels or [])} row labels")
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (1.2 if row_labels else 0), size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(to_hwc(images[i]), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def metrics_csv(path: str | Path) -> Path:
    """The ``metrics.csv`` of a CSVLogger run: ``path`` may be the file or its run folder."""
    path = Path(path)
    csv = path / "metrics.csv" if path.is_dir() else path
    check(csv.is_file(), f"no metrics.csv at {path}: pass trainer.logger.log_dir of a CSVLogger run")
    return csv


def read_metrics(path: str | Path, by: str = "epoch") -> pd.DataFrame:
    """A CSVLogger ``metrics.csv`` as one row per ``epoch`` (or per ``step``), keeping the last value logged.

    Lightning writes train and validation metrics on separate rows; this merges them.
    """
    check(by in ("epoch", "step"), f"by must be 'epoch' or 'step', got {by!r}")
    df = pd.read_csv(metrics_csv(path))
    check(by in df.columns, f"{path} has no {by!r} column")
    df = df.dropna(subset=[by])
    merged = df.groupby(by).last()  # last non-missing value of each column
    merged.index = merged.index.astype(int)
    return merged.drop(columns=[c for c in ("epoch", "step") if c in merged.columns and c != by])


def plot_metric_curves(
    runs: Mapping[str, str | Path],
    metric: str = "val_acc",
    by: str = "epoch",
    ax=None,
    title: str | None = None,
):
    """One line per run of ``metric`` against ``by``, read from each run's CSVLogger folder. Returns the figure."""
    check(len(runs) > 0, "plot_metric_curves needs at least one run")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    else:
        fig = ax.figure
    for label, path in runs.items():
        df = read_metrics(path, by=by)
        check(metric in df.columns, f"run {label!r} logged no {metric!r}; it has {', '.join(df.columns)}")
        series = df[metric].dropna()
        ax.plot(series.index, series.values, marker="o" if by == "epoch" else None, ms=3, label=label)
    ax.set_xlabel(by)
    ax.set_ylabel(metric)
    if by == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, name: str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``lesson.figure_path(name)`` (figures/ for real runs, runs/figures/ in smoke mode)."""
    path = lesson.figure_path(name)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path

"""The lessons' figures: image grids, metric curves of runs, confusion matrix, profiler bars, saving.

    from cifar_lightning import plots
    fig = plots.image_grid(images[:16], titles=[CLASSES[i] for i in labels[:16]])
    fig = plots.image_grid(plots.to_display(batch_x[:16], "cifar10"))   # network inputs: normalization undone
    ax = plots.plot_metric_curves({"lr": trainer_a, "lr/10": log_dir_b}, "val_acc", by="epoch")
    plots.save_figure(ax.figure, "lr-vs-lr10.png")            # -> lesson.figure_path(...)

The tables they draw come from :mod:`cifar_lightning.experiment` (``read_metrics``, ``profile_breakdown``);
:class:`~cifar_lightning.tracking.RunReport` draws its W&B pictures with these functions too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator

from cifar_lightning import lesson
from cifar_lightning.augment import normalization
from cifar_lightning.errors import check
from cifar_lightning.experiment import read_metrics


def to_hwc(image) -> np.ndarray:
    """One image (uint8 0-255 or float 0-1; CHW tensor or HWC array) -> float HWC array in [0, 1] for imshow."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    check(arr.ndim == 3, f"expected one image with 3 dimensions, got shape {arr.shape}")
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.clip(arr, 0.0, 1.0)


def to_display(images: torch.Tensor, normalize: str | None = "cifar10") -> torch.Tensor:
    """``[N, 3, H, W]`` network inputs, normalized with ``normalize`` (``"cifar10"``, ``"imagenet"``) -> float
    values in [0, 1] for showing: the normalization undone. uint8 images are only scaled; with ``None`` or
    ``"none"`` (unknown scaling) each image is stretched to [0, 1]."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    images = images.float()
    stats = normalization(normalize) if normalize else None
    if stats is not None:
        mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in stats)
        return (images * std + mean).clamp(0, 1)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-6)


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
    or a list of either. Normalized network inputs: pass them through :func:`to_display` first.
    """
    n = len(images)
    check(n > 0, "image_grid needs at least one image")
    check(titles is None or len(titles) == n, f"got {n} images but {len(titles or [])} titles")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    check(row_labels is None or len(row_labels) == nrows, f"got {nrows} rows but {len(row_labels or [])} row labels")
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols + (1.2 if row_labels else 0), size * nrows + 0.3), squeeze=False
    )
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


def misclassified_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    preds: torch.Tensor,
    classes: Sequence[str],
    n: int = 24,
    ncols: int = 8,
    probs: torch.Tensor | None = None,
    show_confidence: bool = False,
):
    """An :func:`image_grid` of up to ``n`` wrongly classified images titled ``true -> predicted``.

    ``images``: uint8 ``[N, 3, H, W]`` (the DataModule's ``test_images``) or float in [0, 1] (:func:`to_display`);
    ``labels``/``preds``: ``[N]``. With ``probs`` (``[N, classes]``) the most confident mistakes come first, and
    ``show_confidence`` adds the predicted class's probability to each title.
    """
    check(not show_confidence or probs is not None, "show_confidence needs probs")
    wrong = (preds != labels).nonzero().flatten()
    if probs is not None and len(wrong):
        confidence = probs[wrong, preds[wrong]]
        wrong = wrong[confidence.argsort(descending=True)]
    wrong = wrong[:n].tolist()
    suptitle = f"{len(wrong)} misclassified test images (true -> predicted{', confidence' if show_confidence else ''})"
    if not wrong:  # a perfect score: an empty figure that says so
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        fig.suptitle(suptitle, fontsize=10)
        return fig
    titles = [f"{classes[int(labels[i])]}\n-> {classes[int(preds[i])]}" for i in wrong]
    if show_confidence:
        titles = [f"{title} {float(probs[i, preds[i]]):.0%}" for title, i in zip(titles, wrong, strict=True)]
    return image_grid(images[wrong], titles=titles, ncols=ncols, size=1.4, suptitle=suptitle)


def plot_metric_curves(
    runs: Mapping[str, object], metric: str, by: str = "epoch", ax=None, title: str | None = None, **line_kwargs
):
    """One line per run of ``metric`` against ``by`` (``"epoch"`` or ``"step"``); returns the axes.

    ``runs``: ``{label: run}``, a run being anything :func:`~cifar_lightning.experiment.read_metrics` reads: a
    Trainer, a CSVLogger folder, a ``metrics.csv`` or the table ``fit_experiment`` returned.
    ``line_kwargs`` go to ``ax.plot`` (e.g. ``alpha=0.7``).
    """
    check(len(runs) > 0, "plot_metric_curves needs at least one run")
    check(by in ("epoch", "step"), f"by must be 'epoch' or 'step', got {by!r}")
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, run in runs.items():
        table = read_metrics(run, by=by)
        check(metric in table.columns, f"run {label!r} logged no {metric!r}; it has {', '.join(table.columns)}")
        series = table[metric].dropna()
        marker = "o" if by == "epoch" and len(series) < 30 else None  # dots only where there are few points
        ax.plot(series.index, series.values, marker=marker, ms=3, label=label, **line_kwargs)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # steps and epochs are whole numbers
    ax.set_xlabel(by)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    if own_figure:
        ax.figure.tight_layout()
    return ax


def plot_confusion_matrix(matrix: torch.Tensor | np.ndarray, classes: Sequence[str], ax=None, normalize: bool = True):
    """Heat map of a ``[true, predicted]`` count matrix (rows normalised to recall when ``normalize``)."""
    m = torch.as_tensor(matrix).double().cpu().numpy()
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7, color="white" if m[i, j] > 0.5 * m.max() else "black"
            )
    ax.set_title("confusion matrix" + (" (row = recall)" if normalize else ""))
    if own_figure:
        ax.figure.tight_layout()  # keeps the rotated class names inside the figure
    return ax


def plot_profile(breakdown: pd.DataFrame, ax=None):
    """Horizontal bars of the parts of the training time from
    :func:`~cifar_lightning.experiment.profile_breakdown`, each labelled with its seconds and share.

    The parts do not overlap, so the bars add up to the training epochs' time (the title gives it).
    """
    check(
        {"seconds", "share"} <= set(breakdown.columns),
        "plot_profile draws the table of experiment.profile_breakdown(profiler)",
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.4 * len(breakdown) + 1))
    parts = breakdown[::-1]  # the first part on top
    bars = ax.barh(list(parts.index), parts["seconds"])
    ax.bar_label(bars, labels=[f" {s:.2f} s ({f:.0%})" for s, f in zip(parts["seconds"], parts["share"], strict=True)])
    ax.set_xlim(0, max(parts["seconds"].max(), 1e-9) * 1.35)  # room for the labels
    ax.set_xlabel("seconds")
    ax.set_title(f"where the {breakdown['seconds'].sum():.2f} s of training went (SimpleProfiler)", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    return ax


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Save ``fig`` as ``lesson.figure_path(name)`` (figures/ for real runs, runs/figures/ in smoke mode)."""
    path = lesson.figure_path(name)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def figure_to_array(fig) -> np.ndarray:
    """An RGB ``uint8`` ``[H, W, 3]`` array of a rendered figure (what a logger's ``log_image`` takes)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()

"""Figures for comparing runs and judging a classifier: curves, confusion matrix, mistakes, profiler.

    from cifar_lightning.plots_eval import plot_runs
    plot_runs({"no clipping": m1, "clip norm 1": m2}, "grad_norm", x="step")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator


def metric_series(metrics: pd.DataFrame, column: str, x: str = "step") -> pd.DataFrame:
    """The ``x`` and ``column`` values of the rows that logged ``column`` (CSVLogger rows hold NaN elsewhere)."""
    if column not in metrics:
        return pd.DataFrame({x: [], column: []})
    rows = metrics.dropna(subset=[column])
    return rows[[x, column]].groupby(x, as_index=False).last()


def plot_runs(runs: Mapping[str, pd.DataFrame], column: str, x: str = "step", ax=None,
              title: str | None = None, **line_kwargs):
    """One line per run of ``column`` against ``x`` (``step`` or ``epoch``); returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, metrics in runs.items():
        series = metric_series(metrics, column, x)
        marker = "o" if x == "epoch" and len(series) < 30 else None
        ax.plot(series[x], series[column], label=label, marker=marker, **line_kwargs)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and epochs are whole numbers
    ax.set_xlabel(x)
    ax.set_ylabel(column)
    ax.set_title(title or column)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize="small")
    return ax


def plot_confusion_matrix(matrix: torch.Tensor | np.ndarray, classes: Sequence[str], ax=None, normalize: bool = True):
    """Heat map of a ``[true, predicted]`` count matrix (rows normalised to recall when ``normalize``)."""
    m = torch.as_tensor(matrix).double().cpu().numpy()
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    if ax is None:
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
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if m[i, j] > 0.5 * m.max() else "black")
    ax.set_title("confusion matrix" + (" (row = recall)" if normalize else ""))
    return ax


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, classes: Sequence[str],
                       n: int = 24, cols: int = 8, probs: torch.Tensor | None = None):
    """A grid of up to ``n`` wrongly classified images titled ``true -> predicted``; returns the figure.

    ``images``: uint8 ``[N, 3, H, W]`` (the DataModule's ``test_images``); ``labels``/``preds``: ``[N]``.
    With ``probs`` (``[N, classes]``) the most confident mistakes come first.
    """
    wrong = (preds != labels).nonzero().flatten()
    if probs is not None and len(wrong):
        confidence = probs[wrong, preds[wrong]]
        wrong = wrong[confidence.argsort(descending=True)]
    wrong = wrong[:n]
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist(), strict=False):
        ax.imshow(images[i].permute(1, 2, 0).cpu().numpy())
        ax.set_title(f"{classes[int(labels[i])]}\n-> {classes[int(preds[i])]}", fontsize=7)
    fig.suptitle(f"{len(wrong)} misclassified test images (true -> predicted)", fontsize=9)
    fig.tight_layout()
    return fig


def profile_table(profiler, top: int = 8) -> pd.DataFrame:
    """Total and mean seconds of the ``top`` slowest actions a ``SimpleProfiler`` recorded."""
    rows = [(name, float(np.sum(d)), float(np.mean(d)), len(d)) for name, d in profiler.recorded_durations.items()]
    table = pd.DataFrame(rows, columns=["action", "total_s", "mean_s", "calls"])
    return table.sort_values("total_s", ascending=False).head(top).reset_index(drop=True)


def plot_profile(table: pd.DataFrame, ax=None):
    """Horizontal bars of the total seconds per action from :func:`profile_table`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1))
    ax.barh(table["action"][::-1], table["total_s"][::-1])
    ax.set_xlabel("total seconds")
    ax.set_title("where the time went (SimpleProfiler)")
    ax.tick_params(axis="y", labelsize=7)
    return ax

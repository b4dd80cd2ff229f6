"""The evaluation figures draw what they are given: curves per run, a normalised matrix, the mistakes."""

import matplotlib

matplotlib.use("agg")

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.profilers import SimpleProfiler

from cifar_lightning.plots_eval import (
    metric_series,
    misclassified_grid,
    plot_confusion_matrix,
    plot_profile,
    plot_runs,
    profile_table,
)


@pytest.fixture
def metrics():
    # CSVLogger layout: step rows with train_loss, epoch rows with val_acc, NaN elsewhere
    return pd.DataFrame({
        "epoch": [0, 0, 0, 1, 1, 1],
        "step": [0, 1, 1, 2, 3, 3],
        "train_loss": [2.3, 2.0, np.nan, 1.8, 1.5, np.nan],
        "val_acc": [np.nan, np.nan, 0.4, np.nan, np.nan, 0.6],
    })


def test_metric_series_keeps_only_logged_rows(metrics):
    series = metric_series(metrics, "val_acc", x="epoch")
    assert series["epoch"].tolist() == [0, 1]
    assert series["val_acc"].tolist() == [0.4, 0.6]
    assert metric_series(metrics, "missing").empty


def test_plot_runs_draws_one_line_per_run(metrics):
    ax = plot_runs({"a": metrics, "b": metrics.assign(train_loss=metrics.train_loss * 2)}, "train_loss")
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [4.6, 4.0, 3.6, 3.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_confusion_matrix_rows_are_recall():
    counts = torch.tensor([[8, 2], [0, 5]])
    ax = plot_confusion_matrix(counts, ["cat", "dog"])
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2], [0.0, 1.0]])
    assert [t.get_text() for t in ax.texts] == ["0.80", "0.20", "0.00", "1.00"]


def test_misclassified_grid_shows_only_mistakes_most_confident_first():
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    preds = torch.tensor([0, 2, 2, 1, 1, 0])  # wrong at 1, 3, 5
    probs = torch.full((6, 3), 0.1)
    probs[1, 2], probs[3, 1], probs[5, 0] = 0.5, 0.9, 0.7
    fig = misclassified_grid(images, labels, preds, ["a", "b", "c"], cols=4, probs=probs)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["a\n-> b", "c\n-> a", "b\n-> c"]  # indices 3, 5, 1 by confidence


def test_profile_table_sorts_by_total_time():
    profiler = SimpleProfiler()
    profiler.recorded_durations.update({"fast": [0.1, 0.1], "slow": [1.0, 2.0], "mid": [0.5]})
    table = profile_table(profiler, top=2)
    assert table["action"].tolist() == ["slow", "mid"]
    assert table["total_s"].tolist() == pytest.approx([3.0, 0.5])
    assert table["calls"].tolist() == [2, 1]
    ax = plot_profile(table)
    assert len(ax.patches) == 2

"""The lessons' figures draw what they are given: image grids, curves per run, a normalised matrix, the mistakes."""

import matplotlib

matplotlib.use("agg")

import numpy as np
import pytest
import torch

from cifar_lightning import plots
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.experiment import profile_breakdown, profile_table
from tests.helpers import nested_profile


def test_to_hwc_accepts_uint8_chw_and_float_hwc():
    chw = torch.full((3, 4, 5), 255, dtype=torch.uint8)
    out = plots.to_hwc(chw)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32 and np.allclose(out, 1.0)
    hwc = np.full((4, 5, 3), 2.0)  # out-of-range floats are clipped, not wrapped
    assert np.allclose(plots.to_hwc(hwc), 1.0)
    with pytest.raises(CifarLightningError, match="3 dimensions"):
        plots.to_hwc(torch.zeros(4, 5))


def test_to_display_undoes_the_normalization_of_network_inputs():
    from cifar_lightning.augment import build_transform

    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    for name in ("cifar10", "imagenet"):
        inputs = build_transform("none", normalize=name)(images)
        np.testing.assert_allclose(plots.to_display(inputs, name), images / 255.0, atol=1e-5)
    assert torch.equal(plots.to_display(images), images / 255.0)  # uint8: only scaled
    stretched = plots.to_display(torch.tensor([-3.0, 0.0, 5.0]).view(1, 3, 1, 1), None)  # unknown scaling
    assert stretched.flatten().tolist() == [0.0, 0.375, 1.0]


def test_image_grid_lays_out_rows_and_titles():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    fig = plots.image_grid(images, titles=[str(i) for i in range(10)], ncols=4, row_labels=["a", "b", "c"])
    axes = fig.axes
    assert len(axes) == 12  # 3 rows of 4, the last two blank
    assert [ax.get_title() for ax in axes[:10]] == [str(i) for i in range(10)]
    assert axes[4].get_ylabel() == "b"
    assert not axes[11].axison
    # the pixels shown are the image's, scaled to [0, 1]
    shown = axes[0].get_images()[0].get_array()
    assert np.allclose(np.asarray(shown), images[0].permute(1, 2, 0).numpy() / 255.0)
    with pytest.raises(CifarLightningError, match="titles"):
        plots.image_grid(images, titles=["only one"])


def test_plot_metric_curves_draws_one_line_per_run_from_log_folders(csv_run):
    runs = {"first": csv_run("a"), "second": csv_run("b", epochs=2)}
    ax = plots.plot_metric_curves(runs, "val_acc")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["first", "second"]
    assert np.allclose(lines[0].get_ydata(), [0.0, 0.1, 0.2]) and list(lines[1].get_xdata()) == [0, 1]
    with pytest.raises(CifarLightningError, match="logged no 'test_acc'"):
        plots.plot_metric_curves(runs, "test_acc")


def test_plot_metric_curves_draws_metric_tables_per_step(logged_rows):
    runs = {"a": logged_rows, "b": logged_rows.assign(train_loss=logged_rows.train_loss * 2)}
    ax = plots.plot_metric_curves(runs, "train_loss", by="step")
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [4.6, 4.0, 3.6, 3.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_confusion_matrix_rows_are_recall():
    counts = torch.tensor([[8, 2], [0, 5]])
    ax = plots.plot_confusion_matrix(counts, ["cat", "dog"])
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2], [0.0, 1.0]])
    assert [t.get_text() for t in ax.texts] == ["0.80", "0.20", "0.00", "1.00"]


def test_misclassified_grid_shows_only_mistakes_most_confident_first():
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    preds = torch.tensor([0, 2, 2, 1, 1, 0])  # wrong at 1, 3, 5
    probs = torch.full((6, 3), 0.1)
    probs[1, 2], probs[3, 1], probs[5, 0] = 0.5, 0.9, 0.7
    fig = plots.misclassified_grid(images, labels, preds, ["a", "b", "c"], ncols=4, probs=probs)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["a\n-> b", "c\n-> a", "b\n-> c"]  # indices 3, 5, 1 by confidence
    shown = plots.misclassified_grid(images, labels, preds, ["a", "b", "c"], probs=probs, show_confidence=True)
    assert [ax.get_title() for ax in shown.axes if ax.images] == ["a\n-> b 90%", "c\n-> a 70%", "b\n-> c 50%"]
    with pytest.raises(CifarLightningError, match="needs probs"):
        plots.misclassified_grid(images, labels, preds, ["a", "b", "c"], show_confidence=True)
    perfect = plots.misclassified_grid(images, labels, labels, ["a", "b", "c"])
    assert perfect._suptitle.get_text().startswith("0 misclassified") and not any(ax.images for ax in perfect.axes)


def test_plot_profile_draws_parts_that_add_up_to_the_epochs():
    breakdown = profile_breakdown(nested_profile())
    ax = plots.plot_profile(breakdown)
    widths = [bar.get_width() for bar in ax.patches]
    assert len(widths) == len(breakdown)
    assert sum(widths) == pytest.approx(10.0)  # the epoch's time, each nested second once
    assert "10.00 s" in ax.get_title()
    with pytest.raises(CifarLightningError, match="profile_breakdown"):
        plots.plot_profile(profile_table(nested_profile()))


def test_save_figure_writes_under_runs_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_LIGHTNING_SIZE", "smoke")
    fig = plots.image_grid(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    path = plots.save_figure(fig, "grid.png")
    assert path == tmp_path / "runs" / "figures" / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_to_array_renders_rgb_pixels():
    ax = plots.plot_confusion_matrix(torch.tensor([[3, 1], [0, 4]]), ["cat", "dog"])
    width, height = ax.figure.canvas.get_width_height()
    array = plots.figure_to_array(ax.figure)
    assert array.shape == (height, width, 3) and array.dtype == np.uint8
    assert array.min() < 100 < 250 < array.max()  # dark cells and text on a white background

"""The lessons' plotting helpers: grids of images, metric curves from a CSVLogger run, saving figures."""

import matplotlib

matplotlib.use("agg")

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from cifar_lightning import plots
from cifar_lightning.errors import CifarLightningError


def test_to_hwc_accepts_uint8_chw_and_float_hwc():
    chw = torch.full((3, 4, 5), 255, dtype=torch.uint8)
    out = plots.to_hwc(chw)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32 and np.allclose(out, 1.0)
    hwc = np.full((4, 5, 3), 2.0)  # out-of-range floats are clipped, not wrapped
    assert np.allclose(plots.to_hwc(hwc), 1.0)
    with pytest.raises(CifarLightningError, match="3 dimensions"):
        plots.to_hwc(torch.zeros(4, 5))


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


class _Logs(L.LightningModule):
    """Logs known values: train_loss per step, val_acc per epoch (= epoch / 10)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        self.log("train_loss", float(self.global_step))
        return (self.w * batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", self.current_epoch / 10)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=1)

    def val_dataloader(self):
        return self.train_dataloader()


def _run(tmp_path, name, epochs=3):
    logger = CSVLogger(save_dir=tmp_path, name=name)
    trainer = L.Trainer(max_epochs=epochs, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Logs())
    return logger.log_dir


def test_read_metrics_merges_train_and_val_rows_per_epoch(tmp_path):
    log_dir = _run(tmp_path, "a")
    per_epoch = plots.read_metrics(log_dir)
    assert list(per_epoch.index) == [0, 1, 2]
    assert np.allclose(per_epoch["val_acc"], [0.0, 0.1, 0.2])
    assert np.allclose(per_epoch["train_loss"], [3.0, 7.0, 11.0])  # the last step of each epoch (4 steps/epoch)
    per_step = plots.read_metrics(f"{log_dir}/metrics.csv", by="step")
    assert per_step["train_loss"].dropna().tolist() == [float(s) for s in range(12)]
    with pytest.raises(CifarLightningError, match="no metrics.csv"):
        plots.read_metrics(tmp_path / "nowhere")


def test_plot_metric_curves_draws_one_line_per_run(tmp_path):
    runs = {"first": _run(tmp_path, "a"), "second": _run(tmp_path, "b", epochs=2)}
    fig = plots.plot_metric_curves(runs, metric="val_acc")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["first", "second"]
    assert np.allclose(lines[0].get_ydata(), [0.0, 0.1, 0.2]) and list(lines[1].get_xdata()) == [0, 1]
    with pytest.raises(CifarLightningError, match="logged no 'test_acc'"):
        plots.plot_metric_curves(runs, metric="test_acc")


def test_save_figure_writes_under_runs_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_LIGHTNING_SMOKE", "1")
    fig = plots.image_grid(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    path = plots.save_figure(fig, "grid.png")
    assert path == tmp_path / "runs" / "figures" / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

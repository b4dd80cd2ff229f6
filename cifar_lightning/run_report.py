"""RunReport: what a run shows on its dashboard besides the metric curves.

    trainer = L.Trainer(logger=WorkshopWandbLogger(), callbacks=[RunReport()])

* at fit start: the settings that are not constructor arguments of the model or data (precision, epochs,
  devices, seed, parameter count, device name, library versions), as hyperparameters of every logger;
* on the first training batch: a grid of the images exactly as the network sees them (after augmentation);
* at test end: the confusion matrix and the test images the network got most confidently wrong.

Pictures go to every logger that can show images (``log_image``: W&B); the others are skipped.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix

from cifar_lightning.augment import normalization
from cifar_lightning.sources import CLASSES


def to_display(images: torch.Tensor, normalize: str | None = "cifar10") -> torch.Tensor:
    """Float ``[N, 3, H, W]`` network inputs -> values in [0, 1] for showing (undoes the normalization)."""
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    images = images.float()
    stats = normalization(normalize) if normalize else None
    if stats is not None:
        mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in stats)
        return (images * std + mean).clamp(0, 1)
    low = images.amin(dim=(1, 2, 3), keepdim=True)  # unknown scaling: stretch each image to [0, 1]
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-6)


def labelled_grid_figure(images: torch.Tensor, titles: list[str], title: str = "", ncols: int = 8,
                         size: float = 1.3) -> Figure:
    """A figure of ``[N, 3, H, W]`` images in [0, 1], each with its title (not shown by pyplot)."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(ncols * size, nrows * (size + 0.25) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    for i in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).numpy())
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def confusion_figure(matrix: MulticlassConfusionMatrix, classes: list[str]) -> Figure:
    """torchmetrics' confusion-matrix plot on a figure of its own."""
    fig = Figure(figsize=(7, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    matrix.plot(ax=ax, labels=list(classes))
    ax.set_title("test confusion matrix (rows: true class)")
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """An RGB ``uint8`` array of a rendered figure (what ``log_image`` takes)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def image_loggers(trainer: L.Trainer) -> list:
    return [logger for logger in trainer.loggers if callable(getattr(logger, "log_image", None))]


class RunReport(Callback):
    """Logs run settings, a grid of augmented training images, the test confusion matrix and test mistakes.

    Args:
        n_samples: training images in the grid.
        n_mistakes: misclassified test images shown (the most confident mistakes first).
        log_settings: log precision, epochs, seed, parameter count, device and versions as hyperparameters.
    """

    def __init__(self, n_samples: int = 32, n_mistakes: int = 24, log_settings: bool = True):
        self.n_samples, self.n_mistakes, self.log_settings = n_samples, n_mistakes, log_settings
        self._samples_logged = False

    # --- helpers -------------------------------------------------------------------------------------
    @staticmethod
    def _classes(trainer) -> list[str]:
        return list(getattr(trainer.datamodule, "classes", None) or CLASSES)

    @staticmethod
    def _normalize(trainer) -> str | None:
        hparams = getattr(trainer.datamodule, "hparams", {}) or {}
        return hparams.get("normalize", "cifar10") if hasattr(hparams, "get") else "cifar10"

    def _log_figure(self, trainer, key: str, fig: Figure) -> None:
        array = figure_to_array(fig)
        for logger in image_loggers(trainer):
            logger.log_image(key=key, images=[array], step=trainer.global_step)

    # --- hooks ---------------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module):
        self._samples_logged = False
        if not self.log_settings:
            return
        settings = {
            "precision": str(trainer.precision),
            "max_epochs": trainer.max_epochs,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "world_size": trainer.world_size,
            "global_seed": os.environ.get("PL_GLOBAL_SEED"),  # `seed` is the data module's split seed
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            "device": torch.cuda.get_device_name(pl_module.device) if pl_module.device.type == "cuda" else
            pl_module.device.type,
            "torch": torch.__version__,
            "lightning": L.__version__,
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(settings)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._samples_logged or not image_loggers(trainer) or trainer.global_rank != 0:
            return
        self._samples_logged = True
        x, y = batch[0][: self.n_samples], batch[1][: self.n_samples]
        classes = self._classes(trainer)
        # soft labels (mixup/cutmix) show their strongest class
        labels = (y.argmax(dim=1) if y.ndim > 1 else y).tolist()
        fig = labelled_grid_figure(to_display(x, self._normalize(trainer)), [classes[i] for i in labels],
                                   "training images as the network sees them (augmented)")
        self._log_figure(trainer, "train_samples", fig)

    def on_test_epoch_start(self, trainer, pl_module):
        self._active = bool(image_loggers(trainer)) and trainer.global_rank == 0
        if self._active:
            self._matrix = MulticlassConfusionMatrix(len(self._classes(trainer))).to(pl_module.device)
            self._mistakes: list[tuple[float, torch.Tensor, int, int]] = []

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self._active:
            return
        x, y = batch[0], batch[1]
        # The system's test_step returns nothing: predict again (a forward pass of the test set, cheap).
        predict = getattr(pl_module, "predict_log_probs", None)
        probs = (predict(x) if predict else F.log_softmax(pl_module(x), dim=1)).exp()
        confidence, pred = probs.max(dim=1)
        self._matrix.update(pred, y)
        wrong = (pred != y).nonzero().flatten()
        for i in wrong[confidence[wrong].argsort(descending=True)][: self.n_mistakes].tolist():
            self._mistakes.append((confidence[i].item(), x[i].cpu(), int(y[i]), int(pred[i])))
        self._mistakes = sorted(self._mistakes, key=lambda m: -m[0])[: self.n_mistakes]

    def on_test_epoch_end(self, trainer, pl_module):
        if not self._active:
            return
        classes = self._classes(trainer)
        self._log_figure(trainer, "confusion_matrix", confusion_figure(self._matrix, classes))
        if self._mistakes:
            images = to_display(torch.stack([m[1] for m in self._mistakes]), self._normalize(trainer))
            titles = [f"{classes[t]} → {classes[p]} {c:.0%}" for c, _, t, p in self._mistakes]
            fig = labelled_grid_figure(images, titles, "most confident mistakes (true → predicted, confidence)")
            self._log_figure(trainer, "test_mistakes", fig)


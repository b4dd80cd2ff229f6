"""RunReport: what a run shows on its dashboard besides the metric curves.

    trainer = L.Trainer(logger=WorkshopWandbLogger(), callbacks=[RunReport()])

* at fit start: the settings that are not constructor arguments of the model or data (precision, epochs,
  devices, seed, parameter count, device name, library versions), as hyperparameters of every logger;
* on the first training batch: a grid of the images exactly as the network sees them (after augmentation);
* at test end: the confusion matrix and the test images the network got most confidently wrong.

Pictures go to every logger that can show images (``log_image``: W&B); the others are skipped. They are drawn
by :mod:`cifar_lightning.plots` (``image_grid``, ``plot_confusion_matrix``, ``misclassified_grid``), like the
lessons' figures.
"""

from __future__ import annotations

import os

import lightning as L
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from cifar_lightning import plots
from cifar_lightning.sources import CLASSES


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

    def _log_figure(self, trainer, key: str, fig) -> None:
        array = plots.figure_to_array(fig)
        plt.close(fig)  # logged, not shown (a notebook would otherwise show it at the end of the cell)
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
            "device": torch.cuda.get_device_name(pl_module.device)
            if pl_module.device.type == "cuda"
            else pl_module.device.type,
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
        fig = plots.image_grid(
            plots.to_display(x, self._normalize(trainer)),
            titles=[classes[i] for i in labels],
            size=1.3,
            suptitle="training images as the network sees them (augmented)",
        )
        self._log_figure(trainer, "train_samples", fig)

    def on_test_epoch_start(self, trainer, pl_module):
        self._active = bool(image_loggers(trainer)) and trainer.global_rank == 0
        if self._active:
            self._matrix = MulticlassConfusionMatrix(len(self._classes(trainer))).to(pl_module.device)
            self._mistakes: list[tuple[float, torch.Tensor, int, int, torch.Tensor]] = []

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
            self._mistakes.append((confidence[i].item(), x[i].cpu(), int(y[i]), int(pred[i]), probs[i].cpu()))
        self._mistakes = sorted(self._mistakes, key=lambda m: -m[0])[: self.n_mistakes]

    def on_test_epoch_end(self, trainer, pl_module):
        if not self._active:
            return
        classes = self._classes(trainer)
        ax = plots.plot_confusion_matrix(self._matrix.compute(), classes)
        ax.set_title("test confusion matrix (row = recall)")
        self._log_figure(trainer, "confusion_matrix", ax.figure)
        if self._mistakes:
            _, images, labels, preds, probs = zip(*self._mistakes, strict=True)
            fig = plots.misclassified_grid(
                plots.to_display(torch.stack(images), self._normalize(trainer)),
                torch.tensor(labels),
                torch.tensor(preds),
                classes,
                n=self.n_mistakes,
                probs=torch.stack(probs),
                show_confidence=True,
            )
            self._log_figure(trainer, "test_mistakes", fig)

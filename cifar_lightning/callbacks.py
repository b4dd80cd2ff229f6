"""The training-trick callbacks: Lightning's own, built from plain arguments, plus EpochTimer and GradNormLogger.

    from cifar_lightning import build_callbacks
    trainer = L.Trainer(callbacks=build_callbacks(early_stopping_patience=5, swa_lrs=0.01))
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
)
from lightning.pytorch.utilities import grad_norm


class EpochTimer(Callback):
    """Logs each training epoch's wall time (``epoch_time``) and throughput (``images_per_sec``).

    Written here because the course shows how a callback hooks into the loop: it counts the images
    of every batch and waits for the GPU at the epoch's end so that the clock tells the truth.
    """

    def on_train_epoch_start(self, trainer, pl_module):
        self._sync(pl_module)
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        self._sync(pl_module)
        seconds = time.perf_counter() - self.start
        # images seen by all processes: each DDP rank counts its own shard
        images = self.images * trainer.world_size
        pl_module.log_dict({"epoch_time": seconds, "images_per_sec": images / max(seconds, 1e-9)})

    @staticmethod
    def _sync(pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)


class GradNormLogger(Callback):
    """Logs the gradient's size at every optimizer step, before and after clipping.

    ``grad_norm``: the total 2-norm before clipping (what the loss produced); ``grad_max_abs``: its largest
    entry (what ``gradient_clip_algorithm="value"`` caps); ``grad_norm_clipped``: the 2-norm the optimizer
    actually used. Lightning calls ``on_before_optimizer_step`` just before it clips, and the clipped
    gradients are still there at ``on_train_batch_end`` (they are zeroed at the next step).
    """

    def __init__(self):
        self._stepped = False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        norms = grad_norm(pl_module, 2)
        if not norms:
            return
        max_abs = grad_norm(pl_module, "inf")["grad_inf_norm_total"]
        pl_module.log_dict({"grad_norm": norms["grad_2.0_norm_total"], "grad_max_abs": max_abs},
                           on_step=True, on_epoch=False)
        self._stepped = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self._stepped:  # accumulating: no optimizer step on this batch
            return
        self._stepped = False
        norms = grad_norm(pl_module, 2)
        if norms:
            pl_module.log("grad_norm_clipped", norms["grad_2.0_norm_total"], on_step=True, on_epoch=False)


def latest_checkpoint(dirpath: str | None = None) -> ModelCheckpoint:
    """A ModelCheckpoint that rewrites ``last.ckpt`` after every epoch, for resuming with ``ckpt_path``.

    Needed since Lightning 2.6: ``ModelCheckpoint(monitor=..., save_last=True)`` refreshes ``last.ckpt`` only
    when the monitored metric improves, so it can hold an older epoch than the last one.
    """
    return ModelCheckpoint(dirpath=dirpath, filename="last", enable_version_counter=False)


def build_callbacks(
    monitor: str = "val_acc",
    mode: str = "max",
    checkpoint_dir: str | None = None,
    early_stopping_patience: int | None = None,
    swa_lrs: float | None = None,
    swa_epoch_start: float = 0.8,
    accumulate: dict[int, int] | None = None,
    lr_monitor: bool = True,
    timer: bool = True,
) -> list[L.Callback]:
    """The standard callbacks of the course, each switched on by its argument.

    Always a ModelCheckpoint on ``monitor`` (the best) and :func:`latest_checkpoint` (``last.ckpt``); LearningRateMonitor and EpochTimer
    unless turned off; EarlyStopping when ``early_stopping_patience`` is set; StochasticWeightAveraging when
    ``swa_lrs`` is set; GradientAccumulationScheduler from ``accumulate`` ({epoch: batches}, e.g. {0: 4, 5: 1}).
    """
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=checkpoint_dir, monitor=monitor, mode=mode, filename="{epoch}-{" + monitor + ":.4f}"),
        latest_checkpoint(checkpoint_dir),
    ]
    if lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if timer:
        callbacks.append(EpochTimer())
    if early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=early_stopping_patience))
    if swa_lrs is not None:
        callbacks.append(StochasticWeightAveraging(swa_lrs=swa_lrs, swa_epoch_start=swa_epoch_start))
    if accumulate:
        callbacks.append(GradientAccumulationScheduler(scheduling=accumulate))
    return callbacks

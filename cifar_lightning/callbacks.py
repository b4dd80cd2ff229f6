"""The training-trick callbacks: Lightning's own, built from plain arguments, plus a few of our own.

from cifar_lightning import build_callbacks
trainer = L.Trainer(callbacks=build_callbacks(early_stopping_patience=5, swa_lrs=0.01))
"""

from __future__ import annotations

import hashlib
import sys
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    EMAWeightAveraging,
    GradientAccumulationScheduler,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
)
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from cifar_lightning.errors import check


class EpochTimer(Callback):
    """Logs each training epoch's wall time (``epoch_time``) and throughput (``images_per_sec``).

    Written here because the course shows how a callback hooks into the loop: it counts the images
    of every batch and waits for the GPU at the epoch's end so that the clock tells the truth.
    Lightning's ``ThroughputMonitor`` logs throughput too (per step, FLOPs when told them); this one stays as the
    course's example of a hand-written callback (lessons 01 and 07 read its source).
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


class WeightDigest(Callback):
    """Prints, from every process, one line with a digest of its parameters and one of its buffers when fit ends.

        python -m cifar_lightning fit ... --trainer.devices 2 --trainer.strategy ddp \\
            --trainer.callbacks+ cifar_lightning.WeightDigest
        rank 0/2 lightning.pytorch.strategies.ddp.DDPStrategy: parameters 687b3f211bae | buffers 0c333d1573d0
        rank 1/2 lightning.pytorch.strategies.ddp.DDPStrategy: parameters 687b3f211bae | buffers 0c333d1573d0

    A digest is the start of a SHA-256 over the tensors' bytes: equal digests mean bit-identical tensors. Under DDP
    every process applies the same averaged gradients, so the parameter digests agree; the buffers (BatchNorm's
    running statistics) are each process's own between the broadcasts DDP makes of rank 0's.
    """

    def on_fit_end(self, trainer, pl_module):
        strategy = type(trainer.strategy)
        line = (
            f"rank {trainer.global_rank}/{trainer.world_size} {strategy.__module__}.{strategy.__qualname__}: "
            f"parameters {tensor_digest(pl_module.parameters())} | buffers {tensor_digest(pl_module.buffers())}\n"
        )
        # One write, newline included: the processes share one pipe, and print() may write the text and its newline
        # separately, so another process's line could land between them.
        sys.stdout.write(line)
        sys.stdout.flush()


def tensor_digest(tensors, length: int = 12) -> str:
    """The first ``length`` hex digits of a SHA-256 over the bytes of ``tensors`` (in order), wherever they live."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:length]


def total_norm(tensors) -> torch.Tensor:
    """The 2-norm of ``tensors`` taken together as one vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def clipped_grad_norm(grads, limit: float | None, algorithm: str | None) -> torch.Tensor:
    """The 2-norm of ``grads`` after the clipping of ``Trainer(gradient_clip_val=limit,
    gradient_clip_algorithm=algorithm)``, computed as torch clips, without changing ``grads``.

    By norm (Lightning's default algorithm) every gradient is scaled by ``min(1, limit / (norm + 1e-6))``
    (``torch.nn.utils.clip_grad_norm_``); by value every entry is clamped to ``[-limit, limit]``
    (``clip_grad_value_``). No limit (None or 0): the norm as it is.
    """
    norm = total_norm(grads)
    if not limit:
        return norm
    if algorithm == "value":
        return total_norm([g.clamp(-limit, limit) for g in grads])
    return norm * torch.clamp(limit / (norm + 1e-6), max=1.0)


class GradNormLogger(Callback):
    """Logs the gradient's size at every optimizer step: as backward produced it, and as the optimizer applies it.

    ``grad_norm``: the total 2-norm before clipping; ``grad_max_abs``: its largest entry (what
    ``gradient_clip_algorithm="value"`` caps); ``grad_norm_clipped``: the 2-norm after the Trainer's clipping
    (``gradient_clip_val``, ``gradient_clip_algorithm``), the gradient the optimizer's update uses.

    Lightning calls ``on_before_optimizer_step`` once the gradients are complete (accumulated, and unscaled under
    ``16-mixed``), clips them right after, then updates the weights; no hook runs between the clipping and the
    update. So the clipped norm is computed here from the unclipped gradients with :func:`clipped_grad_norm`.
    Reading ``.grad`` after the step can measure something else: PyTorch's multi-tensor SGD (its default
    implementation on a GPU) with Nesterov momentum adds the momentum term into the ``.grad`` of the parameters
    without weight decay.
    A LightningModule that overrides ``configure_gradient_clipping`` clips its own way: then ``grad_norm_clipped``
    is not logged.
    """

    def __init__(self):
        self._own_clipping = False

    def on_fit_start(self, trainer, pl_module):
        self._own_clipping = is_overridden("configure_gradient_clipping", pl_module, L.LightningModule)
        if self._own_clipping:
            rank_zero_warn(
                f"{type(pl_module).__name__} overrides configure_gradient_clipping: GradNormLogger logs the norm "
                "before clipping only (grad_norm), not grad_norm_clipped"
            )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in trainer.precision_plugin.main_params(optimizer) if p.grad is not None]
        if not grads:
            return
        values = {"grad_norm": total_norm(grads), "grad_max_abs": torch.stack([g.abs().max() for g in grads]).max()}
        if not self._own_clipping:
            values["grad_norm_clipped"] = clipped_grad_norm(
                grads, trainer.gradient_clip_val, trainer.gradient_clip_algorithm
            )
        pl_module.log_dict(values, on_step=True, on_epoch=False)


class ProgressiveCrop(Callback):
    """Trains on ``size``-pixel random crops for the first ``fraction`` of the epochs, then on full-size ones.

    Fewer operations per step early on ((24/32)^2 = 0.56 at 24 pixels) while the objects keep the scale they have
    at test time; the last epochs at full size let the network settle on the test-time input. Where kernel
    launches bound the step (eager mode on a fast GPU), a smaller crop does not shorten it: the saving needs CUDA
    graphs (``--model.compile reduce-overhead``).
    Needs the DataModule's GPU path (``data.on_device: true``) with a crop preset.
    """

    def __init__(self, size: int = 24, fraction: float = 0.75):
        check(size > 0, f"size must be positive, got {size}")
        check(0 <= fraction <= 1, f"fraction must be in [0, 1], got {fraction}")
        self.size, self.fraction = size, fraction

    def on_train_epoch_start(self, trainer, pl_module):
        transform = getattr(trainer.datamodule, "batch_train_transform", None)
        check(
            transform is not None and getattr(trainer.datamodule, "on_device", False),
            "ProgressiveCrop needs a CIFAR10DataModule with on_device=True",
        )
        check(
            "crop" in transform.preset,  # without a crop step the size would be ignored: say so instead
            f"ProgressiveCrop needs a crop preset (data.augment flip_crop or flip_crop_rotate), got {transform.preset}",
        )
        small = trainer.current_epoch < round(self.fraction * trainer.max_epochs)
        transform.crop_size = self.size if small else None


class EMAWeights(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, whose average is also what ``trainer.test(ckpt_path=...)`` measures.

    As shipped: the average is updated after every optimizer step, validation and the checkpoints' ``state_dict``
    use it, training continues on the raw weights, and resuming a fit (``ckpt_path`` in ``fit``) restores both.
    One hook differs: outside fitting a loaded checkpoint keeps its ``state_dict`` (the average), where Lightning's
    callback would put the raw weights back whenever it holds an average, e.g. testing the best checkpoint right
    after fit, which would then measure other weights than the ones validated.

    When fit ends the module holds the average; ``raw_state_dict`` keeps a copy of the training weights as they were
    then (``module.load_state_dict(ema.raw_state_dict)`` puts them back, e.g. to measure what the average adds).
    """

    def __init__(self, decay: float = 0.999, **kwargs):
        check(0 < decay < 1, f"decay must be in (0, 1), got {decay}")
        super().__init__(decay=decay, **kwargs)
        self.decay = decay
        self.raw_state_dict: dict[str, torch.Tensor] | None = None

    def on_train_end(self, trainer, pl_module):
        self.raw_state_dict = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.state.fn == TrainerFn.FITTING:  # resuming: Lightning restores the raw weights and the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


# ModelCheckpoint options of ``last.ckpt`` rewritten after every epoch (the CLI's ``last_checkpoint`` uses them too)
LAST_CHECKPOINT = {"filename": "last", "enable_version_counter": False}


def latest_checkpoint(dirpath: str | None = None) -> ModelCheckpoint:
    """A ModelCheckpoint that rewrites ``last.ckpt`` after every epoch, for resuming with ``ckpt_path``.

    Needed since Lightning 2.6: ``ModelCheckpoint(monitor=..., save_last=True)`` refreshes ``last.ckpt`` only
    when the monitored metric improves, so it can hold an older epoch than the last one.
    """
    return ModelCheckpoint(dirpath=dirpath, **LAST_CHECKPOINT)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The file of the monitored ModelCheckpoint's best epoch, or None when none was saved (``fast_dev_run``).

    Not ``last.ckpt``: :func:`latest_checkpoint` (the CLI's ``last_checkpoint``) monitors nothing, and its
    ``best_model_path`` is simply the last file it wrote.
    """
    return next((cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor), "") or None


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

    Always a ModelCheckpoint on ``monitor`` (the best) and :func:`latest_checkpoint` (``last.ckpt``);
    LearningRateMonitor and EpochTimer unless turned off; EarlyStopping when ``early_stopping_patience`` is set;
    StochasticWeightAveraging when ``swa_lrs`` is set; GradientAccumulationScheduler from ``accumulate``
    ({epoch: batches}, e.g. {0: 4, 5: 1}).
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

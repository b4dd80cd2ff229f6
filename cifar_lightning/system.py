"""CIFARSystem: the LightningModule that trains any classification backbone.

from cifar_lightning import CIFARSystem, build_resnet
system = CIFARSystem(build_resnet(depth=18), optimizer="sgd", lr=0.05, scheduler="onecycle")
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cifar_lightning.errors import check, check_choice
from cifar_lightning.model import CifarResNet

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "onecycle_linear", "cosine", "plateau", "none")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """NLL on log-softmax outputs with label smoothing.

    Equals ``F.cross_entropy(logits, target, label_smoothing=s)``.
    """
    nll = F.nll_loss(log_probs, target)
    if smoothing == 0:
        return nll
    return (1 - smoothing) * nll - smoothing * log_probs.mean(dim=1).mean()


CPU_NHWC_MIN_CHANNELS = 16  # see CIFARSystem.on_fit_start


def narrowest_conv(module: nn.Module) -> int:
    """The fewest channels any 2-d convolution of ``module`` gives out (each one's input is another's output, but
    the image's)."""
    return min((m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)), default=CPU_NHWC_MIN_CHANNELS)


def training_loss(system: CIFARSystem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training step's forward: (label-smoothed loss, log-probabilities). With ``compile`` this is the compiled
    region, so the loss and its gradient join the network's graph instead of running as separate small kernels."""
    log_probs = F.log_softmax(system(x), dim=1)
    return smoothed_nll(log_probs, y, system.hparams.label_smoothing), log_probs


def logger_writes_this_step(trainer) -> bool:
    """Whether Lightning's loggers write the values of the training step under way: every ``log_every_n_steps``-th
    optimizer step, a step after which training stops, every step of ``fast_dev_run`` (Lightning's own rule, read
    from the trainer's public state); True without a trainer (a step called by hand)."""
    if trainer is None or trainer.fast_dev_run:
        return True
    return (trainer.global_step + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop


def attached_trainer(module: L.LightningModule):
    """The module's trainer, or None when it has none (``module.trainer`` raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def fused_if_cuda(params: list[torch.Tensor], clips_gradients: bool = False) -> bool | None:
    """``fused=True`` for PyTorch's optimizers when every parameter is on a GPU (one kernel per step instead of a
    few per parameter group); ``None`` (PyTorch's default) otherwise, and when the Trainer clips gradients: a fused
    step unscales mixed-precision gradients itself, so Lightning refuses to clip them before it."""
    return True if params and all(p.is_cuda for p in params) and not clips_gradients else None


def warmup_share(fraction: float, steps: int) -> float:
    """OneCycleLR's ``pct_start``, raised so that both phases have two steps or more (it divides by their count)."""
    return min(max(fraction, 2.5 / steps), 0.5) if steps < 10 else fraction


class CIFARSystem(L.LightningModule):
    """Trains ``backbone`` (default: a CIFAR ResNet-18) with the workshop's loss, optimizers and schedules.

    Args:
        backbone: any ``nn.Module`` mapping images to class logits.
        num_classes: for the accuracy metrics.
        optimizer: ``sgd`` (with ``momentum``/``nesterov``) | ``adam`` | ``adamw``.
        lr: the (peak) learning rate; the LR finder sets this attribute.
        weight_decay: L2 penalty (decoupled for AdamW).
        scheduler: ``onecycle`` (cosine ramps) | ``onecycle_linear`` (linear ramps) | ``cosine`` (all stepped per
            batch over ``trainer.estimated_stepping_batches``) | ``plateau`` (ReduceLROnPlateau on ``val_loss``,
            per epoch) | ``none``.
        warmup_fraction: share of the steps a OneCycle schedule spends rising to ``lr``.
        label_smoothing: share of the target mass spread evenly over all classes.
        tta_flip: at validation/test time average the predictions for the image and its mirror.
        tta_translate: also average over the image shifted by this many pixels down-right and up-left
            (reflect-padded as the training crops are; each with its mirror when ``tta_flip``): 0 turns it off.
        channels_last: keep weights and inputs in NHWC memory layout (faster convolutions on tensor cores). A fit
            on a CPU with a convolution narrower than 16 channels keeps NCHW, with a warning (oneDNN can hang or
            crash there).
        compile: ``torch.compile`` the training step's forward and loss (:func:`training_loss`) at the start of
            fit (the first steps pay the compile time): ``true`` for the default mode, or a mode name such as
            ``reduce-overhead`` (CUDA graphs). One static graph per input shape (``dynamic=False``); evaluation and
            prediction run eagerly, so their few batches (another mode, a smaller last batch) compile nothing.
        progress_bar_loss: show the training loss in the progress bar. Lightning reads every ``prog_bar`` value
            back from the GPU after every step (Lightning issue #21232), which makes the host wait for the GPU
            each step: the fast configs turn it off. The loss is still logged, on the steps the loggers write
            (every ``trainer.log_every_n_steps``); ``trainer.callback_metrics["train_loss"]`` then holds the
            latest written step's loss.
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        num_classes: int = 10,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        scheduler: str = "onecycle",
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
        tta_translate: int = 0,
        warmup_fraction: float = 0.3,
        channels_last: bool = False,
        compile: bool | str = False,
        progress_bar_loss: bool = True,
    ):
        super().__init__()
        check_choice("optimizer", optimizer, OPTIMIZERS)
        check_choice("scheduler", scheduler, SCHEDULERS)
        check(lr > 0, f"lr must be positive, got {lr}")
        check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        check(0 <= label_smoothing < 1, f"label_smoothing must be in [0, 1), got {label_smoothing}")
        check(0 <= tta_translate < 8, f"tta_translate must be 0 (off) to 7 pixels, got {tta_translate}")
        check(0 < warmup_fraction < 1, f"warmup_fraction must be in (0, 1), got {warmup_fraction}")
        check(
            not isinstance(compile, str) or compile in COMPILE_MODES,
            f"compile must be true, false or one of {', '.join(COMPILE_MODES)}, got {compile!r}",
        )
        self.save_hyperparameters(ignore=["backbone"])
        self.backbone = backbone if backbone is not None else CifarResNet(depth=18, num_classes=num_classes)
        self.lr = lr
        self._training_loss = training_loss  # setup() swaps in the compiled one when ``compile`` is set
        # validate_args=False: the argument checks read values back from the GPU, a sync on every step.
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes, average="micro", validate_args=False) for _ in range(3)
        )
        self._channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        if self._channels_last and self.device.type == "cpu" and narrowest_conv(self.backbone) < CPU_NHWC_MIN_CHANNELS:
            # oneDNN (torch 2.14's CPU convolutions) can hang or crash in the backward pass of NHWC convolutions this
            # narrow (widths 2 and 4 hung; width 8 segfaulted on 224-pixel inputs, not on 32; 16 never failed): such
            # a fit on a CPU keeps NCHW. Same results, only the layout.
            rank_zero_warn(
                f"channels_last is off for this fit: on a CPU, convolutions narrower than "
                f"{CPU_NHWC_MIN_CHANNELS} channels can hang in NHWC"
            )
            self._channels_last = False
            self.backbone.to(memory_format=torch.contiguous_format)

    def setup(self, stage: str) -> None:
        if self.hparams.get("compile") and self._training_loss is training_loss:
            mode = self.hparams.compile if isinstance(self.hparams.compile, str) else None
            # A compiled function, the modules untouched: parameter names and checkpoints stay as without compile,
            # and evaluation (which calls the module) runs eagerly. Static shapes: each crop size gets its own
            # graph, which later runs find in the on-disk cache.
            self._training_loss = torch.compile(training_loss, mode=mode, dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def tta_views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The test-time views of a batch: the images, their mirrors (``tta_flip``), shifted copies
        (``tta_translate``)."""
        views = [x]
        shift = self.hparams.get("tta_translate", 0)
        if shift:
            padded = F.pad(x, (shift,) * 4, mode="reflect")
            h, w = x.shape[-2:]
            views += [padded[..., :h, :w], padded[..., 2 * shift :, 2 * shift :]]  # content moved down-right, up-left
        if self.hparams.tta_flip:
            views += [v.flip(-1) for v in views]
        return views

    def predict_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities, averaged (as probabilities) over the test-time views when TTA is on."""
        views = self.tta_views(x)
        # one forward over all views (fewer, larger kernels); in eval mode BatchNorm does not mix them
        log_probs = F.log_softmax(self(torch.cat(views)), dim=1).unflatten(0, (len(views), len(x)))
        return torch.logsumexp(log_probs, dim=0) - math.log(len(views))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, log_probs = self._training_loss(self, x, y)
        self.train_acc.update(log_probs, y)  # summed over the epoch, logged at its end
        shown = self.hparams.get("progress_bar_loss", True)
        # Each self.log call costs host time (Lightning moves its result collection to the device on every call),
        # which a fast GPU step cannot hide. Without the bar, hand Lightning only the values its loggers write.
        if shown or logger_writes_this_step(attached_trainer(self)):
            self.log("train_loss", loss, prog_bar=shown)
        return loss

    def on_train_epoch_end(self):
        # Logged once per epoch (Lightning computes, syncs across DDP ranks and resets it): logging the metric at
        # every step would add host time to every step.
        self.log("train_acc", self.train_acc)

    def _evaluate(self, batch, stage: str, metric: MulticlassAccuracy):
        x, y = batch
        log_probs = self.predict_log_probs(x)
        metric(log_probs, y)
        self.log(f"{stage}_loss", F.nll_loss(log_probs, y), prog_bar=True, sync_dist=True)
        self.log(f"{stage}_acc", metric, prog_bar=True)

    # cuDNN's autotuning (``trainer.benchmark``) times every convolution algorithm once per new input shape. An
    # evaluation brings new shapes (all test-time views in one batch, a smaller last batch) for a few batches
    # only: tuning them costs more than it saves. Evaluation uses cuDNN's
    # heuristic choice instead; training keeps its tuned algorithms.
    def _pause_autotuning(self):
        self._autotuning = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False

    def _resume_autotuning(self):
        torch.backends.cudnn.benchmark = getattr(self, "_autotuning", torch.backends.cudnn.benchmark)

    on_validation_start = on_test_start = on_predict_start = _pause_autotuning
    on_validation_end = on_test_end = on_predict_end = _resume_autotuning

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_log_probs(x).exp()

    def configure_optimizers(self):
        hp = self.hparams
        # No weight decay on BatchNorm weights and biases (a common, measurable gain).
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        clips = bool(getattr(attached_trainer(self), "gradient_clip_val", None))  # None: no Trainer attached
        fused = fused_if_cuda(decay + no_decay, clips_gradients=clips)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups, lr=self.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0, fused=fused
            )
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=self.lr, fused=fused)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr, fused=fused)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if steps < 5:  # too short for a schedule (a smoke run): keep the lr constant
            return opt
        if hp.scheduler in ("onecycle", "onecycle_linear"):
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=self.lr,
                total_steps=steps,
                pct_start=warmup_share(hp.get("warmup_fraction", 0.3), steps),
                anneal_strategy="linear" if hp.scheduler == "onecycle_linear" else "cos",
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Record how to rebuild the backbone, so that load_system() needs only the file.
        checkpoint["backbone_config"] = getattr(self.backbone, "config", None)


def load_system(checkpoint_path: str, map_location="cpu") -> CIFARSystem:
    """Restore a :class:`CIFARSystem` with its ResNet backbone from a checkpoint file alone."""
    ckpt = torch.load(checkpoint_path, map_location=map_location, weights_only=False)
    config = ckpt.get("backbone_config")
    check(
        config is not None,
        f"{checkpoint_path} has no backbone_config: pass backbone= to CIFARSystem.load_from_checkpoint",
    )
    backbone = CifarResNet(**config)
    return CIFARSystem.load_from_checkpoint(checkpoint_path, map_location=map_location, backbone=backbone)

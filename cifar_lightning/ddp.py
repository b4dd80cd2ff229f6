"""DDP for a fast step: the project CLI's ``--trainer.strategy ddp``.

    python -m cifar_lightning fit --config configs/full.yaml --trainer.devices 2 --trainer.strategy ddp

For a step whose GPU work takes a few milliseconds, PyTorch's DDP defaults add host work that outweighs it
(benchmarks/results/gpu-profile-5.md, 2 H100s): ``broadcast_buffers=True`` sends rank 0's BatchNorm statistics to
every process before every forward, and ``gradient_as_bucket_view=False`` copies each gradient into DDP's
all-reduce buckets and back (two copies per parameter per step). ``LeanDDPStrategy`` turns both off: gradients live
in the buckets, and each process keeps its own running statistics while training; ``sync_buffers`` sends rank 0's
to the others before each evaluation (``CIFARSystem`` calls it), so every process evaluates the same model. With
``torch.compile`` it compiles the whole network as one graph (Dynamo's ``optimize_ddp=False``) instead of one graph
per gradient bucket: the all-reduce no longer overlaps the backward pass, which costs less than the extra graphs.
And Lightning's per-step SIGTERM broadcast (a host-GPU sync every step) runs every 50th step (``check_sigterm_every``).
At 24 pixels a step's GPU work (~8.4 ms on an H100) barely exceeds its host work, so every host millisecond shows
(benchmarks/results/gpu-ddp-8.md): the objects that exist when training starts (the data module's, the compiled
graphs', Lightning's) are moved out of the garbage collector's reach (``gc.freeze``) until the fit ends, so its full
collections no longer walk them during the steps.
"""

from __future__ import annotations

import gc

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import nn


class LeanDDPStrategy(DDPStrategy):
    """``DDPStrategy`` with ``broadcast_buffers=False`` and ``gradient_as_bucket_view=True`` (other DDP options pass
    through), one compiled graph per step, a SIGTERM check every ``sigterm_check_every_n_steps`` steps, and (with
    ``freeze_gc``) the garbage collector's older objects frozen while training runs."""

    def __init__(self, broadcast_buffers: bool = False, gradient_as_bucket_view: bool = True,
                 sigterm_check_every_n_steps: int = 50, freeze_gc: bool = True, **kwargs):
        super().__init__(broadcast_buffers=broadcast_buffers, gradient_as_bucket_view=gradient_as_bucket_view, **kwargs)
        self.sigterm_check_every_n_steps, self.freeze_gc = sigterm_check_every_n_steps, freeze_gc

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.freeze_gc:
            gc.collect()  # today's garbage first: frozen objects are never freed until unfrozen
            gc.freeze()

    def teardown(self) -> None:  # after every fit, also one that failed
        if self.freeze_gc:
            gc.unfreeze()  # back to normal collection for whatever runs next
        super().teardown()

    def setup(self, trainer) -> None:
        torch._dynamo.config.optimize_ddp = False  # one graph per step under DDP, not one per gradient bucket
        check_sigterm_every(trainer.fit_loop.epoch_loop, trainer, self.sigterm_check_every_n_steps)
        super().setup(trainer)


def check_sigterm_every(epoch_loop, trainer, n: int) -> None:
    """Lightning 2.6 broadcasts a SIGTERM flag from rank 0 and reads it back (``.item()``) before every training step
    under DDP, so the host waits for the GPU each step (Lightning issue #21487; PR #21640 proposes
    ``broadcast_sigterm_every_n_steps``). Do it every ``n``-th optimizer step instead: the step count is the same on
    every rank, so all ranks still broadcast together; a preempted job stops at most ``n - 1`` steps later."""
    broadcast = getattr(epoch_loop, "_broadcast_sigterm_tensor", None)
    if broadcast is None or n <= 1:
        return  # another Lightning version: nothing to thin out

    def every_n_steps() -> None:
        if trainer.global_step % n == 0:
            broadcast()

    epoch_loop._broadcast_sigterm_tensor = every_n_steps


def sync_buffers(module: nn.Module, src: int = 0) -> None:
    """Give every process rank ``src``'s buffers (BatchNorm running statistics); a no-op outside DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src)

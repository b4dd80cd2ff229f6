"""DDP for a fast step: the project CLI's ``--trainer.strategy ddp``.

    python -m cifar_lightning fit --config configs/full.yaml --trainer.devices 2 --trainer.strategy ddp

For a step whose GPU work takes a few milliseconds (~8.4 ms on an H100 at 24 pixels), every millisecond of host work
shows under DDP: once the host needs longer than the GPU, the GPUs wait (benchmarks/results/gpu-ddp-8.md and
gpu-ddp-9.md). ``LeanDDPStrategy`` keeps Lightning's DDP (one process per GPU, sharded data, synced metrics,
checkpoints) and trims its host work per step:

- Gradients (``gradient_sync="flat"``, the default): no ``DistributedDataParallel`` wrapper. After ``backward``,
  ``FlatGradients`` copies all gradients into one buffer, all-reduces it once and copies the means back, a fixed
  handful of host calls. PyTorch's wrapper fires a C++ hook per parameter during ``backward`` and all-reduces bucket
  by bucket; with one compiled graph per step there is no overlap for its buckets to win. Measured on one machine:
  5.9 ms of host time per 24-pixel step against 10.5 ms with the wrapper (gpu-ddp-9.md). ``gradient_sync="buckets"``
  keeps the wrapper, with ``broadcast_buffers=False`` (no BatchNorm statistics sent before every forward) and
  ``gradient_as_bucket_view=True`` (no gradient copies into and out of its buckets; gpu-profile-5.md).
- BatchNorm statistics: each process keeps its own while training; ``sync_buffers`` sends rank 0's to the others
  before each evaluation (``CIFARSystem`` calls it), so every process evaluates the same model.
- ``torch.compile``: one graph for the whole network (Dynamo's ``optimize_ddp=False``), not one per gradient bucket.
- Lightning's per-step SIGTERM broadcast (a host-GPU sync every step) runs every 50th step (``check_sigterm_every``).
- The objects that exist when training starts (the data module's, the compiled graphs', Lightning's) are moved out of
  the garbage collector's reach (``gc.freeze``) until the fit ends, so its full collections no longer walk them.
"""

from __future__ import annotations

import gc
import inspect
from contextlib import contextmanager

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cifar_lightning.errors import CifarLightningError, check, check_choice


class LeanDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose gradients are averaged with one all-reduce after ``backward`` (``gradient_sync="flat"``;
    ``"buckets"``: PyTorch's DDP wrapper, with ``broadcast_buffers=False`` and ``gradient_as_bucket_view=True``; other
    DDP options pass through to it), one compiled graph per step, a SIGTERM check every
    ``sigterm_check_every_n_steps`` steps, and (with ``freeze_gc``) the garbage collector's older objects frozen while
    training runs."""

    def __init__(self, gradient_sync: str = "flat", broadcast_buffers: bool = False,
                 gradient_as_bucket_view: bool = True, sigterm_check_every_n_steps: int = 50, freeze_gc: bool = True,
                 **kwargs):
        check_choice("gradient_sync", gradient_sync, ("flat", "buckets"))
        super().__init__(broadcast_buffers=broadcast_buffers, gradient_as_bucket_view=gradient_as_bucket_view, **kwargs)
        self.gradient_sync, self.sigterm_check_every_n_steps, self.freeze_gc = (
            gradient_sync, sigterm_check_every_n_steps, freeze_gc)
        wrapper_only = wrapper_options_set(kwargs)
        check(gradient_sync == "buckets" or not wrapper_only,
              f"{', '.join(wrapper_only)}: options of PyTorch's DDP wrapper, which gradient_sync='flat' does not use; "
              "add --trainer.strategy.gradient_sync buckets")
        self._flat_gradients: FlatGradients | None = None
        self._sync_blocked = False

    def configure_ddp(self) -> None:
        if self.gradient_sync == "buckets":
            return super().configure_ddp()
        _sync_module_states(self.model)  # as DDP's constructor does: every process starts from rank 0's weights
        self._flat_gradients = FlatGradients(self.model.named_parameters())

    def post_backward(self, closure_loss: torch.Tensor) -> None:
        super().post_backward(closure_loss)
        if self._flat_gradients is not None and not self._sync_blocked:
            self._flat_gradients.average(self.world_size)

    @contextmanager
    def block_backward_sync(self):
        """Lightning's context for the backward passes that accumulate gradients without stepping: no all-reduce."""
        blocked, self._sync_blocked = self._sync_blocked, True
        try:
            with super().block_backward_sync():
                yield
        finally:
            self._sync_blocked = blocked

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.freeze_gc:
            gc.collect()  # today's garbage first: frozen objects are never freed until unfrozen
            gc.freeze()

    def teardown(self) -> None:  # after every fit, also one that failed
        if self.freeze_gc:
            gc.unfreeze()  # back to normal collection for whatever runs next
        self._flat_gradients = None
        super().teardown()

    def setup(self, trainer) -> None:
        torch._dynamo.config.optimize_ddp = False  # one graph per step under DDP, not one per gradient bucket
        check_sigterm_every(trainer.fit_loop.epoch_loop, trainer, self.sigterm_check_every_n_steps)
        super().setup(trainer)


def wrapper_options_set(kwargs: dict) -> list[str]:
    """The names in ``kwargs`` that set an option of PyTorch's DDP wrapper (or of DDPStrategy's hooks into it) to
    something other than its default (the CLI passes every default along)."""
    defaults = {name: param.default for name, param in inspect.signature(DistributedDataParallel).parameters.items()}
    defaults.update(dict.fromkeys(("ddp_comm_state", "ddp_comm_hook", "ddp_comm_wrapper", "model_averaging_period")))
    return sorted(name for name, value in kwargs.items() if name in defaults and value != defaults[name])


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


class FlatGradients:
    """Averages the gradients of ``named_parameters`` (those that require one) across processes: each step copies
    them into one flat buffer per dtype, all-reduces it and copies the means back (a fixed number of host calls,
    whatever the number of parameters). Every such parameter needs a gradient in every step, on every process
    (the buffers must match across processes)."""

    def __init__(self, named_parameters):
        named = [(name, p) for name, p in named_parameters if p.requires_grad]
        self.groups = []  # (names, parameters, flat buffer, views of it shaped like the parameters), one per dtype
        for dtype in dict.fromkeys(p.dtype for _, p in named):
            names, params = zip(*[(name, p) for name, p in named if p.dtype == dtype], strict=True)
            flat = torch.empty(sum(p.numel() for p in params), dtype=dtype, device=params[0].device)
            views = [shaped_like(v, p) for v, p in zip(flat.split([p.numel() for p in params]), params, strict=True)]
            self.groups.append((names, params, flat, views))

    def average(self, world_size: int) -> None:
        for names, params, flat, views in self.groups:
            grads = [p.grad for p in params]
            missing = next((name for name, g in zip(names, grads, strict=True) if g is None), None)
            if missing is not None:  # the message is built only then: this runs every step
                raise CifarLightningError(
                    f"parameter {missing!r} got no gradient in this step: gradient_sync='flat' needs one for every "
                    "trainable parameter; pass --trainer.strategy cifar_lightning.ddp.LeanDDPStrategy "
                    "--trainer.strategy.gradient_sync buckets --trainer.strategy.find_unused_parameters true")
            torch._foreach_copy_(views, grads)
            flat.div_(world_size)
            dist.all_reduce(flat)
            torch._foreach_copy_(grads, views)


def shaped_like(flat: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A view of the 1-d ``flat`` with ``param``'s shape and strides (its gradient's, by autograd's layout rule) when
    they cover it densely (contiguous or channels_last): ``torch._foreach_copy_`` between tensors of equal strides is
    a few fused kernels on a GPU; with any stride mismatch it copies tensor by tensor (with contiguous views against
    ResNet-18's channels_last weights, the largest item in a profile of the step: results/gpu-ddp-9.md)."""
    dense = param.is_contiguous() or (param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last))
    return flat.as_strided(param.shape, param.stride()) if dense else flat.view(param.shape)

"""Where a Lightning training step's time goes: the host's work against the GPU's, inside a real fit.

    python benchmarks/profile_fit.py --config configs/full.yaml --data.source folder --data.data_dir <jpeg copy>

Runs ``fit`` through the project's CLI (any CLI options after the script's own) for 4 epochs, the first two on
``ProgressiveCrop``'s small crops, and profiles 20 steady steps of epoch 1 (small crops) and of epoch 3 (full size)
with ``torch.profiler``. For each window it prints the wall time per step, the GPU's kernel time per step (if it
is far below the wall time, the GPU waits for the host: the step is launch-bound), kernel launches and host-GPU
syncs per step, and the host operations that took the most CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_lightning import CIFAR10DataModule, CIFARSystem, ProgressiveCrop  # noqa: E402
from cifar_lightning.cli import CifarCLI  # noqa: E402

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch")


def window_summary(prof, steps: int, wall_s: float, label: str) -> str:
    """One window's figures per step, from the profiler's per-operation averages."""
    ops = prof.key_averages()
    # kernel (and memcpy) time: the events on the GPU itself, as the profiler's own "Self CUDA time total" counts them
    gpu_us = sum(op.self_device_time_total for op in ops
                 if op.device_type == DeviceType.CUDA and not op.is_user_annotation)
    nccl_us = sum(op.self_device_time_total for op in ops
                  if op.device_type == DeviceType.CUDA and "nccl" in op.key.lower())  # DDP's gradient all-reduce
    count = {op.key: op.count for op in ops}
    lines = [f"== {label}: {steps} steps",
             f"wall {wall_s / steps * 1e3:.2f} ms/step, GPU kernels {gpu_us / steps / 1e3:.2f} ms/step "
             f"({gpu_us / 1e6 / wall_s:.0%} busy), {sum(count.get(k, 0) for k in LAUNCHES) / steps:.0f} launches/step, "
             f"{sum(count.get(k, 0) for k in SYNCS) / steps:.2f} syncs/step, "
             f"{count.get('cudaMemcpyAsync', 0) / steps:.2f} memcpy/step, NCCL kernels {nccl_us / steps / 1e3:.2f} ms/step"]
    lines.append(ops.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=55))
    if any(op.device_type == DeviceType.CUDA for op in ops):
        lines.append(ops.table(sort_by="self_device_time_total", row_limit=8, max_name_column_width=55))
    return "\n".join(lines)


def window_error(steps_per_epoch: int, first: int, steps: int) -> str | None:
    """Why a window of ``steps`` steps from step ``first`` cannot be profiled in an epoch this long, or None."""
    if first + steps <= steps_per_epoch:
        return None
    start = min(first, steps_per_epoch // 4)  # past the epoch's first steps, which pay for starting it
    return (f"an epoch has {steps_per_epoch} steps, but the window needs --first {first} + --steps {steps}: "
            f"pass e.g. --first {start} --steps {min(steps, steps_per_epoch - start)}")


class StepWindows(L.Callback):
    """Profiles steps ``[first, first + steps)`` of each epoch in ``epochs`` and prints a summary."""

    def __init__(self, epochs=(1, 3), first: int = 20, steps: int = 20):
        self.epochs, self.first, self.steps = epochs, first, steps
        self.prof = None

    def on_train_start(self, trainer, pl_module):
        # a window longer than the epoch would never close: no summary at all (e.g. DDP at a global batch of 2048:
        # 22 steps per epoch)
        error = window_error(int(trainer.num_training_batches), self.first, self.steps)
        if error:
            raise SystemExit(f"error: {error}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch in self.epochs and batch_idx == self.first:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.prof = profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])])
            self.prof.__enter__()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.prof is not None and batch_idx == self.first + self.steps - 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.start
            self.prof.__exit__(None, None, None)
            size = batch[0].shape[-1]
            if trainer.is_global_zero:  # under DDP: rank 0's view
                print(window_summary(self.prof, self.steps, wall, f"epoch {trainer.current_epoch}, {size}-pixel inputs, "
                                     f"{trainer.world_size} process(es)"), flush=True)
            self.prof = None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--first", type=int, default=20, help="first profiled step of each window")
    p.add_argument("--steps", type=int, default=20, help="steps per window")
    args, cli_args = p.parse_known_args()
    cli = CifarCLI(CIFARSystem, CIFAR10DataModule, seed_everything_default=42,
                   trainer_defaults={"default_root_dir": "/tmp/profile_fit",
                                     "callbacks": [StepWindows(first=args.first, steps=args.steps)]},
                   args=[*cli_args, "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "4"], run=False)
    for callback in cli.trainer.callbacks:
        if isinstance(callback, ProgressiveCrop):
            callback.fraction = 0.5  # epochs 0-1 small crops, 2-3 full size
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


if __name__ == "__main__":
    main()

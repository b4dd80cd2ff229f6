"""Is a fit's training step bound by the GPU or by the host? Each step's host and GPU time, inside a real fit.

    python benchmarks/step_timeline.py --out runs/timeline --tag ddp -- --config configs/full.yaml \
        --config configs/ddp.yaml --model.compile reduce-overhead --data.source folder --data.data_dir <jpeg copy> \
        --trainer.max_epochs 12 --trainer.check_val_every_n_epoch 12

Runs ``fit`` through the project's CLI (the options after ``--``) and records, for every training step, the host's
time from one step's start to the next (``time.perf_counter``) and the GPU's (CUDA events recorded at each step's
start, which the GPU passes when it reaches them: no waiting). While the GPU is the bottleneck the host runs ahead
and its per-step times (median) stay below the GPU's; when the host's median reaches the GPU's, the GPU waits for
the host. Prints, per input size (``ProgressiveCrop`` changes it), the epochs' training seconds and both medians;
writes every step to ``<out>/<tag>-r<rank>.json``. Switches for the comparisons in ``results/gpu-ddp-8.md``:
``--log-every-step`` restores the training loss's ``self.log`` on every step, ``--no-freeze-gc`` keeps the garbage
collector as it is under DDP, ``--bucketed-ddp`` averages the gradients with PyTorch's DDP wrapper (results/gpu-ddp-9.md),
``--cprofile`` writes a Python profile of 16 steps of epoch 3 per rank.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import itertools
import json
import pstats
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cifar_lightning.cli as cli_module  # noqa: E402
import cifar_lightning.system as system_module  # noqa: E402
from cifar_lightning import CIFAR10DataModule, CIFARSystem  # noqa: E402
from cifar_lightning.callbacks import EpochTimer  # noqa: E402
from cifar_lightning.ddp import LeanDDPStrategy  # noqa: E402


def size_summary(rows: list[dict]) -> list[dict]:
    """Per input size: the epochs after the first (which pays for graphs and autotuning) and before the last (which
    holds the validation), their median training seconds, and the host's and GPU's median ms per step over their
    steps, leaving out each epoch's first and last step (epoch start and end wait for the GPU)."""
    out = []
    for size in sorted({r["size"] for r in rows}):
        group = [r for r in rows if r["size"] == size]
        steady = [r for r in group[1:] if r is not rows[-1]] or group
        host = np.concatenate([r["host_ms"][1:-1] for r in steady])
        gpu = np.concatenate([r["gpu_ms"][1:-1] for r in steady])
        out.append({"size": size, "epochs": len(steady), "epoch_s": float(np.median([r["train_s"] for r in steady])),
                    "host_ms": float(np.median(host)), "gpu_ms": float(np.median(gpu))})
    return out


class Timeline(L.Callback):
    """Host and GPU time of every training step; and with ``cprofile`` a Python profile of steps 3-18 of epoch 3."""

    def __init__(self, out: Path, tag: str, cprofile: bool = False):
        self.out, self.tag, self.cprofile = out, tag, cprofile
        self.rows, self.profiler = [], None

    def on_train_epoch_start(self, trainer, pl_module):
        self.cuda = pl_module.device.type == "cuda"
        EpochTimer._sync(pl_module)  # the epoch starts with an idle GPU, as the benchmark's clock does
        self.host, self.events = [], []

    def _mark(self):
        self.host.append(time.perf_counter())
        if self.cuda:
            self.events.append(torch.cuda.Event(enable_timing=True))
            self.events[-1].record()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._mark()
        if self.cprofile and trainer.current_epoch == 3 and batch_idx == 3:
            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.size = batch[0].shape[-1]
        if self.profiler is not None and batch_idx == 18:
            self.profiler.disable()
            text = io.StringIO()
            stats = pstats.Stats(self.profiler, stream=text)
            stats.sort_stats("tottime").print_stats(45)
            stats.sort_stats("cumtime").print_stats(60)
            (self.out / f"{self.tag}-cprofile-r{trainer.global_rank}.txt").write_text(text.getvalue())
            self.profiler = None

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation, if it had one
        self._mark()
        EpochTimer._sync(pl_module)  # every event recorded has been reached
        host = np.diff(self.host) * 1e3
        gpu = np.array([a.elapsed_time(b) for a, b in itertools.pairwise(self.events)]) if self.cuda else host
        self.rows.append({"epoch": trainer.current_epoch, "size": self.size, "train_s": float(host.sum() / 1e3),
                          "host_ms": host.round(3).tolist(), "gpu_ms": gpu.round(3).tolist()})

    def on_train_end(self, trainer, pl_module):
        (self.out / f"{self.tag}-r{trainer.global_rank}.json").write_text(json.dumps(self.rows))
        if trainer.is_global_zero:
            for s in size_summary(self.rows):
                print(f"[{self.tag}] {s['size']}px, {s['epochs']} epochs: {s['epoch_s']:.3f} s per epoch, per step "
                      f"host {s['host_ms']:.2f} ms, GPU {s['gpu_ms']:.2f} ms (medians)", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the per-step JSON (and profiles)")
    p.add_argument("--tag", required=True, help="name of this run in the files and the printout")
    p.add_argument("--log-every-step", action="store_true", help="self.log the training loss on every step (before session 8)")
    p.add_argument("--no-freeze-gc", action="store_true", help="LeanDDPStrategy without gc.freeze (before session 8)")
    p.add_argument("--bucketed-ddp", action="store_true", help="LeanDDPStrategy(gradient_sync='buckets') (before session 9)")
    p.add_argument("--cprofile", action="store_true", help="profile 16 steps of epoch 3 with cProfile")
    args, cli_args = p.parse_known_args(argv)
    cli_args = [a for a in cli_args if a != "--"]
    # DDP starts the other ranks by re-running this command line: each process applies the same switches.
    if args.log_every_step:
        system_module.logger_writes_this_step = lambda trainer: True
    lean = {"freeze_gc": False} if args.no_freeze_gc else {}
    if args.bucketed_ddp:
        lean["gradient_sync"] = "buckets"
    if lean:
        cli_module.LeanDDPStrategy = functools.partial(LeanDDPStrategy, **lean)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = cli_module.CifarCLI(CIFARSystem, CIFAR10DataModule, seed_everything_default=42,
                              trainer_defaults={"default_root_dir": str(out / args.tag),
                                                "callbacks": [Timeline(out, args.tag, args.cprofile)]},
                              args=[*cli_args, "--test_after_fit", "false"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


if __name__ == "__main__":
    main()

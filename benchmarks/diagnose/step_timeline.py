"""Is a training step bound by the GPU or by the host? Each step's host and GPU time, inside a real fit.

    python benchmarks/diagnose/step_timeline.py --out runs/timeline --tag full -- --config configs/full.yaml \
        --model.compile reduce-overhead --trainer.max_epochs 8 --trainer.check_val_every_n_epoch 8

Runs ``fit`` through the project's CLI (the options after ``--``; add ``--config configs/ddp.yaml`` for DDP) and
records, for every training step, the host's time from one step's start to the next (``time.perf_counter``) and the
GPU's (CUDA events recorded at each step's start, which the GPU passes when it reaches them: no waiting). While the
GPU is the bottleneck the host runs ahead and its per-step times (median) stay below the GPU's; when the host's
median reaches the GPU's, the GPU waits for the host. Prints, per input size (``ProgressiveCrop`` changes it), the
epochs' training seconds and both medians; writes every step to ``<out>/<tag>-r<rank>.json``. ``--cprofile`` also
writes a Python profile of 16 steps of epoch 3 per rank: where the host's time goes.
"""

from __future__ import annotations

import argparse
import cProfile
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cifar_lightning.cli import build_cli  # noqa: E402


def wait_for_gpu(pl_module) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


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
        out.append(
            {
                "size": size,
                "epochs": len(steady),
                "epoch_s": float(np.median([r["train_s"] for r in steady])),
                "host_ms": float(np.median(host)),
                "gpu_ms": float(np.median(gpu)),
            }
        )
    return out


class Timeline(L.Callback):
    """Host and GPU time of every training step; and with ``cprofile`` a Python profile of steps 3-18 of epoch 3."""

    def __init__(self, out: Path, tag: str, cprofile: bool = False):
        self.out, self.tag, self.cprofile = out, tag, cprofile
        self.rows, self.profiler = [], None

    def on_train_epoch_start(self, trainer, pl_module):
        self.cuda = pl_module.device.type == "cuda"
        wait_for_gpu(pl_module)  # the epoch starts with an idle GPU
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
        wait_for_gpu(pl_module)  # every event recorded has been reached
        host = np.diff(self.host) * 1e3
        gpu = np.array([a.elapsed_time(b) for a, b in itertools.pairwise(self.events)]) if self.cuda else host
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "size": self.size,
                "train_s": float(host.sum() / 1e3),
                "host_ms": host.round(3).tolist(),
                "gpu_ms": gpu.round(3).tolist(),
            }
        )

    def on_train_end(self, trainer, pl_module):
        (self.out / f"{self.tag}-r{trainer.global_rank}.json").write_text(json.dumps(self.rows))
        if trainer.is_global_zero:
            for s in size_summary(self.rows):
                print(
                    f"[{self.tag}] {s['size']}px, {s['epochs']} epochs: {s['epoch_s']:.3f} s per epoch, per step "
                    f"host {s['host_ms']:.2f} ms, GPU {s['gpu_ms']:.2f} ms (medians)",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the per-step JSON (and profiles)")
    p.add_argument("--tag", required=True, help="name of this run in the files and the printout")
    p.add_argument("--cprofile", action="store_true", help="profile 16 steps of epoch 3 with cProfile")
    args, cli_args = p.parse_known_args(argv)
    cli_args = [a for a in cli_args if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = build_cli(
        cli_args,
        run=False,
        trainer_defaults={
            "default_root_dir": str(out / args.tag),
            "callbacks": [Timeline(out, args.tag, args.cprofile)],
        },
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


if __name__ == "__main__":
    main()

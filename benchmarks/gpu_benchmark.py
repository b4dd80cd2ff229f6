"""Benchmark: the classic recipe against the fast GPU-resident configs, on one machine, in one invocation.

    python benchmarks/gpu_benchmark.py prepare --data-dir /tmp/cifar10-jpeg --cache-dir /tmp/cache
    python benchmarks/gpu_benchmark.py suite final-7 --data-dir /tmp/cifar10-jpeg --cache-dir /tmp/cache --out runs/bench
    python benchmarks/gpu_benchmark.py report runs/bench/*-s[0-9].json --md benchmarks/results/gpu-final-7.md

``suite`` runs each job of a plan (a config, a seed, extra CLI options) as its own process through the
project's LightningCLI, one job per GPU at a time (two GPUs: two jobs side by side), and DDP jobs on all GPUs
at the end (started by Lightning's launcher, or by torchrun where the job's name says ``torchrun``). Every job times
``Trainer.fit`` and writes one JSON: fit seconds, the seconds from its launch to the end of ``fit``, per-epoch
times, training images/s (training batches only, GPU synchronised), peak GPU memory, the last val_acc and, unless
it is a tuning job, the test accuracy of the best checkpoint. Tuning plans never run the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar_lightning import CIFAR10DataModule, CIFARSystem, sources  # noqa: E402
from cifar_lightning.callbacks import EpochTimer, best_checkpoint  # noqa: E402
from cifar_lightning.cli import CifarCLI  # noqa: E402
from cifar_lightning.experiment import TTA_VARIANTS, validate_tta_variants  # noqa: E402
from cifar_lightning.tracking.results import format_mean_std  # noqa: E402

SEEDS = (0, 1, 2)
# Extra CLI options: validate only after the last of ``n`` epochs; EMA of the weights; progressive crops.
def epochs_val_end(n: int) -> list[str]:
    return ["--trainer.max_epochs", str(n), "--trainer.check_val_every_n_epoch", str(n)]


def ema(decay: float) -> list[str]:
    return ["--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging", "--trainer.callbacks.decay", str(decay)]


def crops(size: int = 24, fraction: float = 0.75) -> list[str]:
    return ["--trainer.callbacks+=cifar_lightning.callbacks.ProgressiveCrop", "--trainer.callbacks.size", str(size),
            "--trainer.callbacks.fraction", str(fraction)]


def recipe_callbacks(fraction: float = 0.75, decay: float = 0.995, size: int = 24) -> list[str]:
    """The fast configs' callback list with other settings (a CLI option reaches only the list's last callback)."""
    listed = [("lightning.pytorch.callbacks.TQDMProgressBar", {"refresh_rate": 20}),
              ("cifar_lightning.ProgressiveCrop", {"size": size, "fraction": fraction}),
              ("cifar_lightning.EMAWeights", {"decay": decay})]
    return ["--trainer.callbacks", json.dumps([{"class_path": c, "init_args": a} for c, a in listed])]


GRAPHS = ["--model.compile", "reduce-overhead"]
DDP_GRAPHS = ["--config", "configs/ddp.yaml", *GRAPHS]  # the two-GPU recipe on top of configs/full.yaml, compiled
DDP2 = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
def global_batch_1024(lr: float = 0.4, per_process: int = 1024) -> list[str]:
    """Batch 1024 in all: the learning rate scaled with it, an EMA over as many epochs (half the steps)."""
    return ["--data.batch_size", str(per_process), "--model.lr", str(lr), "--trainer.callbacks.decay", "0.99"]


B1024 = global_batch_1024()
# The full config on one GPU (3 seeds, two side by side on two GPUs), then DDP through the CLI (3 seeds).
ONE_GPU_THEN_DDP = [
    ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
    ("full-ddp2-compiled", "configs/full.yaml", SEEDS, 2, DDP_GRAPHS, True),
]

# name, config, seeds, GPUs, extra CLI options, run the test set. The plans record what each session ran. The
# configs have changed since: session 3 put the 24-pixel crops and the EMA into full/long.yaml, so the earlier
# plans now run today's configs (their results: results/gpu-session2.md), and tune-c would add a second crop and EMA
# callback to them. "current" is the current benchmark.
PLANS = {
    "smoke": [("fast", "configs/full.yaml", (0,), 1, ["--trainer.max_epochs", "2"], True)],
    "profile": [
        ("classic-profile", "configs/classic.yaml", (0,), 1, ["--trainer.max_epochs", "2", "--trainer.profiler", "simple"], False),
        ("fast-profile", "configs/full.yaml", (0,), 1, ["--trainer.max_epochs", "3", "--trainer.profiler", "simple"], False),
    ],
    # Recipe tuning on the validation split (no test): one seed each, 18 epochs unless said.
    "tune-a": [
        ("t-base", "configs/full.yaml", (0,), 1, [], False),
        ("t-compile", "configs/full.yaml", (0,), 1, ["--model.compile", "true"], False),
    ],
    "tune-b": [
        ("t-long100", "configs/long.yaml", (0,), 1, [], False),
        ("t-lr0.4", "configs/full.yaml", (0,), 1, ["--model.lr", "0.4"], False),
        ("t-b1024", "configs/full.yaml", (0,), 1, ["--data.batch_size", "1024", "--model.lr", "0.4"], False),
    ],
    # Accuracy against epochs for the full recipe (validation only): how many epochs the 90.7 % target needs.
    "epochs": [
        (f"t-e{n}", "configs/full.yaml", (0,), 1, epochs_val_end(n), False)
        for n in (40, 30, 24)
    ],
    # Session 2: the long config for as many epochs as fit 3 minutes at the measured 1.25 s/epoch (validated every
    # 27th epoch, so the last epoch is validated and checkpointed); DDP with the single GPU's per-process batch.
    "long135": [("long135", "configs/long.yaml", SEEDS, 1,
                 ["--trainer.max_epochs", "135", "--trainer.check_val_every_n_epoch", "27"], True)],
    "ddp-b512": [("full-ddp2-b512", "configs/full.yaml", (0,), 2,
                  ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--model.lr", "0.4"], True)],
    "compile-modes": [
        (f"t-compile-{mode}", "configs/full.yaml", (0,), 1, ["--model.compile", mode], False)
        for mode in ("reduce-overhead", "max-autotune-no-cudagraphs")
    ],
    # CUDA graphs through torch.compile(mode="reduce-overhead"): the full recipe, and DDP at the same global batch.
    "compiled": [
        ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", (0,), 2, ["--trainer.devices", "2", "--trainer.strategy", "ddp",
                                                             "--data.batch_size", "256", *GRAPHS], True),
    ],
    # Session 3 (validation only): fewer epochs to the target (EMA of the weights) and cheaper epochs (24-pixel
    # crops for the first 75 % of the epochs), alone and together; the long recipe with both.
    "tune-c": [
        ("t-long100-ema", "configs/long.yaml", (0,), 1, [*epochs_val_end(100), *ema(0.999)], False),
        ("t-long100-crop24-ema", "configs/long.yaml", (0,), 1, [*epochs_val_end(100), *crops(24, 0.9), *ema(0.999)], False),
        ("t-e40", "configs/full.yaml", (0,), 1, epochs_val_end(40), False),
        ("t-e40-crop24-ema", "configs/full.yaml", (0,), 1, [*epochs_val_end(40), *crops(), *ema(0.995)], False),
        ("t-e30-crop24-graphs", "configs/full.yaml", (0,), 1, [*epochs_val_end(30), *crops(), *GRAPHS], False),
        ("t-e30-crop24-ema-graphs", "configs/full.yaml", (0,), 1, [*epochs_val_end(30), *crops(), *ema(0.995), *GRAPHS], False),
        ("t-e30", "configs/full.yaml", (0,), 1, epochs_val_end(30), False),
        ("t-e30-ema", "configs/full.yaml", (0,), 1, [*epochs_val_end(30), *ema(0.995)], False),
        ("t-e30-crop24", "configs/full.yaml", (0,), 1, [*epochs_val_end(30), *crops()], False),
        ("t-e30-crop24-ema", "configs/full.yaml", (0,), 1, [*epochs_val_end(30), *crops(), *ema(0.995)], False),
    ],
    # Session 3: the configs with 24-pixel crops and EMA (full: 40 epochs, long: 100), each with 3 seeds beside
    # the classic recipe; full also with CUDA graphs, and for 30 epochs with CUDA graphs. Longest first.
    "v3": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("long", "configs/long.yaml", SEEDS, 1, [], True),
        ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
        ("full-e30-compiled", "configs/full.yaml", SEEDS, 1,
         ["--trainer.max_epochs", "30", "--trainer.check_val_every_n_epoch", "15", *GRAPHS], True),
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
    ],
    # The same after the EMA update was made sync-free (call 2 above measured Lightning's slow update): the configs
    # as they are, beside the classic recipe.
    "v3b": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("long", "configs/long.yaml", SEEDS, 1, [], True),
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
    ],
    # Session 4, one job at a time on a one-GPU machine (no neighbours): the full config as it is, eager, then
    # with CUDA graphs (the first job compiles from a cold cache, the later ones find the compiled code on disk).
    "v4-eager": [("full", "configs/full.yaml", SEEDS, 1, [], True)],
    "v4-graphs": [("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True)],
    # Session 4 (validation only): batch 1024 halves the kernel launches per image, which eager mode pays for at
    # 24 pixels (benchmarks/results/gpu-profile-4.md); lr scaled with the batch, an EMA over as many epochs.
    "tune-d": [
        (f"t-b1024-e{n}-lr{lr}", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(n), *global_batch_1024(lr)], False)
        for n, lr in ((40, 0.4), (32, 0.4), (40, 0.3))
    ],
    # Session 4, after the per-step sync was found (the loss in the progress bar) and removed, one seed each with
    # test: eager and CUDA graphs (static shapes, training steps only), at batch 512 and 1024; the last job
    # repeats the one before it with the compiled code already on disk (a warm cache).
    "v4-ab": [
        ("full", "configs/full.yaml", (0,), 1, [], True),
        ("full-b1024", "configs/full.yaml", (0,), 1, B1024, True),
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
        ("full-b1024-compiled", "configs/full.yaml", (0, 1), 1, [*B1024, *GRAPHS], True),
    ],
    # Session 4, after the host's per-step work was cut (the training accuracy logged once per epoch, the EMA's
    # tensor lists built once): the full config, eager and with CUDA graphs (seed 0 compiles from a cold cache).
    "v4-full": [
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
        ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
    ],
    # Session 4: the long config with CUDA graphs (3 seeds), then the classic recipe, on the same card.
    "v4-long": [
        ("long-compiled", "configs/long.yaml", SEEDS, 1, GRAPHS, True),
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
    ],
    # Session 4, two GPUs of one host: DDP with CUDA graphs at the single GPU's global batch (256 per GPU, the same
    # recipe) and at 512 per GPU (global 1024, batch-1024 settings), beside the single-GPU job on that host.
    "v4-ddp": [
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", (0,), 2, [*DDP2, "--data.batch_size", "256", *GRAPHS], True),
        ("full-ddp2-b512-compiled", "configs/full.yaml", (0,), 2, [*DDP2, *global_batch_1024(per_process=512), *GRAPHS], True),
    ],
    # Session 5 (validation only, CUDA graphs): fewer and cheaper epochs (more of them on 24-pixel crops, batch 1024)
    # against the full config; every fit also scored with each test-time augmentation (TTA_VARIANTS).
    "tune-5": [
        ("t5-e40-f75", "configs/full.yaml", (0,), 1, [*epochs_val_end(40), *GRAPHS], False),
        ("t5-e36-f85", "configs/full.yaml", (0, 1), 1, [*epochs_val_end(36), *recipe_callbacks(0.85), *GRAPHS], False),
        ("t5-e32-f85", "configs/full.yaml", (0,), 1, [*epochs_val_end(32), *recipe_callbacks(0.85), *GRAPHS], False),
        ("t5-b1024-e40-f75", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(40), *global_batch_1024(), *recipe_callbacks(0.75, 0.99), *GRAPHS], False),
        ("t5-b1024-e36-f85", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(36), *global_batch_1024(), *recipe_callbacks(0.85, 0.99), *GRAPHS], False),
        ("t5-e28-f85", "configs/full.yaml", (0,), 1, [*epochs_val_end(28), *recipe_callbacks(0.85), *GRAPHS], False),
        ("t5-e32-f75", "configs/full.yaml", (0,), 1, [*epochs_val_end(32), *GRAPHS], False),
    ],
    # Session 5, two GPUs of one host: DDP through the CLI's LeanDDPStrategy (cifar_lightning/ddp.py) with CUDA graphs
    # at 512 per GPU (the batch-1024 settings), beside the single GPU at batch 512 (the full config) and 1024.
    "ddp-5": [
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
        ("full-b1024-compiled", "configs/full.yaml", (0,), 1, [*B1024, *GRAPHS], True),
        ("full-ddp2-b512-compiled", "configs/full.yaml", (0, 1), 2, [*DDP2, *global_batch_1024(per_process=512), *GRAPHS], True),
    ],
    # Session 5, two GPUs of one host: the full config (test-time shifts added) on one GPU, then DDP through the CLI
    # (LeanDDPStrategy, now also checking Lightning's SIGTERM flag every 50th step) at 512 per GPU.
    "final-5": [
        ("full-compiled", "configs/full.yaml", (0, 1), 1, GRAPHS, True),
        ("full-ddp2-b512-compiled", "configs/full.yaml", (0, 1), 2, [*DDP2, *global_batch_1024(per_process=512), *GRAPHS], True),
    ],
    # Session 5, the last minutes of device time (one GPU): the third seed of final-5's single-GPU row.
    "final-5-seed2": [("full-compiled", "configs/full.yaml", (2,), 1, GRAPHS, True)],
    # Session 6 (one GPU): the full config with the loss compiled into the network's graph and a fused SGD step
    # (fewer kernels launched from Python per step), 3 seeds; tuning on the validation split for a fit under 20 s:
    # batch 1024 for more epochs or a higher lr, and more 24-pixel epochs at batch 512.
    "tune-6": [
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
        ("t6-b1024-e44", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(44), *global_batch_1024(), *recipe_callbacks(0.75, 0.99), *GRAPHS], False),
        ("t6-b1024-e48", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(48), *global_batch_1024(), *recipe_callbacks(0.75, 0.99), *GRAPHS], False),
        ("t6-b1024-e40-lr0.6", "configs/full.yaml", (0,), 1,
         [*epochs_val_end(40), *global_batch_1024(lr=0.6), *recipe_callbacks(0.75, 0.99), *GRAPHS], False),
        ("t6-e40-f80", "configs/full.yaml", (0,), 1, [*epochs_val_end(40), *recipe_callbacks(0.8), *GRAPHS], False),
        ("full-compiled", "configs/full.yaml", (1, 2), 1, GRAPHS, True),
    ],
    # Session 6, call 2 (one GPU): the two batch-1024 candidates of tune-6 under 20 s, 3 seeds each. (The
    # last_checkpoint option changed nothing: validated only at the end, last.ckpt is written then only.)
    "final-6": [
        (f"t6-b1024-e{n}-lr0.6", "configs/full.yaml", (0, 1, 2), 1,
         [*epochs_val_end(n), *global_batch_1024(lr=0.6), *recipe_callbacks(0.75, 0.99),
          "--last_checkpoint.every_n_epochs", str(n // 4), *GRAPHS], True)
        for n in (44, 40)
    ] + [("full-compiled", "configs/full.yaml", (1, 2), 1, GRAPHS, True)],  # tune-6's last row, cut by the call's limit
    # Session 6, call 3 (one GPU): configs/full.yaml as it was then (batch 1024, 44 epochs, validated once; 40 epochs
    # since, so rerunning this plan runs those), 3 seeds, with the fit's phases timed; once with Lightning's CSV logger
    # instead of TensorBoard's (the device image has tensorboard). Renamed full44-* in results/gpu-full-6.md.
    "full-6": [
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
        ("full-compiled-csvlogger", "configs/full.yaml", (0,), 1,
         ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "/tmp/csvlogs", *GRAPHS], True),
        ("full-compiled", "configs/full.yaml", (1, 2), 1, GRAPHS, True),
    ],
    # Session 6, call 4 (two GPUs of one host): configs/full.yaml as committed (batch 1024, 40 epochs), one job per
    # GPU side by side, then DDP through the CLI: 512 per GPU (the same global batch and recipe) and the config's
    # own 1024 per GPU (global 2048, same lr).
    "ddp-6": [
        ("full-compiled", "configs/full.yaml", (0, 1, 2), 1, GRAPHS, True),
        ("full-ddp2-b512-compiled", "configs/full.yaml", (0, 1, 2), 2, [*DDP2, "--data.batch_size", "512", *GRAPHS], True),
        ("full-ddp2-compiled", "configs/full.yaml", (0,), 2, [*DDP2, *GRAPHS], True),
    ],
    # Session 6, call 5 (one GPU, the last minutes): the long config with this session's code, one seed.
    "long-6": [("long-compiled", "configs/long.yaml", (0,), 1, GRAPHS, True)],
    # Prepared in session 6, never run (session 7 ran ddp-7-tune instead, with an EMA over as many images): DDP at the
    # config's 1024 per GPU trains 1.80x one GPU's images/s but lost 2.9 points with the same lr (gpu-ddp-6.md).
    "ddp-2048-tune": [
        (f"t7-ddp2-lr{lr}-e{n}", "configs/full.yaml", (0,), 2,
         [*DDP2, *epochs_val_end(n), "--model.lr", str(lr), *GRAPHS], False)
        for lr, n in ((1.2, 40), (0.9, 40), (1.2, 48))
    ],
    # Session 7, call 1 (two GPUs of one host; validation only): ddp-2048-tune with an EMA over as many images as
    # one GPU's (decay 0.98 over half the steps), the lr scaled with the batch (1.2) or not quite (0.9), and more
    # epochs (each DDP epoch at global batch 2048 takes ~0.2 s).
    "ddp-7-tune": [
        (f"t7-ddp2-lr{lr}-e{n}", "configs/full.yaml", (0,), 2,
         [*DDP2, *epochs_val_end(n), "--model.lr", str(lr), "--trainer.callbacks.decay", "0.98", *GRAPHS], False)
        for lr, n in ((1.2, 40), (1.2, 48), (0.9, 48), (1.2, 56), (1.6, 48))
    ],
    # Session 7, call 2 (two GPUs of one host): the benchmark in one invocation: the classic recipe, the long config
    # and the full config on one GPU (two jobs side by side, one per GPU), then DDP through the CLI with
    # configs/ddp.yaml (global batch 2048, lr 1.2, 64 epochs: ddp-7-tune's trend, more epochs than its best two).
    "final-7": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("long-compiled", "configs/long.yaml", SEEDS, 1, GRAPHS, True),
        ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", SEEDS, 2, DDP_GRAPHS, True),
    ],
    # Session 7, call 3 (two GPUs of one host): final-7's DDP seeds cut by the call's limit, beside a single-GPU
    # baseline on the same machine (two seeds side by side).
    "final-7-ddp": [
        ("full-compiled", "configs/full.yaml", (0, 1), 1, GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", (1, 2), 2, DDP_GRAPHS, True),
    ],
    # Session 8 (two GPUs of one host): the single-GPU baseline (two seeds side by side, then the third) and DDP, after
    # the host work per step was cut (train_loss handed to Lightning only on logged steps; gc frozen while training).
    "final-8": ONE_GPU_THEN_DDP,
    # Session 9 (two GPUs of one host): final-8 again, with LeanDDPStrategy averaging the gradients in one flat
    # all-reduce after backward instead of PyTorch's DDP wrapper (results/gpu-ddp-9.md).
    "final-9": ONE_GPU_THEN_DDP,
    # Session 9, call 3 (the same machine, still held): final-9's DDP seed 2, which call 2's time limit cut.
    "final-9-seed2": [("full-ddp2-compiled", "configs/full.yaml", (2,), 2, DDP_GRAPHS, True)],
    # Session 10 (two GPUs of one host): final-9 again on the flat all-reduce with fused copies (views with the
    # gradients' strides, a7d75fe), which final-9 had not run.
    "final-10": ONE_GPU_THEN_DDP,
    # Session 10, call 3: the classic recipe (the lesson's "before") and the long config on today's code, beside
    # each other on two GPUs (final-7's rows, which the README's main table had read).
    "final-10-long": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("long-compiled", "configs/long.yaml", SEEDS, 1, GRAPHS, True),
    ],
    # Session 10, call 4: how long a DDP job takes from its launch to a trained model with Lightning's launcher (the
    # second process starts when fit begins) and with torchrun (both start at once), beside one GPU's.
    "launchers-10": [
        ("full-compiled", "configs/full.yaml", (0, 1), 1, GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", (0,), 2, DDP_GRAPHS, True),
        ("full-ddp2-torchrun-compiled", "configs/full.yaml", (0,), 2, DDP_GRAPHS, True),
        ("full-ddp2-compiled", "configs/full.yaml", (1,), 2, DDP_GRAPHS, True),
        ("full-ddp2-torchrun-compiled", "configs/full.yaml", (1,), 2, DDP_GRAPHS, True),
    ],
    # Prepared in session 7, not run (too little device time was left to start a machine): final-7's classic and full
    # rows again with no neighbour on the host (final-7 ran two jobs side by side; the classic recipe's CPU data
    # loaders share the host's cores).
    "alone-7": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("full-compiled", "configs/full.yaml", (0,), 1, GRAPHS, True),
    ],
    # Session 4's benchmark (results/gpu-full.md: v4-full then v4-long, one machine; the current one is final-7): the
    # classic recipe, the full config eager and with CUDA graphs, the long config with CUDA graphs.
    "current": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
        ("full-compiled", "configs/full.yaml", SEEDS, 1, GRAPHS, True),
        ("long-compiled", "configs/long.yaml", SEEDS, 1, GRAPHS, True),
    ],
    # What fits a short lease: the classic recipe once beside the fast config's three seeds (one per GPU).
    "mini": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
    ],
    # Longest jobs first, so that the two GPUs finish together; then the DDP job on both GPUs.
    "final": [
        ("classic", "configs/classic.yaml", (0,), 1, [], True),
        ("long", "configs/long.yaml", SEEDS, 1, [], True),
        ("full", "configs/full.yaml", SEEDS, 1, [], True),
        # global batch 512 as on one GPU (Lightning's batch_size is per process), so the recipe is unchanged
        ("full-ddp2", "configs/full.yaml", (0,), 2,
         ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "256"], True),
    ],
}


class Recorder(L.Callback):
    """Times every training epoch twice: training batches only (for images/s) and with validation.

    The CLI's EpochTimer logs the whole epoch; this also needs the end of the last training batch, apart.
    """

    def __init__(self):
        self.epochs: list[dict] = []
        self.val_acc: list[float] = []
        self.marks: dict[str, float] = {}  # fit's phases: when each hook first (or last) ran
        self.validations: list[float] = []  # seconds of each of the fit's validations

    def on_fit_start(self, trainer, pl_module):
        self.marks["fit_start"] = self._now(pl_module)

    def on_validation_start(self, trainer, pl_module):
        self.val_start = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module):  # after ModelCheckpoint's save of the best weights
        if trainer.state.fn == TrainerFn.FITTING:
            self.validations.append(self._now(pl_module) - self.val_start)

    @staticmethod
    def _now(pl_module) -> float:
        EpochTimer._sync(pl_module)  # the clock waits for the GPU, as EpochTimer's does
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self.start, self.images, self.validated = self._now(pl_module), 0, False
        self.marks.setdefault("first_epoch_start", self.start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])
        if batch_idx == trainer.num_training_batches - 1:
            self.train_end = self._now(pl_module)
            self.size = batch[0].shape[-1]  # the input size (ProgressiveCrop changes it)

    def on_validation_epoch_end(self, trainer, pl_module):
        # the fit's own validations only (not a trainer.validate afterwards)
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and "val_acc" in trainer.callback_metrics:
            self.val_acc.append(float(trainer.callback_metrics["val_acc"]))
            self.validated = True

    def on_train_epoch_end(self, trainer, pl_module):
        end = self._now(pl_module)
        images = self.images * trainer.world_size  # every rank trains on its own shard
        train_s = self.train_end - self.start
        self.epochs.append({"train_s": train_s, "epoch_s": end - self.start, "images": images,
                            "images_per_s": images / train_s, "validated": self.validated, "size": self.size})
        self.marks["last_epoch_end"] = end


def timed_calls(owner, name: str) -> list[float]:
    """Replace ``owner.name`` by a wrapper that records the seconds of each call (the list returned)."""
    seconds, call = [], getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(owner, name, timed)
    return seconds


def fit_phases(rec: Recorder, fit_start: float, fit_end: float, checkpoint_s: list[float], compile_setup_s: list[float]) -> dict:
    """Where a fit's seconds went outside its training steps: before the first epoch (Lightning's setup, moving the
    model; ``compile_setup_s``: ``torch.compile`` itself, which imports the compiler), after the last one
    (teardown), validations, checkpoint saves (every ModelCheckpoint save goes through ``trainer.save_checkpoint``)."""
    m = rec.marks
    return {"before_fit_start_hook_s": m.get("fit_start", fit_start) - fit_start,
            "before_first_epoch_s": m.get("first_epoch_start", fit_start) - fit_start,
            "after_last_epoch_s": fit_end - m.get("last_epoch_end", fit_end),
            "validation_s": rec.validations, "checkpoint_s": checkpoint_s, "compile_setup_s": compile_setup_s}


def compile_s(result: dict) -> float | None:
    """A fit's one-off compile time: ``torch.compile``'s own call (the compiler's imports) and the first epoch at each
    input size beyond a steady one (graph builds, cuDNN autotuning). None for a fit that never called torch.compile
    (timed since session 6, call 4: older JSONs have no ``compile_setup_s`` and count the overhead alone)."""
    phases = result.get("fit_phases")
    if phases is not None and phases.get("compile_setup_s") == []:
        return None
    return result["first_epoch_overhead_s"] + sum((phases or {}).get("compile_setup_s", []))


def by_size(epochs: list[dict]) -> dict[int, list[dict]]:
    """The epochs grouped by input size (older logs without sizes: one group)."""
    groups: dict[int, list[dict]] = {}
    for e in epochs:
        groups.setdefault(e.get("size", 0), []).append(e)
    return groups


def first_epochs_overhead(epochs: list[dict]) -> float:
    """Extra time of the first epoch at each input size over a later one at that size (torch.compile builds a graph
    per size, cuDNN autotunes per size): the run's one-off cost."""
    return sum(group[0]["train_s"] - statistics.median(e["train_s"] for e in group[1:])
               for group in by_size(epochs).values() if len(group) > 1)


def steady_images_per_s(epochs: list[dict]) -> float:
    """Training images per second over the whole run, leaving out the first epoch at each input size."""
    steady = [e for group in by_size(epochs).values() for e in (group[1:] or group)]
    return sum(e["images"] for e in steady) / sum(e["train_s"] for e in steady)


def first_validation_overhead(epochs: list[dict]) -> float | None:
    """Extra time of the first validation over a later one (torch.compile's eval-mode graphs, cuDNN autotuning of the
    eval shapes); None with fewer than two validations."""
    val_s = [e["epoch_s"] - e["train_s"] for e in epochs if e.get("validated")]
    return val_s[0] - statistics.median(val_s[1:]) if len(val_s) > 1 else None


def versions() -> dict:
    import torchvision

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": L.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    if torch.cuda.is_available():
        info["card"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def run_job(args, extra: list[str]) -> None:
    """One fit (+ test) through the CLI; rank 0 writes the JSON. DDP re-runs this same command per rank."""
    rec = Recorder()
    run_dir = Path(args.run_dir) / f"{args.name}-s{args.seed}"
    cli_args = ["--config", str(ROOT / args.config), "--seed_everything", str(args.seed),
                "--data.source", "folder", "--data.data_dir", args.data_dir, "--data.cache_dir", args.cache_dir,
                *extra]
    cli = CifarCLI(CIFARSystem, CIFAR10DataModule, seed_everything_default=42, save_config_kwargs={"overwrite": True},
                   trainer_defaults={"default_root_dir": str(run_dir), "callbacks": [rec]}, args=cli_args, run=False)
    trainer = cli.trainer
    # Load the decoded data set before the clock starts (fit would do it in DataModule.setup): timed apart.
    t_setup = time.perf_counter()
    cli.datamodule.setup("fit")
    setup_s = time.perf_counter() - t_setup
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    checkpoint_s, compile_setup_s = timed_calls(trainer, "save_checkpoint"), timed_calls(torch, "compile")
    start = time.perf_counter()
    trainer.fit(cli.model, datamodule=cli.datamodule)
    end = time.perf_counter()
    fit_s = end - start
    # from the suite's launch to a trained model: every process's start, imports and data loading included
    launch_to_fit_end_s = time.time() - args.launched_at if args.launched_at else None
    phases = fit_phases(rec, start, end, list(checkpoint_s), list(compile_setup_s))
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    ckpt = best_checkpoint(trainer)
    val_acc_tta = validate_tta_variants(trainer, cli.model, cli.datamodule, ckpt)
    test_acc = None
    if args.test:
        test_acc = float(trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)[0]["test_acc"])
    if not trainer.is_global_zero:
        return
    result = {
        "name": args.name, "config": args.config, "seed": args.seed, "extra": extra, "world_size": trainer.world_size,
        "epochs": len(rec.epochs), "fit_s": fit_s, "launch_to_fit_end_s": launch_to_fit_end_s, "data_setup_s": setup_s, "test_acc": test_acc, "val_acc": rec.val_acc[-1] if rec.val_acc else None,
        "val_acc_curve": rec.val_acc, "val_acc_tta": val_acc_tta, "epoch_log": rec.epochs,
        "images_per_s": steady_images_per_s(rec.epochs),
        # extra time of the first epoch at each input size (cuDNN autotuning, torch.compile) over a steady epoch
        "first_epoch_overhead_s": first_epochs_overhead(rec.epochs),
        "first_validation_overhead_s": first_validation_overhead(rec.epochs),
        "fit_phases": phases, "logger": type(trainer.logger).__name__ if trainer.logger else None,
        "peak_gpu_mem_gib": peak, "versions": versions(), "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"RESULT {args.name} seed={args.seed} fit={fit_s:.1f}s test={test_acc} val={result['val_acc']} "
          f"img/s={result['images_per_s']:.0f} peak={peak}")


def launcher(name: str, gpus: int) -> list[str]:
    """The command that starts a job's processes. A multi-GPU job whose name says ``torchrun`` starts all of them at
    once with ``torch.distributed.run`` (their imports and data loading overlap, before ``fit``); any other starts one
    process, and under DDP Lightning's launcher starts the others when ``fit`` begins."""
    if "torchrun" in name and gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"]
    return [sys.executable]


RUNNING_JOBS: set[subprocess.Popen] = set()


def run_in_group(cmd: list[str], env: dict, log, timeout: float) -> int | str:
    """Run one job in a process group of its own and wait for it; at ``timeout`` kill the whole group. A DDP job's
    second process is the first one's child: killing only the first (``subprocess.run``'s timeout) left it training on
    both GPUs beside whatever ran next (session 9, results/gpu-ddp-9.md)."""
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    RUNNING_JOBS.add(proc)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return "timeout"
    finally:
        RUNNING_JOBS.discard(proc)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    proc.wait()


def stop_running_jobs(signum, frame) -> None:
    """SIGTERM/SIGINT handler of ``suite`` (e.g. ``timeout`` ending it): take the running jobs' groups down too."""
    for proc in list(RUNNING_JOBS):
        kill_group(proc)
    sys.exit(128 + signum)


def run_suite(args) -> None:
    """Run a plan: single-GPU jobs spread over the GPUs, then the multi-GPU jobs."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_running_jobs)
    jobs = [(name, cfg, seed, gpus, extra, test) for name, cfg, seeds, gpus, extra, test in PLANS[args.plan]
            for seed in seeds]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_ids = visible.split(",") if visible else [str(g) for g in range(max(torch.cuda.device_count(), 1))]
    n_gpus = len(gpu_ids)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def launch(job, devices: str):
        name, cfg, seed, gpus, extra, test = job
        cmd = [*launcher(name, gpus), str(Path(__file__).resolve()), "job", "--name", name, "--config", cfg,
               "--seed", str(seed), "--out", str(out / f"{name}-s{seed}.json"), "--data-dir", args.data_dir,
               "--cache-dir", args.cache_dir, "--run-dir", args.run_dir, "--test" if test else "--no-test",
               "--launched-at", f"{time.time():.3f}", "--", *extra, *args.extra]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=devices)
        log = out / f"{name}-s{seed}.log"
        t = time.perf_counter()
        with open(log, "w") as f:
            rc = run_in_group(cmd, env, f, args.job_timeout)
        print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed} on GPU {devices}: rc={rc} {time.perf_counter() - t:.0f}s",
              flush=True)
        if rc != 0:
            print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:]), flush=True)
        with lock:  # rewrite the table after every job: a run cut short still leaves its finished jobs' numbers
            files = sorted(str(p) for p in out.glob("*.json") if re.search(r"-s\d+\.json$", p.name))  # jobs only
            if files and args.md:
                report(argparse.Namespace(files=files, md=args.md, quiet=True))

    lock = threading.Lock()

    todo: queue.Queue = queue.Queue()
    for job in jobs:
        if job[3] == 1:
            todo.put(job)

    def worker(gpu: int):
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            launch(job, gpu_ids[gpu])

    threads = [threading.Thread(target=worker, args=(g,)) for g in range(n_gpus)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in jobs:
        if job[3] > 1:
            if job[3] > n_gpus:
                print(f"skip {job[0]}: needs {job[3]} GPUs, {n_gpus} here")
                continue
            launch(job, ",".join(gpu_ids[: job[3]]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(args) -> None:
    """Aggregate job JSONs into a table (Markdown) and a summary (JSON)."""
    results = [json.loads(Path(p).read_text()) for p in args.files]
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["name"], []).append(r)
    rows = []
    for name, rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        row = {"name": name, "config": rs[0]["config"], "extra": " ".join(rs[0]["extra"]), "gpus": rs[0]["world_size"],
               "seeds": [r["seed"] for r in rs], "epochs": rs[0]["epochs"]}
        for key in ("test_acc", "val_acc", "fit_s", "launch_to_fit_end_s", "data_setup_s", "images_per_s",
                    "first_epoch_overhead_s", "first_validation_overhead_s", "peak_gpu_mem_gib"):
            vals = [r[key] for r in rs if r.get(key) is not None]
            row[key] = mean_std(vals) if vals else None
        if all(r.get("fit_phases") for r in rs):  # timed since session 6: compile time apart from the fit's own
            compiles = [compile_s(r) for r in rs]
            compiled = None not in compiles  # eager runs: no compile time, the whole fit
            row["compile_s"] = mean_std(compiles) if compiled else None
            fits = [r["fit_s"] for r in rs]
            row["fit_less_compile_s"] = mean_std([f - c for f, c in zip(fits, compiles, strict=True)] if compiled else fits)
        rows.append(row)
    info = dict(results[0]["versions"]) if results else {}
    if results:  # a single-GPU job sees one card (CUDA_VISIBLE_DEVICES): the machine had as many as any job saw
        info["gpus"] = max(r["versions"].get("gpus") or 1 for r in results)

    def fmt(v, scale=1.0, digits=1):  # v: [mean, std] over seeds, or None
        return format_mean_std(*(v or (None, None)), scale, digits)

    lines = [f"Card: {info.get('card')} x{info.get('gpus')}; torch {info.get('torch')}, torchvision {info.get('torchvision')}, "
             f"lightning {info.get('lightning')}, CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')}, Python {info.get('python')}.",
             "Data: the JPEG copy of CIFAR-10 (45k train / 5k val split of the training set, official 10k test set).", "",
             "| run | config | GPUs | seeds | epochs | test acc % | val acc % | fit s | data load s | train images/s "
             "| first-epoch overhead s (each input size) | first-validation overhead s | peak GPU GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        config = r["config"] + (f" `{r['extra']}`" if r["extra"] else "")
        lines.append(f"| {r['name']} | {config} | {r['gpus']} | {','.join(map(str, r['seeds']))} | {r['epochs']} | "
                     f"{fmt(r['test_acc'], 100, 2)} | {fmt(r['val_acc'], 100, 2)} | {fmt(r['fit_s'])} | {fmt(r.get('data_setup_s'))} | "
                     f"{fmt(r['images_per_s'], digits=0)} | {fmt(r['first_epoch_overhead_s'])} | "
                     f"{fmt(r.get('first_validation_overhead_s'))} | {fmt(r['peak_gpu_mem_gib'], digits=2)} |")
    tta_rows = [(name, rs) for name, rs in groups.items() if all(r.get("val_acc_tta") for r in rs)]
    if tta_rows:  # the same fits scored with each test-time augmentation (validation split, best checkpoint)
        lines += ["", "Validation accuracy % of each run's best checkpoint under each test-time augmentation:", "",
                  "| run | seeds | " + " | ".join(TTA_VARIANTS) + " |", "|---|---|" + "---|" * len(TTA_VARIANTS)]
        for name, rs in tta_rows:
            cells = [fmt(mean_std([r["val_acc_tta"][v] for r in rs]), 100, 2) for v in TTA_VARIANTS]
            lines.append(f"| {name} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + " |")
    phase_rows = [(row, groups[row["name"]]) for row in rows if "compile_s" in row]  # the runs with timed phases
    if phase_rows:
        lines += ["", "Where each fit's seconds went besides its training steps (mean ± std over seeds). Compile = "
                  "`torch.compile`'s own call (it imports the compiler) + the first-epoch overhead above:", "",
                  "| run | fit s | compile s | fit s less compile | before first epoch s (compile's call included) "
                  "| validations s | checkpoint saves s (count) | after last epoch s | launch to fit end s (every process's "
                  "start) | logger |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row, rs in phase_rows:
            ph = [r["fit_phases"] for r in rs]
            cells = [row["fit_s"], row["compile_s"], row["fit_less_compile_s"],
                     mean_std([p["before_first_epoch_s"] for p in ph]), mean_std([sum(p["validation_s"]) for p in ph]),
                     mean_std([sum(p["checkpoint_s"]) for p in ph])]
            lines.append(f"| {row['name']} | " + " | ".join(fmt(c, digits=2) for c in cells)
                         + f" ({len(ph[0]['checkpoint_s'])}) | {fmt(mean_std([p['after_last_epoch_s'] for p in ph]), digits=2)} "
                         f"| {fmt(row['launch_to_fit_end_s'], digits=2)} | {rs[0].get('logger')} |")
    for multi in (r for r in rows if r["gpus"] > 1 and r["images_per_s"]):
        # its single-GPU twin: the same name without the DDP part (full-ddp2[-torchrun]-compiled -> full-compiled)
        twin = re.sub(r"-ddp\d+(-b\d+)?(-torchrun)?", "", multi["name"])
        for single in (r for r in rows if r["gpus"] == 1 and r["name"] == twin and r["images_per_s"]):
            lines.append(f"\n{multi['name']} vs {single['name']}: {multi['images_per_s'][0] / single['images_per_s'][0]:.2f}x "
                         f"the training images/s on {multi['gpus']} GPUs.")
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text("\n".join(lines) + "\n")
    Path(args.md).with_suffix(".json").write_text(json.dumps({"versions": info, "rows": rows, "runs": results}, indent=1))
    if not getattr(args, "quiet", False):
        print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "suite", "job"):
        s = sub.add_parser(name)
        s.add_argument("--data-dir", default="data/cifar10-jpeg")
        s.add_argument("--cache-dir", default="data/cache")
        s.add_argument("--run-dir", default="runs/benchmark")
        if name == "suite":
            s.add_argument("plan", choices=sorted(PLANS))
            s.add_argument("--out", default="runs/benchmark/results", help="one JSON and one log per job")
            s.add_argument("--md", default=None, help="table rewritten after every job (with a .json beside it)")
            s.add_argument("--job-timeout", type=float, default=600)
            s.add_argument("extra", nargs="*", help="CLI options added to every job (after --)")
        if name == "job":
            for a in ("--name", "--config", "--out"):
                s.add_argument(a, required=True)
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--launched-at", type=float, default=None, help="the suite's time.time() at launch")
            s.add_argument("--test", action=argparse.BooleanOptionalAction, default=True)
            s.add_argument("extra", nargs="*")
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    r.add_argument("--md", default="benchmarks/results/gpu-full.md")
    args = p.parse_args()
    if args.cmd == "prepare":
        start = time.perf_counter()
        train_x, _, test_x, _ = sources.load_cached("folder", args.data_dir, args.cache_dir)
        print(f"decoded {len(train_x)} + {len(test_x)} images in {time.perf_counter() - start:.1f}s; {versions()}")
    elif args.cmd == "job":
        run_job(args, args.extra)
    elif args.cmd == "suite":
        run_suite(args)
    else:
        report(args)


if __name__ == "__main__":
    main()

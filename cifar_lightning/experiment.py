"""Running the lessons' experiments and reading what they measured: one Trainer per run, its metrics as a table.

    from cifar_lightning.experiment import fit_experiment, read_metrics
    trainer, metrics = fit_experiment(lesson.run_dir("07-training-tricks") / "clip-norm",
                                      lambda: CIFARSystem(build_resnet(width=16)), datamodule,
                                      max_epochs=3, gradient_clip_val=1.0)
    read_metrics(metrics, by="epoch")        # one row per epoch (also from a Trainer or a log folder)

Also here: ``quiet_logs()`` (lean notebook output), ``device_name()`` (what timings ran on), ``profile_table``
(a SimpleProfiler's slowest actions) and ``profile_breakdown`` (its training time in parts that add up). Figures
of these tables are in :mod:`cifar_lightning.plots`.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import CSVLogger

from cifar_lightning import lesson
from cifar_lightning.errors import check


def quiet_logs() -> None:
    """Keep lesson outputs lean: hide Lightning's info lines (devices, seeds, tips) and warnings that smoke-size
    runs always trigger (few loader workers, fewer batches than the logging interval) or that are known noise.

    Warnings about your setup (e.g. SWA swapping a scheduler) still show.
    """
    for name in ("lightning.pytorch", "lightning.fabric"):  # their child loggers inherit the level
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    # in a notebook, sys.argv holds the kernel's arguments; build_cli(args) ignores them anyway
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter.*")


def device_name() -> str:
    """What a lesson's timings were measured on: the GPU's name, or ``"CPU"``."""
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def lesson_trainer(log_dir: str | Path, fresh: bool = True, **trainer_kwargs) -> L.Trainer:
    """A Trainer that logs to ``log_dir/metrics.csv`` (and checkpoints to ``log_dir/checkpoints``).

    Defaults: ``accelerator="auto"``, one device (a notebook cannot run DDP, see lesson 08), step metrics
    logged at every step (short runs have few), no model summary, a progress bar only outside smoke mode,
    and :func:`quiet_logs`. ``fresh`` deletes what an earlier run left in
    ``log_dir``, so that a re-run notebook plots only its own run. ``trainer_kwargs`` override anything.
    """
    quiet_logs()
    log_dir = Path(log_dir)
    if fresh and log_dir.exists():
        shutil.rmtree(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    options = dict(
        accelerator="auto",
        devices=1,
        logger=CSVLogger(log_dir, name="", version=""),
        default_root_dir=log_dir,
        log_every_n_steps=1,
        enable_model_summary=False,
        enable_progress_bar=not lesson.smoke(),
    )
    options.update(trainer_kwargs)
    return L.Trainer(**options)


def fit_experiment(
    log_dir: str | Path,
    system: L.LightningModule | Callable[[], L.LightningModule],
    datamodule: L.LightningDataModule,
    seed: int = 42,
    ckpt_path: str | None = None,
    fresh: bool = True,
    **trainer_kwargs,
) -> tuple[L.Trainer, pd.DataFrame]:
    """Seed, build the system (when given a factory), fit, and return the trainer and its logged metrics.

    Pass a factory (``lambda: CIFARSystem(...)``) so the weights are initialised after seeding: runs that
    differ in one trick then start from the same weights and see the same batches.
    """
    L.seed_everything(seed, verbose=False)
    module = system() if callable(system) and not isinstance(system, L.LightningModule) else system
    trainer = lesson_trainer(log_dir, fresh=fresh, **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, read_metrics(trainer)


def read_metrics(source: L.Trainer | str | Path | pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """The metrics a run logged with its CSVLogger, from a trainer, its log folder, a ``metrics.csv``, or a table
    already read by this function (e.g. the one :func:`fit_experiment` returns).

    ``by=None``: the table as logged, one row per logging call; step metrics (``train_loss``, ``lr-SGD``) and
    epoch metrics (``val_acc``) share it with NaN where a row lacks them.
    ``by="epoch"`` or ``by="step"``: one row per epoch (or step), indexed by it, holding the last value each
    column logged there; Lightning's separate train and validation rows are merged.
    """
    check(by in (None, "epoch", "step"), f"by must be None, 'epoch' or 'step', got {by!r}")
    if isinstance(source, pd.DataFrame):
        rows = source
    else:
        if isinstance(source, L.Trainer):
            check(source.logger is not None, "this trainer has no logger: build it with lesson_trainer()")
            source = source.logger.log_dir
        path = Path(source)
        csv = path / "metrics.csv" if path.is_dir() else path
        check(
            csv.is_file(),
            f"no metrics.csv at {path}: pass a Trainer, its CSVLogger folder or its metrics.csv "
            "(has the run logged anything?)",
        )
        rows = pd.read_csv(csv)
    if by is None:
        return rows
    check(by in rows.columns, f"these metrics have no {by!r} column")
    merged = rows.dropna(subset=[by]).groupby(by).last()  # last non-missing value of each column
    merged.index = merged.index.astype(int)
    return merged.drop(columns=[c for c in ("epoch", "step") if c in merged.columns])


def profile_table(profiler, top: int | None = 8) -> pd.DataFrame:
    """Total and mean seconds of the ``top`` slowest actions a ``SimpleProfiler`` recorded (all with ``None``).

    Actions nest (``run_training_epoch`` holds ``run_training_batch``, which holds ``training_step``): the totals
    overlap and do not add up. :func:`profile_breakdown` splits the training time into parts that do.
    """
    rows = [(name, float(np.sum(d)), float(np.mean(d)), len(d)) for name, d in profiler.recorded_durations.items()]
    table = pd.DataFrame(rows, columns=["action", "total_s", "mean_s", "calls"]).sort_values("total_s", ascending=False)
    return (table if top is None else table.head(top)).reset_index(drop=True)


# The parts of a training epoch that profile_breakdown reports, and the SimpleProfiler actions each is read from.
PROFILE_PARTS = {
    "waiting for data": "train_dataloader_next",
    "forward (training_step)": "[Strategy]*.training_step",
    "backward": "[Strategy]*.backward",
    "rest of the batch (optimizer update, hooks)": "run_training_batch - training_step - backward",
    "rest of the epoch (validation, logging)": "run_training_epoch - data - run_training_batch",
}


def profile_breakdown(profiler) -> pd.DataFrame:
    """The training epochs' time (``run_training_epoch``, all epochs) of a ``SimpleProfiler``, split into the
    parts of :data:`PROFILE_PARTS`, which do not overlap and add up to it.

    Columns: ``seconds``, ``share`` of the epochs' time, ``measured_as`` (the profiler actions). Each part sums
    every call of its actions, however short. Not in the wait for data: the first batch of each epoch, fetched
    when the epoch's loader starts (with its workers); from the second epoch on it counts in the rest of the epoch.
    """
    durations = {name: float(np.sum(d)) for name, d in profiler.recorded_durations.items()}

    def total(suffix: str) -> float:  # the strategy's hook, whatever the strategy's class (DDPStrategy, ...)
        return sum(s for name, s in durations.items() if name.startswith("[Strategy]") and name.endswith(suffix))

    check(
        "run_training_epoch" in durations,
        "this profiler timed no training epoch: pass it to a Trainer (profiler=...) and fit",
    )
    epochs, batches = durations["run_training_epoch"], durations.get("run_training_batch", 0.0)
    data = durations.get("[_TrainingEpochLoop].train_dataloader_next", 0.0)
    forward, backward = total(".training_step"), total(".backward")
    seconds = [data, forward, backward, batches - forward - backward, epochs - data - batches]
    table = pd.DataFrame({"seconds": seconds, "measured_as": list(PROFILE_PARTS.values())}, index=list(PROFILE_PARTS))
    table.insert(1, "share", table["seconds"] / epochs)
    table.index.name = "part"
    return table


# Test-time augmentation settings to compare on the validation split (evaluation only: training does not change):
# name -> (tta_flip, tta_translate).
TTA_VARIANTS = {"none": (False, 0), "flip": (True, 0), "flip+shift1": (True, 1), "flip+shift2": (True, 2)}


def validate_tta_variants(trainer: L.Trainer, model, datamodule, ckpt_path: str | None) -> dict[str, float]:
    """Validation accuracy of ``ckpt_path`` (a fit's best checkpoint) under each of ``TTA_VARIANTS``; the model's
    own TTA setting is put back afterwards."""
    hp, scores = model.hparams, {}
    own = hp.tta_flip, hp.get("tta_translate", 0)
    for name, (hp.tta_flip, hp.tta_translate) in TTA_VARIANTS.items():
        scores[name] = float(
            trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]["val_acc"]
        )
    hp.tta_flip, hp.tta_translate = own
    return scores

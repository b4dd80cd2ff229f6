"""Small training experiments for the lessons: one Trainer per run, its metrics back as a table.

    from cifar_lightning.experiment import fit_experiment
    trainer, metrics = fit_experiment(lesson.run_dir("07-training-tricks") / "clip-norm",
                                      lambda: CIFARSystem(build_resnet(width=16)), datamodule,
                                      max_epochs=3, gradient_clip_val=1.0)
    metrics.dropna(subset=["val_acc"])  # one row per epoch
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pandas as pd
from lightning.pytorch.loggers import CSVLogger

from cifar_lightning import lesson
from cifar_lightning.errors import check


def quiet_logs() -> None:
    """Keep lesson outputs lean: hide Lightning's per-Trainer info lines and a known deprecation warning.

    Warnings about your setup (e.g. SWA swapping a scheduler) still show.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # in a notebook, sys.argv holds the kernel's arguments; CifarCLI(args=...) ignores them anyway
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter.*")


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


def read_metrics(source: L.Trainer | str | Path) -> pd.DataFrame:
    """The CSVLogger table of a trainer, a log folder or a ``metrics.csv``: one row per logging call.

    Step metrics (``train_loss``, ``lr-SGD``) and epoch metrics (``val_acc``) share the table with NaN
    where a row lacks them; ``metrics.dropna(subset=["val_acc"])`` keeps the epoch rows.
    """
    if isinstance(source, L.Trainer):
        check(source.logger is not None, "this trainer has no logger: build it with lesson_trainer()")
        source = source.logger.log_dir
    path = Path(source)
    path = path / "metrics.csv" if path.is_dir() else path
    check(path.is_file(), f"no metrics file at {path}: has the run logged anything (CSVLogger)?")
    return pd.read_csv(path)

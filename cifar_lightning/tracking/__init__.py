"""Experiment tracking and results: W&B logging that never prompts, a run's pictures, reading runs back.

    from cifar_lightning.tracking import RunReport, WorkshopWandbLogger
    trainer = L.Trainer(logger=WorkshopWandbLogger(group="baseline"), callbacks=[RunReport()])

* :mod:`~cifar_lightning.tracking.wandb_logger`: ``WorkshopWandbLogger`` (online with a key, offline without one,
  a local JSON run record either way) and ``lesson_logger``;
* :mod:`~cifar_lightning.tracking.run_report`: ``RunReport``, the settings and pictures a run logs;
* :mod:`~cifar_lightning.tracking.results`: the runs read back as tables and figures;
* :mod:`~cifar_lightning.tracking.comparison`: the comparison runs,
  ``python -m cifar_lightning.tracking.comparison --smoke``.

In a config: ``class_path: cifar_lightning.tracking.WorkshopWandbLogger`` (``configs/wandb.yaml``).
"""

from cifar_lightning.tracking.run_report import RunReport
from cifar_lightning.tracking.wandb_logger import (
    DEFAULT_PROJECT,
    WorkshopWandbLogger,
    has_api_key,
    lesson_logger,
    resolve_mode,
)

__all__ = ["DEFAULT_PROJECT", "RunReport", "WorkshopWandbLogger", "has_api_key", "lesson_logger", "resolve_mode"]

"""The command line: ``python -m cifar_lightning fit --config configs/quick.yaml``.

LightningCLI turns the constructor arguments of CIFARSystem, CIFAR10DataModule and the Trainer into
options (``--model.lr 0.1``, ``--data.batch_size 512``, ``--trainer.max_epochs 5``) and YAML configs.
``fit`` ends by testing the best checkpoint and printing its test accuracy; ``fit ... --ckpt_path last`` resumes
the newest run (``resume.py``). Every file goes under ``--trainer.default_root_dir`` (default ``runs/``).
``--trainer.precision auto`` (``precision: auto`` in a config) trains in the precision that suits the machine
(``precision.py``).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Literal

from jsonargparse import lazy_instance
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI

from cifar_lightning import global_batch, resume
from cifar_lightning.callbacks import LAST_CHECKPOINT, EpochTimer, best_checkpoint
from cifar_lightning.config_errors import OneLineParser, check_config_files
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.model import CifarResNet
from cifar_lightning.precision import pick_precision
from cifar_lightning.run_guard import INTERRUPTED_STATUS, WRITE_ERRNOS, Interrupted, guard, write_message
from cifar_lightning.system import CIFARSystem

# The type of the Trainer's own ``precision`` argument (None included); CifarTrainer's adds "auto" to it.
_TRAINER_PRECISION = inspect.signature(Trainer.__init__).parameters["precision"].annotation


class CifarTrainer(Trainer):
    """Lightning's Trainer, also taking ``precision="auto"``: the precision :func:`pick_precision` chooses for the
    machine and the Trainer's ``accelerator`` (bf16-mixed on a GPU with native bfloat16, 16-mixed on an older GPU,
    32-true on a CPU).

    The CLI's parser reads the Trainer's options from this signature, so ``auto`` is a valid value there and any
    other value is checked against the Trainer's own list.

    Args:
        precision: ``"auto"`` for the machine's choice, or any precision Lightning's Trainer takes
            (``"bf16-mixed"``, ``"16-mixed"``, ``"32-true"``, ...); None is Lightning's default, 32-true.
    """

    def __init__(self, *, precision: _TRAINER_PRECISION | Literal["auto"] = None, **kwargs):
        if precision == "auto":
            precision = pick_precision(kwargs.get("accelerator", "auto"))
        super().__init__(precision=precision, **kwargs)


class CifarCLI(LightningCLI):
    """LightningCLI with the course's default callbacks and a test of the best checkpoint after ``fit``.

    ``--trainer.enable_progress_bar false`` wins over a progress bar that a config lists under ``trainer.callbacks``
    (configs/full.yaml's TQDMProgressBar, which refreshes every 20 steps because reading the bar's numbers waits for
    the GPU): the bar is dropped, where Lightning alone would refuse the pair.

    ``--ckpt_path`` is checked before anything runs (``resume.py``): ``last``/``best`` name the newest run's files, and
    a missing, damaged or mismatched checkpoint ends in one line. A logger configured without a ``save_dir`` (W&B in
    ``configs/wandb.yaml``) writes under ``--trainer.default_root_dir`` like the checkpoints and the config.
    """

    def add_arguments_to_parser(self, parser):
        parser.set_defaults({"model.backbone": lazy_instance(CifarResNet, depth=18)})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch}-{val_acc:.4f}",
            }
        )
        # last.ckpt after every epoch (with a monitor, Lightning 2.6's save_last only follows improvements)
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({f"last_checkpoint.{key}": value for key, value in LAST_CHECKPOINT.items()})
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(EpochTimer, "epoch_timer")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit")

    def parse_arguments(self, parser, args):
        super().parse_arguments(parser, args)
        # LightningCLI reads a checkpoint file's hyperparameters right after parsing: check the file before that.
        ckpt_path = self.config.get(str(self.config.get("subcommand")), {}).get("ckpt_path")
        if ckpt_path and str(ckpt_path) not in ("last", "best"):  # those need the trainer: run_checked resolves them
            path = resume.resolve(ckpt_path, None, self.config.subcommand)
            if Path(path).is_file():
                resume.load(path)

    def before_instantiate_classes(self):
        trainer = self.config.get(str(self.subcommand), self.config).trainer
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:  # a logger's files go under the run directory unless it names its own place
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
                init_args.save_dir = trainer.default_root_dir

    def instantiate_trainer(self, **kwargs):
        trainer = self.config_init.get(str(self.subcommand), self.config_init).get("trainer", {})
        callbacks = trainer.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if trainer.get("enable_progress_bar") is False and any(isinstance(cb, ProgressBar) for cb in callbacks):
            kwargs.setdefault("callbacks", [cb for cb in callbacks if not isinstance(cb, ProgressBar)])
        return super().instantiate_trainer(**kwargs)

    def before_fit(self):
        if self.trainer.is_global_zero and self.trainer.world_size > 1:  # what one optimizer step sees under DDP
            print(global_batch.describe(self.trainer, self.datamodule.batch_size))

    # LightningCLI runs a subcommand through the CLI's method of that name when there is one.
    def fit(self, model, **kwargs):
        self.run_checked("fit", model, **kwargs)

    def validate(self, model, **kwargs):
        return self.run_checked("validate", model, **kwargs)

    def test(self, model, **kwargs):
        return self.run_checked("test", model, **kwargs)

    def predict(self, model, **kwargs):
        return self.run_checked("predict", model, **kwargs)

    def run_checked(self, command: str, model, ckpt_path=None, **kwargs):
        """``trainer.<command>`` from a checked ``ckpt_path``, under :func:`~cifar_lightning.run_guard.guard`."""
        ckpt_path = resume.resolve(ckpt_path, self.trainer, command)
        if ckpt_path and Path(ckpt_path).is_file():
            checkpoint = resume.load(ckpt_path)
            resume.check_fits(ckpt_path, checkpoint, model)
            if command == "fit":
                resume.continue_run(self.trainer, checkpoint)
                self.trainer.callbacks.append(resume.ScheduleLength())
        with guard(self.trainer):
            return getattr(self.trainer, command)(model, ckpt_path=ckpt_path, **kwargs)

    def after_fit(self):
        if not self.config.fit.test_after_fit:
            return
        ckpt = best_checkpoint(self.trainer)  # None (fast_dev_run saves none): test the weights in memory
        with guard(self.trainer):
            results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
        if self.trainer.is_global_zero and results:
            print(f"test accuracy: {results[0]['test_acc']:.4f} ({ckpt or 'final weights'})")


def build_cli(args: list[str] | None = None, run: bool = True, **kwargs) -> CifarCLI:
    """The course's CLI over CIFARSystem and CIFAR10DataModule, as every entry point builds it.

    ``run=False`` parses ``args`` and instantiates the model, data and trainer without running a subcommand
    (``cli.trainer.fit(cli.model, datamodule=cli.datamodule)`` is then yours to call); ``kwargs`` go to LightningCLI.
    """
    check_config_files(sys.argv[1:] if args is None else args if isinstance(args, list) else [])
    options = dict(
        seed_everything_default=42,
        save_config_kwargs={"overwrite": True},
        trainer_class=CifarTrainer,
        trainer_defaults={"default_root_dir": "runs"},
        parser_class=OneLineParser,
    )
    return CifarCLI(CIFARSystem, CIFAR10DataModule, args=args, run=run, **{**options, **kwargs})


def main(args: list[str] | None = None) -> None:
    """Run the CLI; bad input ends with one ``error:`` line and exit status 2, Ctrl-C with one ``interrupted:`` line
    (where the last checkpoint is) and exit status 130."""
    try:
        build_cli(args)
    except CifarLightningError as err:
        fail(str(err))
    except Interrupted as err:
        fail(str(err), prefix="interrupted", status=INTERRUPTED_STATUS)
    except KeyboardInterrupt:  # before a Trainer method took charge of Ctrl-C
        fail("stopped before training began: nothing to resume", prefix="interrupted", status=INTERRUPTED_STATUS)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        fail(write_message(err))
    except MisconfigurationException as err:  # Lightning's word on the trainer options, e.g. a missing GPU
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if any(word in message.lower() for word in ("accelerator", "backend", "gpu", "cuda", "mps", "device")):
            message += f" (this machine offers: {available_accelerators()}; use --trainer.accelerator auto)"
        fail(message)
    except ValueError as err:
        ours = CifarLightningError.last_message
        if ours and ours in str(err):  # our error, wrapped by jsonargparse while instantiating e.g. the backbone
            fail(ours)
        raise


def available_accelerators() -> str:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(f"cuda x{torch.cuda.device_count()}")
    if torch.backends.mps.is_available():
        found.append("mps")
    return ", ".join(found)


def fail(message: str, prefix: str = "error", status: int = 2) -> None:
    print(f"{prefix}: {message}", file=sys.stderr)
    raise SystemExit(status) from None

"""Which file ``--ckpt_path`` means, and whether it fits the model: a run resumes, or the command stops with one line.

    python -m cifar_lightning fit --config configs/quick.yaml --ckpt_path last    # resume the newest run

``last`` is the ``last.ckpt`` written most recently by a run under the run directory
(``--trainer.default_root_dir``, default ``runs/``; with the default logger its runs are
``lightning_logs/version_N``); ``best`` is the best epoch of that run. Lightning alone looks only in the new run's
own, empty folder, and then starts from scratch.

A fit resumed from a checkpoint keeps writing its checkpoints into the folder the checkpoint's run wrote them to, so
the best epoch so far stays known (and ``last`` finds the run again); its logs go to a new version folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from cifar_lightning.errors import CifarLightningError

LAST = "last.ckpt"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def checkpoint_folders(trainer) -> list[Path]:
    """The folders where runs of this trainer's layout keep their checkpoints, as ModelCheckpoint picks them.

    A ModelCheckpoint's own ``dirpath``; else ``<logger save_dir>/<logger name>/<version>/checkpoints`` for every
    version there; else (no logger) ``<default_root_dir>/checkpoints``.
    """
    folders = {
        Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath
    }
    if trainer.loggers:
        logger = trainer.loggers[0]
        base = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name or "")
        folders |= {base / "checkpoints", *base.glob("*/checkpoints")}
    else:
        folders.add(Path(trainer.default_root_dir) / "checkpoints")
    return sorted(folders)


def newest_last_checkpoint(trainer) -> Path | None:
    """The ``last.ckpt`` written most recently among :func:`checkpoint_folders`, or None."""
    found = [folder / LAST for folder in checkpoint_folders(trainer) if (folder / LAST).is_file()]
    return max(found, key=lambda path: path.stat().st_mtime_ns, default=None)


def where(trainer) -> str:
    """Where :func:`newest_last_checkpoint` looks, for messages."""
    if trainer.loggers:
        logger = trainer.loggers[0]
        return str(Path(logger.save_dir or trainer.default_root_dir) / str(logger.name or "") / "*" / "checkpoints")
    return str(Path(trainer.default_root_dir) / "checkpoints")


def resolve(ckpt_path: str | None, trainer, command: str) -> str | None:
    """The checkpoint file ``ckpt_path`` names for ``command`` (fit, validate, test or predict), checked to exist.

    ``last`` and ``best`` name the newest run's; ``hpc`` and registry names are left to Lightning.
    """
    if ckpt_path is None:
        return None
    ckpt_path = str(ckpt_path)
    if ckpt_path in ("last", "best"):
        last = newest_last_checkpoint(trainer)
        if last is None:
            fresh = "leave out --ckpt_path to start a new run" if command == "fit" else "pass a checkpoint file"
            raise CifarLightningError(
                f"nothing to {'resume' if command == 'fit' else command}: no {LAST} under "
                f"{where(trainer)} (--trainer.default_root_dir picks the run directory); {fresh}"
            )
        return str(last) if ckpt_path == "last" else best_of(last)
    if ckpt_path == "hpc" or ckpt_path.startswith("registry:"):
        return ckpt_path
    path = Path(ckpt_path)
    if path.is_dir():
        raise CifarLightningError(f"checkpoint {path} is a folder: pass a .ckpt file in it, or --ckpt_path last")
    if not path.is_file():
        raise CifarLightningError(
            f"checkpoint {path} does not exist: pass an existing .ckpt file, or --ckpt_path last for the newest run's"
        )
    return ckpt_path


def best_of(last: Path) -> str:
    """The best checkpoint that the run of ``last`` (its ``last.ckpt``) recorded."""
    states = load(last).get("callbacks", {})
    best = next(
        (
            s.get("best_model_path")
            for s in states.values()
            if isinstance(s, dict) and s.get("monitor") and s.get("best_model_path")
        ),
        None,
    )
    if not best or not Path(best).is_file():
        raise CifarLightningError(
            f"the run of {last} has no best checkpoint on disk{f' ({best} is gone)' if best else ''}"
            ": pass --ckpt_path last or a checkpoint file"
        )
    return best


def load(path: str | Path) -> dict:
    """A checkpoint's contents (tensors memory-mapped, so checking a large file costs little), or one line saying why
    the file is not a readable checkpoint."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CifarLightningError(f"cannot read checkpoint {path}: {err.strerror}") from None
    if not head:
        raise CifarLightningError(f"checkpoint {path} is empty: pass another checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=head == ZIP_MAGIC)
    except Exception as err:
        if head != ZIP_MAGIC:
            raise CifarLightningError(
                f"{path} is not a checkpoint (not a file torch.save wrote): pass a .ckpt file that a fit wrote"
            ) from None
        reason = (str(err).strip().split(". ") or [""])[0].splitlines()[0][:100] or type(err).__name__
        raise CifarLightningError(
            f"checkpoint {path} is truncated or damaged ({reason}): pass another checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CifarLightningError(
            f"checkpoint {path} is not a Lightning checkpoint (it holds no state_dict): pass one that a fit wrote"
        )
    return checkpoint


def check_fits(path: str, checkpoint: dict, model) -> None:
    """Raise one line when ``checkpoint`` was trained with another backbone, naming the options that rebuild it."""
    saved = checkpoint.get("backbone_config")
    own = getattr(getattr(model, "backbone", None), "config", None)
    if isinstance(saved, dict) and isinstance(own, dict) and saved != own:
        differ = [key for key in {**saved, **own} if saved.get(key) != own.get(key)]
        options = " ".join(f"--model.backbone.{key} {option_value(saved.get(key))}" for key in differ)
        raise CifarLightningError(
            f"checkpoint {path} holds a {describe(saved, differ)} but this command builds a "
            f"{describe(own, differ)}: add {options}"
        )
    expected = model.state_dict()
    state = checkpoint["state_dict"]
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    reshaped = sorted(
        k
        for k in expected.keys() & state.keys()
        if getattr(state[k], "shape", None) != getattr(expected[k], "shape", None)
    )
    if missing or unexpected or reshaped:
        example = (reshaped or missing or unexpected)[0]
        raise CifarLightningError(
            f"checkpoint {path} does not fit this model ({len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(reshaped)} reshaped tensors, e.g. {example}): pass the model options it was trained with"
        )


def describe(config: dict, keys: list[str]) -> str:
    """``ResNet-34`` plus the other differing settings, e.g. ``ResNet-18 (width 8)``."""
    name = f"ResNet-{config.get('depth')}"
    others = [f"{key} {config.get(key)}" for key in keys if key != "depth"]
    return f"{name} ({', '.join(others)})" if others else name


def option_value(value) -> str:
    """A value as the command line takes it: ``true``, ``null``, ``"[1, 1, 1, 1]"``."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f'"{list(value)}"'
    return str(value)


def continue_run(trainer, checkpoint: dict) -> None:
    """Let the ModelCheckpoints without a ``dirpath`` of their own write where the checkpoint's run wrote them.

    ModelCheckpoint restores its record of the best epochs only when its folder is the one in the checkpoint; a new
    version folder would start that record afresh (and ``test`` after fit could then pick a worse epoch).
    """
    states = checkpoint.get("callbacks", {})
    for callback in trainer.checkpoint_callbacks:
        folder = states.get(callback.state_key, {}).get("dirpath")
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None and folder and Path(folder).is_dir():
            callback.dirpath = folder  # as saved (ModelCheckpoint compares the strings)
    # ModelCheckpoint warns about a non-empty folder: here that is the run being continued.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


class ScheduleLength(Callback):
    """Stops a resumed fit whose length differs from the one its learning-rate schedule was made for.

    OneCycle and cosine fix their number of steps when a run starts, and the checkpoint restores it: a resumed fit with
    more epochs would fail at the step after the schedule's end, one with fewer would stop before the rate has come
    down.
    """

    def on_train_start(self, trainer, pl_module):
        steps = trainer.estimated_stepping_batches
        for config in trainer.lr_scheduler_configs:
            if config.interval != "step":
                continue  # a schedule per epoch (plateau) follows any number of epochs
            planned = getattr(config.scheduler, "total_steps", None) or getattr(config.scheduler, "T_max", None)
            if planned and planned != steps:
                epochs = planned * trainer.max_epochs / steps
                raise CifarLightningError(
                    f"the checkpoint's learning-rate schedule ({type(config.scheduler).__name__}) spans {planned} "
                    "steps, "
                    f"this fit {steps}: resume with the --trainer.max_epochs the run started with"
                    + (f" ({epochs:.0f})" if epochs == int(epochs) else "")
                )

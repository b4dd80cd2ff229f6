"""How a command that does not finish ends: one line, and no empty folders.

    with guard(trainer):
        trainer.fit(model, datamodule=datamodule)

* Ctrl-C: Lightning stops the loop, the loader workers and the loggers, then exits; :class:`Interrupted` replaces
  that exit with a message saying where the last checkpoint is (the command line prints it, exit status 130). A Ctrl-C
  that CPython drops is raised again at the next batch (:class:`CtrlC`).
* A run directory that cannot be written (read-only, full, a file in the way): one ``error:`` line naming the path.
* A run that fails before it logged anything leaves no empty ``version_N`` folder (nor the folders made for it).
"""

from __future__ import annotations

import errno
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from cifar_lightning.errors import CifarLightningError

# The OSErrors that mean "this place cannot be written": the user picks another place.
WRITE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}
NOTHING_LOGGED = {"hparams.yaml", "config.yaml"}  # written before the first step: alone they record no result
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


class Interrupted(Exception):
    """Ctrl-C stopped the command; the message says where the last checkpoint is."""


@contextmanager
def guard(trainer):
    """Run a Trainer method so that each way it can end early ends as the module docstring says."""
    made = new_folders(trainer)
    try:
        with CtrlC(trainer):
            yield
    except BaseException as err:
        remove_if_nothing_logged(made)
        if isinstance(err, SystemExit) and trainer.interrupted:  # Lightning's own exit after Ctrl-C
            raise Interrupted(interrupted_message(trainer)) from None
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            raise CifarLightningError(write_message(err)) from None
        raise


class CtrlC(Callback):
    """While a Trainer method runs: Ctrl-C raises KeyboardInterrupt as usual, and is remembered; if it was lost, this
    callback raises it again at the start of the next batch.

    CPython loses a KeyboardInterrupt that arrives while the process forks (a loader worker starting): it is raised in
    an at-fork hook, where exceptions are only reported ("Exception ignored in ... _releaseLock"), and the run would go
    on as if Ctrl-C had not been pressed. That report is not printed either.
    """

    def __init__(self, trainer):
        self.trainer, self.pressed = trainer, False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers belong to the main thread
        self.previous = signal.signal(signal.SIGINT, self.handle)
        self.unraisable, sys.unraisablehook = sys.unraisablehook, self.drop_lost_interrupt
        self.trainer.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        if hasattr(self, "previous"):
            signal.signal(signal.SIGINT, self.previous)
            sys.unraisablehook = self.unraisable
            self.trainer.callbacks.remove(self)

    def handle(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def drop_lost_interrupt(self, unraisable):
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.unraisable(unraisable)

    def raise_if_pressed(self, *args, **kwargs):
        if self.pressed:
            raise KeyboardInterrupt

    on_train_batch_start = on_validation_batch_start = on_test_batch_start = on_predict_batch_start = raise_if_pressed
    on_train_epoch_start = on_validation_epoch_start = raise_if_pressed


def new_folders(trainer) -> list[Path]:
    """The folders this run's logger will make that do not exist yet (the version folder first), on rank 0 only."""
    logger = trainer.logger
    if not trainer.is_global_zero or not isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return []  # other loggers write into folders shared by their runs
    folders = [Path(logger.log_dir), Path(logger.root_dir), Path(trainer.default_root_dir)]
    return [folder for folder in dict.fromkeys(folders) if not folder.exists()]


def remove_if_nothing_logged(folders: list[Path]) -> None:
    """Delete ``folders`` (made by a run that failed) when they hold no file but :data:`NOTHING_LOGGED` ones."""
    for folder in folders:
        if folder.is_dir() and all(p.name in NOTHING_LOGGED for p in folder.rglob("*") if not p.is_dir()):
            shutil.rmtree(folder, ignore_errors=True)


def interrupted_message(trainer) -> str:
    """Where the newest checkpoint of the run is, and how to resume from it."""
    paths = {
        getattr(cb, name, "") for cb in trainer.checkpoint_callbacks for name in ("last_model_path", "best_model_path")
    }
    saved = [Path(p) for p in paths if p and Path(p).is_file()]
    if not saved:
        return "stopped before the first checkpoint was saved: nothing to resume"
    newest = max(saved, key=lambda p: p.stat().st_mtime_ns)
    again = "--ckpt_path last" if newest.name == "last.ckpt" else f"--ckpt_path {newest}"
    return f"the last checkpoint is {newest}; to resume, run the same command with {again}"


def write_message(err: OSError) -> str:
    """One line for a place that cannot be written, naming it."""
    place = err.filename or "the run directory"
    return (
        f"cannot write {place} ({err.strerror or type(err).__name__}): pass --trainer.default_root_dir with a "
        "folder you can write to"
    )

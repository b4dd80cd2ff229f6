"""Helpers the test files share (fixtures live in conftest.py)."""

import lightning as L


def cpu_trainer(root, **kwargs) -> L.Trainer:
    """A quiet one-process CPU Trainer writing under ``root``: no logger, progress bar or model summary unless
    ``kwargs`` say otherwise."""
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    return L.Trainer(**{**options, **kwargs})


class SaveRankWeights(L.Callback):
    """Saves each process's strategy, world size and parameters to ``<default_root_dir>/rank<N>.pt`` when fit ends
    (the DDP tests compare the processes)."""

    def on_fit_end(self, trainer, pl_module):
        import torch

        strategy = type(trainer.strategy)
        torch.save(
            {
                "strategy": f"{strategy.__module__}.{strategy.__qualname__}",
                "world_size": trainer.world_size,
                "parameters": {name: p.detach().cpu() for name, p in pl_module.named_parameters()},
            },
            f"{trainer.default_root_dir}/rank{trainer.global_rank}.pt",
        )


class StallAt(L.Callback):
    """Stops the loop before training batch ``batch`` of epoch ``epoch``: touches ``marker``, then sleeps, so that a
    test can signal the process in the middle of that epoch (the end of the epoch before has been checkpointed)."""

    def __init__(self, epoch: int, batch: int, marker: str, seconds: float = 300.0):
        self.epoch, self.batch, self.marker, self.seconds = epoch, batch, marker, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            import time
            from pathlib import Path

            Path(self.marker).touch()
            time.sleep(self.seconds)


class SwallowCtrlC(L.Callback):
    """Presses Ctrl-C (SIGINT to its own process) at training batch ``batch`` and swallows the KeyboardInterrupt, as
    CPython does with one that arrives while the process forks a loader worker."""

    def __init__(self, batch: int = 1):
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch:
            import os
            import signal
            import time

            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the interrupt arrives here
            except KeyboardInterrupt:
                pass

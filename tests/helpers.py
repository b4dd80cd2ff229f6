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


def nested_profile():
    """A SimpleProfiler's durations as a fit nests them: the epoch holds the batches and the waits for data, a batch
    holds the optimizer step, which holds training_step and backward; plus more hooks than a top-8 cut keeps, each
    longer than the (short) wait for data."""
    from lightning.pytorch.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    profiler.recorded_durations.update(
        {
            "run_training_epoch": [10.0],
            "run_training_batch": [3.0, 3.0],
            "[LightningModule]CIFARSystem.optimizer_step": [2.9, 2.9],
            "[Strategy]DDPStrategy.training_step": [1.0, 1.0],
            "[Strategy]DDPStrategy.backward": [1.5, 1.5],
            "[_TrainingEpochLoop].train_dataloader_next": [0.005, 0.005],
            **{f"[Callback]hook{i}": [0.1] for i in range(10)},
        }
    )
    return profiler

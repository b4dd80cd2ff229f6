"""Helpers the test files share (fixtures live in conftest.py)."""

import lightning as L


def cpu_trainer(root, **kwargs) -> L.Trainer:
    """A quiet one-process CPU Trainer writing under ``root``: no logger, progress bar or model summary unless
    ``kwargs`` say otherwise."""
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=root)
    return L.Trainer(**{**options, **kwargs})


class SaveRankWeights(L.Callback):
    """Saves each process's strategy, world size and parameters to ``<default_root_dir>/rank<N>.pt`` when fit ends
    (the DDP tests compare the processes)."""

    def on_fit_end(self, trainer, pl_module):
        import torch

        strategy = type(trainer.strategy)
        torch.save({"strategy": f"{strategy.__module__}.{strategy.__qualname__}", "world_size": trainer.world_size,
                    "parameters": {name: p.detach().cpu() for name, p in pl_module.named_parameters()}},
                   f"{trainer.default_root_dir}/rank{trainer.global_rank}.pt")

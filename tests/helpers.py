"""Helpers the test files share (fixtures live in conftest.py)."""

import lightning as L


def cpu_trainer(root, **kwargs) -> L.Trainer:
    """A quiet one-process CPU Trainer writing under ``root``: no logger, progress bar or model summary unless
    ``kwargs`` say otherwise."""
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=root)
    return L.Trainer(**{**options, **kwargs})

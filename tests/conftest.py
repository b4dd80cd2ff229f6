"""Shared fixtures: tiny data sets the tests make themselves (no download, no network)."""

import os
import pickle

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "agg")

from cifar_lightning.sources import CLASSES  # noqa: E402
from tests.helpers import cpu_trainer  # noqa: E402


def write_image_folder(root, per_class=(6, 2), suffix=".png", classes=CLASSES, seed=0):
    """Write ``root/{train,test}/<class>/i.png`` with random 32x32 images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class, strict=False):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}{suffix}")
    return root


def write_pickle_batches(root, per_batch=20, seed=0):
    """Write the official ``cifar-10-batches-py`` layout with random images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, per_batch)),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


@pytest.fixture
def one_thread():
    """Tiny models run faster on one CPU thread (no contention); the count is restored for the tests after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cifar10_offline(monkeypatch):
    """torchvision's CIFAR10 download fails as it does without a network."""
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def pickle_dir(tmp_path):
    return write_pickle_batches(tmp_path / "pickle")


@pytest.fixture
def logged_rows():
    """A metrics table as CSVLogger writes it: step rows with train_loss, epoch rows with val_acc, NaN elsewhere."""
    import pandas as pd

    return pd.DataFrame(
        {
            "epoch": [0, 0, 0, 1, 1, 1],
            "step": [0, 1, 1, 2, 3, 3],
            "train_loss": [2.3, 2.0, np.nan, 1.8, 1.5, np.nan],
            "val_acc": [np.nan, np.nan, 0.4, np.nan, np.nan, 0.6],
        }
    )


@pytest.fixture
def csv_run(tmp_path):
    """``csv_run(name, epochs)`` fits a model that logs known values with a CSVLogger; returns its log folder.

    It logs ``train_loss`` = the global step at every step (4 steps per epoch) and ``val_acc`` = epoch / 10.
    """
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger

    class Logs(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            self.log("train_loss", float(self.global_step))
            return (self.w * batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val_acc", self.current_epoch / 10)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=1)

        def val_dataloader(self):
            return self.train_dataloader()

    def run(name, epochs=3):
        logger = CSVLogger(save_dir=tmp_path, name=name)
        trainer = cpu_trainer(
            tmp_path, max_epochs=epochs, logger=logger, log_every_n_steps=1, enable_checkpointing=False
        )
        trainer.fit(Logs())
        return logger.log_dir

    return run

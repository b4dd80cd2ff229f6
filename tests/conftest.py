"""Shared fixtures: tiny data sets the tests make themselves (no download, no network)."""

import os
import pickle

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "agg")

from cifar_lightning.sources import CLASSES  # noqa: E402


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
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, per_batch))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def pickle_dir(tmp_path):
    return write_pickle_batches(tmp_path / "pickle")

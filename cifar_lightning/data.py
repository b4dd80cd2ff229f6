"""CIFAR10DataModule: CIFAR-10 from a download, a local copy, an image folder or synthetic data.

    from cifar_lightning import CIFAR10DataModule
    dm = CIFAR10DataModule(source="synthetic", batch_size=256)

``prepare_data`` only downloads; ``setup`` loads the uint8 arrays (decoded once, cached), builds a seeded
train/val split of the training images and keeps the official test set apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cifar_lightning import sources
from cifar_lightning.augment import build_transform
from cifar_lightning.errors import check, check_choice
from cifar_lightning.fast.batch_augment import build_batch_transform
from cifar_lightning.fast.device_loader import DeviceLoader


class ArrayDataset(Dataset):
    """Images held as one uint8 ``[N, 3, 32, 32]`` tensor; ``transform`` runs per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC uint8 numpy -> contiguous NCHW uint8 tensor, plus int64 labels."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y).long()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into disjoint train and val index sets."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 for Lightning.

    Args:
        data_dir: where the data lives (``download``: where to put it; ``pickle``: a folder holding
            ``cifar-10-batches-py``; ``folder``: a tree ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``).
            Defaults to ``$PATH_DATASETS`` or ``./data``.
        source: ``download`` | ``pickle`` | ``folder`` | ``synthetic``.
        batch_size: images per batch (the batch-size finder scales this attribute).
        val_fraction: share of the 50k training images held out for validation (default 5k).
        augment: training augmentation preset (see ``cifar_lightning.augment.PRESETS``).
        normalize: ``cifar10`` | ``imagenet`` | ``none``.
        resize: upsample to this size, e.g. 224 for an ImageNet-stem pretrained network.
        train_transform / eval_transform: your own transforms, replacing the preset ones.
        subset: use only this many training images (quick runs); validation and test stay whole.
        num_workers: loader processes; ``None`` picks one per core up to 8.
        seed: seeds the train/val split (and the synthetic data).
        synthetic_size: ``[n_train, n_test]`` for ``source=synthetic``.
        cache_dir: where decoded arrays are cached (default ``<data_dir of $PATH_DATASETS>/cache``).
        on_device: keep each split as uint8 on the training device (the GPU) and augment whole batches there
            (``fast/batch_augment.py``) instead of per-sample transforms in CPU workers; falls back to the CPU when
            the trainer runs there. Presets ``none|flip|flip_crop|flip_crop_rotate`` only.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        source: str = "download",
        batch_size: int = 256,
        val_fraction: float = 0.1,
        augment: str = "flip_crop",
        normalize: str = "cifar10",
        resize: int | None = None,
        train_transform: Callable | None = None,
        eval_transform: Callable | None = None,
        subset: int | None = None,
        num_workers: int | None = None,
        seed: int = 42,
        synthetic_size: tuple[int, int] = (5000, 1000),
        cache_dir: str | None = None,
        on_device: bool = False,
    ):
        super().__init__()
        check_choice("data source", source, sources.SOURCES)
        check(batch_size > 0, f"batch_size must be positive, got {batch_size}")
        check(0 < val_fraction < 1, f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        check(subset is None or subset > 0, f"subset must be positive, got {subset}")
        check(num_workers is None or num_workers >= 0, f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters(ignore=["train_transform", "eval_transform"])
        self.data_dir = data_dir or sources.default_data_dir()
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.train_transform = train_transform or build_transform(augment, normalize, resize)
        self.eval_transform = eval_transform or build_transform("none", normalize, resize)
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self.classes = sources.CLASSES
        self.on_device = on_device
        if on_device:
            check(train_transform is None and eval_transform is None,
                  "train_transform/eval_transform are per-sample transforms: use on_device=False with them")
            self.batch_train_transform = build_batch_transform(augment, normalize, resize)
            self.batch_eval_transform = build_batch_transform("none", normalize, resize)

    def prepare_data(self) -> None:
        """Download only (runs on one process per machine)."""
        if self.source == "download":
            sources.download(self.data_dir)

    def load_arrays(self):
        """The four uint8/int64 arrays of the chosen source, decoded once and cached."""
        if self.source == "synthetic":
            return sources.make_synthetic(*self.hparams.synthetic_size, seed=self.seed)
        return sources.load_cached(self.source, self.data_dir, self.hparams.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_images"):
            return  # already set up (fit then test reuse the same split)
        train_x, train_y, test_x, test_y = self.load_arrays()
        images, labels = to_tensors(train_x, train_y)
        self.test_images, self.test_labels = to_tensors(test_x, test_y)
        # An image folder lists the test set class by class: shuffle it once, in a fixed order, so that a partial
        # pass (limit_test_batches, a few predictions) sees every class.
        order = torch.randperm(len(self.test_labels), generator=torch.Generator().manual_seed(0))
        self.test_images, self.test_labels = self.test_images[order], self.test_labels[order]
        train_idx, val_idx = split_indices(len(labels), self.hparams.val_fraction, self.seed)
        if self.hparams.subset:
            train_idx = train_idx[: self.hparams.subset]
        self.train_idx, self.val_idx = train_idx, val_idx
        self.train_images, self.train_labels = images[train_idx], labels[train_idx]
        self.val_images, self.val_labels = images[val_idx], labels[val_idx]

    def _loader(self, images, labels, transform, shuffle: bool) -> DataLoader | DeviceLoader:
        drop_last = shuffle and len(labels) > self.batch_size  # no tiny last batch for BatchNorm
        if self.on_device:
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
            # Lightning's global seed (the same on every rank) varies the shuffle between seeded runs.
            seed = self.seed + int(os.environ.get("PL_GLOBAL_SEED", 0))
            if shuffle:  # augmentation draws of its own per rank (seeded), not the same offsets on every GPU
                gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + 7919 * (rank + 1))
                self.batch_train_transform.generator = gen
            return DeviceLoader(images, labels, self.batch_size, device=device, shuffle=shuffle,
                                drop_last=drop_last and len(labels) // world > self.batch_size,
                                seed=seed, rank=rank, world_size=world)
        return DataLoader(
            ArrayDataset(images, labels, transform),
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_images, self.train_labels, self.train_transform, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_images, self.val_labels, self.eval_transform, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_images, self.test_labels, self.eval_transform, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``on_device``: augment (training) or only normalize (evaluation) the uint8 batch on its device."""
        if not self.on_device:
            return batch
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        return (self.batch_train_transform if training else self.batch_eval_transform)(x), y

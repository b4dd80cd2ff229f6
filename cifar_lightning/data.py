"""CIFAR10DataModule: CIFAR-10 from a download, a local copy, an image folder or synthetic data.

    from cifar_lightning import CIFAR10DataModule
    dm = CIFAR10DataModule(source="synthetic", batch_size=256)

``prepare_data`` only downloads; ``setup`` loads the uint8 arrays (decoded once, cached), builds a seeded
train/val split of the training images and keeps the official test set apart.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from functools import partial

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset

from cifar_lightning import sources
from cifar_lightning.augment import build_transform
from cifar_lightning.epoch_seeds import EpochShuffle, seeded_call
from cifar_lightning.errors import check, check_choice
from cifar_lightning.fast.batch_augment import build_batch_transform
from cifar_lightning.fast.device_loader import DeviceLoader


class ArrayDataset(Dataset):
    """Images held as one uint8 ``[N, 3, 32, 32]`` tensor; ``transform`` runs per sample.

    An item is an index, or a ``(seed, index)`` pair from :class:`~cifar_lightning.epoch_seeds.EpochShuffle`: then the
    transform's random draws come from ``seed``, the same in a resumed run as in an uninterrupted one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item):
        seed, i = item if isinstance(item, tuple) else (None, item)
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x) if seed is None else seeded_call(self.transform, x, seed)
        return x, self.labels[i]


def quiet_worker(worker_id: int, rank: int = 0) -> None:
    """A loader worker leaves Ctrl-C to the training process, which then stops it: no traceback from each worker, for
    the interrupt or for the training process hanging up while a batch was on its way (the worker's handle-sharing
    thread reports that through ``sys.excepthook``). Seeded as Lightning's own worker_init_fn would seed it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    report = sys.excepthook

    def excepthook(kind, value, traceback):
        if not issubclass(kind, (ConnectionError, EOFError)):
            report(kind, value, traceback)

    sys.excepthook = excepthook
    if int(os.environ.get("PL_SEED_WORKERS", 0)):  # seed_everything(workers=True), as the CLI calls it
        pl_worker_init_function(worker_id, rank)


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
        cache_dir: where decoded arrays are cached (default ``<data_dir>/cache``, shared by every working directory).
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
        self.resumed_epoch = 0  # the epoch a resumed fit starts at (load_state_dict)
        if on_device:
            check(
                train_transform is None and eval_transform is None,
                "train_transform/eval_transform are per-sample transforms: use on_device=False with them",
            )
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
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        # Lightning's global seed (the same on every rank) varies the shuffle between seeded runs. The shuffle and the
        # augmentation are drawn afresh each epoch from this seed and the epoch: a resumed fit sees the same batches.
        seed = self.seed + int(os.environ.get("PL_GLOBAL_SEED", 0))
        if self.on_device:
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            generator = None
            if shuffle:  # the augmentation's draws, reseeded by the loader every epoch (its own per rank)
                generator = torch.Generator(device=device)
                self.batch_train_transform.generator = generator
            return DeviceLoader(
                images,
                labels,
                self.batch_size,
                device=device,
                shuffle=shuffle,
                drop_last=drop_last and len(labels) // world > self.batch_size,
                seed=seed,
                rank=rank,
                world_size=world,
                generator=generator,
            )
        dataset = ArrayDataset(images, labels, transform)
        sampler = EpochShuffle(dataset, seed, num_replicas=world, rank=rank) if shuffle else None
        if sampler is not None:  # see load_state_dict; a later fit with this DataModule starts at epoch 0 again
            sampler.set_epoch(self.resumed_epoch)
            self.resumed_epoch = 0
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=partial(quiet_worker, rank=rank) if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_images, self.train_labels, self.train_transform, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_images, self.val_labels, self.eval_transform, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_images, self.test_labels, self.eval_transform, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def state_dict(self) -> dict:
        """The number of training epochs run so far, which Lightning hands the shuffle as its epoch on resuming."""
        trainer = self.trainer
        return {"epoch": trainer.fit_loop.epoch_progress.current.processed} if trainer else {}

    def load_state_dict(self, state: dict) -> None:
        # A resumed fit creates the training loader's iterator before it tells the sampler the epoch, and does not
        # create it again; loader workers fetch their first batches at once. So the sampler starts at the epoch.
        self.resumed_epoch = state.get("epoch", 0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With ``on_device``: augment (training) or only normalize (evaluation) the uint8 batch on its device."""
        if not self.on_device:
            return batch
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        return (self.batch_train_transform if training else self.batch_eval_transform)(x), y

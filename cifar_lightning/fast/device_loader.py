"""DeviceLoader: a split held as uint8 on the device (GPU or CPU), served in batches without worker processes.

    loader = DeviceLoader(images, labels, batch_size=512, device="cuda", shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)          # Lightning calls this itself, like DistributedSampler's
        for x, y in loader: ...          # x: uint8 [B, 3, 32, 32] on the device; augment it there

All 50k CIFAR-10 images take 150 MB as uint8, so the whole set fits on any GPU. Each epoch reshuffles
with a generator seeded from ``(seed, epoch)``: the same order on every DDP rank, which then takes its own
shard (``rank::world_size``). Training shards are cut to equal size, so every rank runs the same number of
steps (DDP needs that); evaluation shards keep every sample once, disjoint and complete across ranks.
"""

from __future__ import annotations

import math

import torch

from cifar_lightning.epoch_seeds import mix
from cifar_lightning.errors import check


class DeviceLoader:
    """Iterable of ``(images, labels)`` batches, with ``len()`` and ``set_epoch()``.

    Args:
        images: uint8 ``[N, C, H, W]`` (moved to ``device`` once).
        labels: int64 ``[N]``.
        batch_size: samples per batch on this rank.
        device: where the data lives and the batches come out.
        shuffle: a fresh permutation every epoch (seeded by ``seed`` and the epoch).
        drop_last: drop the last incomplete batch (training: no tiny batch for BatchNorm).
        seed: base seed of the shuffle; must be the same on all ranks.
        rank / world_size: this process's shard under DDP.
        generator: the augmentation's generator (on ``device``), reseeded from ``(seed, epoch, rank)`` as each epoch
            begins, so that an epoch's draws do not depend on the epochs before it (a resumed fit matches).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator | None = None,
    ):
        check(len(images) == len(labels), f"{len(images)} images but {len(labels)} labels")
        check(batch_size > 0, f"batch_size must be positive, got {batch_size}")
        check(0 <= rank < world_size, f"rank {rank} is outside world_size {world_size}")
        check(len(labels) >= world_size, f"{len(labels)} samples cannot be shared by {world_size} processes")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.generator = seed, rank, world_size, generator
        self.epoch = 0
        # Lightning's loops call ``dataloader.sampler.set_epoch(epoch)`` at each epoch start.
        self.sampler, self.batch_sampler = self, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard_size(self) -> int:
        n = len(self.labels)
        if self.drop_last:
            return n // self.world_size  # equal shards: the same number of steps on every rank
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order (on the CPU)."""
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: self._shard_size() * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        if self.generator is not None:
            self.generator.manual_seed(mix(self.seed, self.epoch, self.rank))
        idx = self.indices().to(self.device)
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[sel], self.labels[sel]

"""Random draws that depend only on (seed, epoch): what makes a resumed fit see the batches an uninterrupted one sees.

A checkpoint stores the weights, the optimizer and the loop counters, but not the state of the random generators
that shuffle the data and draw the augmentations. So every draw here is seeded afresh from the run's seed and the
epoch (and, for per-sample transforms, the sample): epoch 3 of a run resumed from the end of epoch 2 shuffles and
augments exactly as epoch 3 of the uninterrupted run, whatever happened in the process before it.

    sampler = EpochShuffle(dataset, seed=42)   # Lightning calls sampler.set_epoch(epoch) at each epoch start
    for seed, i in sampler: ...                # ArrayDataset reads (seed, index) items: see seeded_call
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler, get_worker_info

_MASK = 2**64 - 1


def mix(*values: int) -> int:
    """A well-spread 63-bit seed from integers (SplitMix64 steps), e.g. ``mix(seed, epoch, index)``.

    Nearby inputs (epoch 3 and 4, sample 10 and 11) give unrelated seeds, also in the low 32 bits that seed the CPU
    generator.
    """
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK
        state ^= state >> 29
    return state >> 1


class EpochShuffle(DistributedSampler):
    """PyTorch's DistributedSampler (a permutation seeded by ``seed + epoch``, this rank's share of it) whose items are
    ``(sample_seed, index)`` pairs, ``sample_seed = mix(seed, epoch, index)``: the seed of that sample's augmentation.

    Being a DistributedSampler, Lightning leaves it in place under DDP and calls its ``set_epoch`` every epoch; one
    process is ``num_replicas=1, rank=0``.
    """

    def __init__(self, dataset, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in super().__iter__():
            yield mix(self.seed, self.epoch, index), index


def seeded_call(fn: Callable, x, seed: int):
    """``fn(x)`` with torch's global generator seeded by ``seed`` (torchvision's random transforms draw from it).

    In a loader worker the generator is the worker's own; in the training process (``num_workers=0``) its state is
    put back afterwards, so the rest of the program draws as if this had not run.
    """
    generator = torch.default_generator
    saved = generator.get_state() if get_worker_info() is None else None
    generator.manual_seed(seed)
    try:
        return fn(x)
    finally:
        if saved is not None:
            generator.set_state(saved)

"""The global batch of a data-parallel run, and the learning rate that follows it.

    from cifar_lightning.global_batch import global_batch_size, linear_scaled_lr
    global_batch_size(1024, devices=2)          # 2048: each of 2 GPUs takes 1024 images per step
    linear_scaled_lr(0.6, 1024, 2048)           # 1.2: twice the batch, twice the lr

Under DDP every process trains on its own ``batch_size`` images, the gradients are averaged across the processes,
and the optimizer steps once: one step sees batch_size x GPUs per node x nodes x accumulated batches images.
The linear scaling rule (Goyal et al., 2017) keeps the lr per image: the lr grows with the global batch, with a
warm-up, since the first steps of a large-batch run are the ones that diverge.
"""

from __future__ import annotations

from cifar_lightning.errors import check


def global_batch_size(batch_size: int, devices: int = 1, num_nodes: int = 1, accumulate_grad_batches: int = 1) -> int:
    """Images per optimizer step: ``batch_size`` per process x ``devices`` per node x ``num_nodes`` x
    ``accumulate_grad_batches``."""
    for name, value in (
        ("batch_size", batch_size),
        ("devices", devices),
        ("num_nodes", num_nodes),
        ("accumulate_grad_batches", accumulate_grad_batches),
    ):
        check(isinstance(value, int) and value >= 1, f"{name} must be a whole number >= 1, got {value!r}")
    return batch_size * devices * num_nodes * accumulate_grad_batches


def linear_scaled_lr(lr: float, batch_size: int, new_batch_size: int) -> float:
    """The lr for ``new_batch_size`` when ``lr`` suits ``batch_size``: scaled in proportion to the batch."""
    check(lr > 0 and batch_size > 0 and new_batch_size > 0, "lr and both batch sizes must be positive")
    return lr * new_batch_size / batch_size


def describe(trainer, batch_size: int) -> str:
    """One line for a trainer's global batch, e.g. ``global batch 2048 = 1024 per process x 2 processes per node x
    1 node x 1 accumulated batch``."""
    devices, nodes, accumulate = trainer.num_devices, trainer.num_nodes, trainer.accumulate_grad_batches
    total = global_batch_size(batch_size, devices, nodes, accumulate)
    return (
        f"global batch {total} = {batch_size} per process x {devices} process{'es' if devices > 1 else ''} per "
        f"node x {nodes} node{'s' if nodes > 1 else ''} x {accumulate} accumulated batch"
        f"{'es' if accumulate > 1 else ''}"
    )

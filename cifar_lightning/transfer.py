"""Transfer learning without a download: some CIFAR-10 classes are the source task, the others the target.

    from cifar_lightning.transfer import ClassSubsetDataModule, for_new_task
    source = ClassSubsetDataModule(classes=[0, 1, 2, 3, 4], source="folder", data_dir="data/cifar10-jpeg")
    target = ClassSubsetDataModule(classes=[5, 6, 7, 8, 9], per_class=100, source="folder", ...)
    # ... train a network on ``source``, then:
    finetune = for_new_task(pretrained, num_classes=5)               # every layer trains on the target
    probe = for_new_task(pretrained, num_classes=5, freeze=True)     # only the new head trains

Both take the same ``CIFAR10DataModule`` options and train with the same ``CIFARSystem``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import check
from cifar_lightning.sources import CLASSES


def class_positions(labels: torch.Tensor, classes: Sequence[int], per_class: int | None = None) -> torch.Tensor:
    """Positions (ascending) of the samples whose label is one of ``classes``; with ``per_class`` only the first
    ``per_class`` of each class, in the order the samples come (a seeded random draw when that order is shuffled)."""
    chosen = []
    for c in classes:
        positions = (labels == c).nonzero().flatten()
        check(
            per_class is None or len(positions) >= per_class,
            f"class {c} has {len(positions)} samples here, fewer than per_class={per_class}",
        )
        chosen.append(positions[:per_class])
    return torch.cat(chosen).sort().values


class ClassSubsetDataModule(CIFAR10DataModule):
    """:class:`~cifar_lightning.CIFAR10DataModule` restricted to some of the classes, relabelled ``0..k-1`` in the
    order given.

    Args:
        classes: the CIFAR-10 class indices to keep, e.g. ``[5, 6, 7, 8, 9]`` (dog, frog, horse, ship, truck).
        per_class: keep only this many training images of each class (the labelled budget of a small target
            task), drawn from the seeded shuffle of the training split: the same ``seed`` gives the same images.
            Validation and test keep every image of the kept classes.
        **kwargs: any :class:`~cifar_lightning.CIFAR10DataModule` option (``source``, ``batch_size``, ``seed``...).
    """

    def __init__(self, classes: Sequence[int], per_class: int | None = None, **kwargs):
        check(len(classes) >= 2, f"a classification task needs two classes or more, got {list(classes)}")
        check(len(set(classes)) == len(classes), f"classes must not repeat, got {list(classes)}")
        check(all(0 <= c < len(CLASSES) for c in classes), f"classes are indices 0..{len(CLASSES) - 1}")
        check(per_class is None or per_class > 0, f"per_class must be positive, got {per_class}")
        super().__init__(**kwargs)
        self.class_ids, self.per_class = list(classes), per_class
        self.classes = [CLASSES[c] for c in classes]  # the names, in the order of the new labels

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_images"):
            return
        super().setup(stage)
        relabel = torch.full((len(CLASSES),), -1, dtype=torch.long)
        relabel[self.class_ids] = torch.arange(len(self.class_ids))
        for split, per_class in (("train", self.per_class), ("val", None), ("test", None)):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            keep = class_positions(labels, self.class_ids, per_class)
            setattr(self, f"{split}_images", images[keep])
            setattr(self, f"{split}_labels", relabel[labels[keep]])
            if split != "test":
                setattr(self, f"{split}_idx", getattr(self, f"{split}_idx")[keep])


class FrozenFeatures(nn.Module):
    """``net`` with every layer frozen but its head ``fc``: a linear classifier on fixed features.

    Frozen means no gradients and BatchNorm in eval mode whatever ``train()`` says: the layers compute the same
    features in training and at test time, with the running statistics learnt on the source task.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        check(isinstance(getattr(net, "fc", None), nn.Linear), "FrozenFeatures needs a network whose head is .fc")
        self.net = net
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("fc."))
        self.train()

    def train(self, mode: bool = True) -> FrozenFeatures:
        super().train(mode)
        self.net.eval()
        self.net.fc.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def for_new_task(net: nn.Module, num_classes: int, freeze: bool = False) -> nn.Module:
    """A copy of ``net`` (``net`` is left as it is) with a fresh linear head ``fc`` for ``num_classes`` classes.

    ``freeze=False``: fine-tuning, every layer keeps training. ``freeze=True``: only the head trains
    (:class:`FrozenFeatures`). Seed before calling for a reproducible head.
    """
    check(num_classes > 0, f"num_classes must be positive, got {num_classes}")
    check(isinstance(getattr(net, "fc", None), nn.Linear), "for_new_task needs a network whose head is .fc")
    copied = copy.deepcopy(net)
    copied.fc = nn.Linear(copied.fc.in_features, num_classes)
    if hasattr(copied, "config"):  # CifarResNet: a checkpoint rebuilds the right head
        copied.config = {**copied.config, "num_classes": num_classes}
    return FrozenFeatures(copied) if freeze else copied

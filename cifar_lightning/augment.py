"""Augmentation presets and normalization, built with torchvision.transforms.v2.

Every preset takes a uint8 CHW image tensor and returns a normalized float32 tensor.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from cifar_lightning.errors import check, check_choice

# Per-channel statistics of the 50k CIFAR-10 training images (lesson 02 recomputes them).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# What torchvision's ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NORMALIZATIONS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD), "none": None}


def _crop():
    # Pad by 4 and cut a random 32x32 window: shifts of up to 4 pixels (reflect avoids black borders).
    return v2.RandomCrop(32, padding=4, padding_mode="reflect")


# Each preset is a list of random geometric/colour steps applied before normalization.
PRESETS = {
    "none": lambda: [],
    "flip": lambda: [v2.RandomHorizontalFlip()],
    "flip_crop": lambda: [_crop(), v2.RandomHorizontalFlip()],
    "flip_crop_rotate": lambda: [_crop(), v2.RandomHorizontalFlip(), v2.RandomRotation(15)],
    "autoaugment": lambda: [_crop(), v2.RandomHorizontalFlip(), v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)],
    "trivialaugment": lambda: [_crop(), v2.RandomHorizontalFlip(), v2.TrivialAugmentWide()],
}


def normalization(name: str):
    """Return ``(mean, std)`` for a named normalization, or ``None`` for ``"none"``."""
    check_choice("normalization", name, NORMALIZATIONS)
    return NORMALIZATIONS[name]


def build_transform(preset: str = "none", normalize: str = "cifar10", resize: int | None = None) -> v2.Compose:
    """The transform for one uint8 CHW image: ``preset`` augmentation, optional resize, then normalization.

    ``resize`` (e.g. 224) upsamples for ImageNet-pretrained networks with the ImageNet stem.
    """
    check_choice("augmentation preset", preset, PRESETS)
    check(resize is None or resize >= 32, f"resize must be at least 32 pixels, got {resize}")
    steps = PRESETS[preset]()
    if resize:
        steps.append(v2.Resize(resize, antialias=True))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    stats = normalization(normalize)
    if stats is not None:
        steps.append(v2.Normalize(*stats))
    return v2.Compose(steps)

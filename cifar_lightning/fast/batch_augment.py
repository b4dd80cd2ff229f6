"""Batched augmentation: the presets of ``augment.py`` applied to a whole batch at once, on any device.

    from cifar_lightning.fast.batch_augment import build_batch_transform
    train_tf = build_batch_transform("flip_crop")   # uint8 [N, 3, 32, 32] -> normalized float32
    x = train_tf(images_uint8_on_gpu)

Per-sample torchvision transforms run one image at a time on CPU workers. With the data already on the GPU,
one call per batch replaces 512 small ones: every sample still draws its own crop offset, flip and angle
from the same distributions as the v2 presets (RandomCrop(32, padding=4, reflect), RandomHorizontalFlip(0.5),
RandomRotation(15) with nearest interpolation and black fill), so a model sees the same training data.
Crop and flip are a single gather from the unpadded uint8 images (the reflect padding is folded into the
index), which is why this is written by hand rather than with kornia.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cifar_lightning.augment import PRESETS, normalization
from cifar_lightning.errors import check, check_choice

# The presets that have a batched version; the policy-based ones (AutoAugment, TrivialAugment) stay per-sample.
BATCH_PRESETS = ("none", "flip", "flip_crop", "flip_crop_rotate")


def reflect_index(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in a reflect-padded axis (may be < 0 or >= size) to pixels of the unpadded axis.

    Reflect padding mirrors without repeating the edge: position -1 reads pixel 1, position ``size`` reads
    ``size - 2`` (as ``torch.nn.functional.pad(mode="reflect")`` and torchvision's ``padding_mode="reflect"``).
    """
    positions = positions.abs()  # left edge: -k -> k
    return torch.where(positions >= size, 2 * (size - 1) - positions, positions)  # right edge


def crop_flip(
    images: torch.Tensor,
    padding: int = 4,
    crop: bool = True,
    flip: bool = True,
    generator: torch.Generator | None = None,
    size: int | None = None,
) -> torch.Tensor:
    """Random ``size``-pixel crop of the ``padding``-reflect-padded images, then a random horizontal flip, per sample.

    ``images``: ``[N, C, H, W]`` of any dtype and device; ``size`` defaults to the image's own (square images
    when set). Offsets are uniform over the ``H + 2 * padding - size + 1`` positions of each axis (like
    ``RandomCrop(size, padding)``), flips have probability 1/2. Returns ``[N, C, size, size]`` of the same
    dtype in channels_last memory layout (what the network wants next).
    """
    n, _, h, w = images.shape
    dev = images.device
    out_h, out_w = (size, size) if size else (h, w)
    check(crop or (out_h, out_w) == (h, w), "a crop size needs crop=True")
    check(
        out_h <= h + 2 * padding and out_w <= w + 2 * padding,
        f"crop size {size} is larger than the padded image ({h + 2 * padding})",
    )
    rows = torch.arange(out_h, device=dev).expand(n, out_h)
    cols = torch.arange(out_w, device=dev).expand(n, out_w)
    if crop:
        top = torch.randint(0, h + 2 * padding - out_h + 1, (n, 1), device=dev, generator=generator) - padding
        left = torch.randint(0, w + 2 * padding - out_w + 1, (n, 1), device=dev, generator=generator) - padding
        rows, cols = reflect_index(rows + top, h), reflect_index(cols + left, w)
    if flip:
        flipped = torch.rand(n, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)  # mirror the (cropped) window
    batch = torch.arange(n, device=dev)[:, None, None]
    # One gather: advanced indices on N, H, W around the channel slice give [N, H, W, C].
    out = images[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)  # NCHW shape, channels_last memory


def rotate(images: torch.Tensor, degrees: float = 15.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each float image by its own angle, uniform in ``[-degrees, degrees]``, about the centre.

    Nearest-neighbour sampling and zero (black) fill outside the image, as ``v2.RandomRotation(degrees)``.
    """
    n = images.shape[0]
    angle = (torch.rand(n, device=images.device, generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class BatchTransform:
    """A preset's augmentation, optional resize and normalization for uint8 ``[N, C, H, W]`` batches.

    Returns float32 in channels_last layout. ``generator`` (on the images' device) makes draws reproducible.
    ``crop_size`` (crop presets only) cuts smaller training windows than the images, e.g. 24 of 32 pixels:
    the objects keep their scale and a step costs (24/32)^2 of the compute (:class:`ProgressiveCrop` sets it).
    """

    def __init__(
        self,
        preset: str = "none",
        normalize: str = "cifar10",
        resize: int | None = None,
        generator: torch.Generator | None = None,
    ):
        check_choice("augmentation preset", preset, PRESETS)
        check(
            preset in BATCH_PRESETS,
            f"augment={preset} has no batched version for on_device data: use one of {', '.join(BATCH_PRESETS)}, "
            "or on_device=False for the per-sample CPU transforms",
        )
        check(resize is None or resize >= 32, f"resize must be at least 32 pixels, got {resize}")
        self.preset, self.resize, self.generator = preset, resize, generator
        self.crop_size: int | None = None
        self.stats = normalization(normalize)
        self._cache: dict = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check(images.ndim == 4, f"expected a batch [N, C, H, W], got shape {tuple(images.shape)}")
        x = images
        if self.preset != "none":
            x = crop_flip(x, crop="crop" in self.preset, generator=self.generator, size=self.crop_size)
        x = x.float()  # still 0..255
        if self.preset == "flip_crop_rotate":
            x = rotate(x, 15.0, generator=self.generator)
        if self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.stats is None:
            return x / 255
        shift, scale = self._affine(x.device)
        return (x - shift) * scale  # = (x / 255 - mean) / std

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: building them from Python numbers every batch is a blocking host-to-GPU
        # copy, which would stall every training step.
        if device not in self._cache:
            mean, std = (torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1) for s in self.stats)
            self._cache[device] = ((mean * 255).to(device), (1 / (std * 255)).to(device))
        return self._cache[device]


def build_batch_transform(preset: str = "none", normalize: str = "cifar10", resize: int | None = None) -> Callable:
    """The batched counterpart of :func:`cifar_lightning.augment.build_transform`."""
    return BatchTransform(preset, normalize, resize)

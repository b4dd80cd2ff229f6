"""The batched augmentation draws from the same distributions as the per-sample v2 presets (on CPU tensors)."""

import pytest
import torch
import torch.nn.functional as F

from cifar_lightning.augment import CIFAR10_MEAN, CIFAR10_STD, build_transform
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.fast.batch_augment import BatchTransform, crop_flip, reflect_index, rotate


def images(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def all_crop_flips(img, padding=4):
    """Every image RandomCrop(reflect) + RandomHorizontalFlip can produce from ``img``: {(top, left, flip): image}."""
    padded = F.pad(img[None].float(), (padding,) * 4, mode="reflect")[0].to(img.dtype)
    out = {}
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + 32, left : left + 32]
            out[(top, left, False)] = crop
            out[(top, left, True)] = crop.flip(-1)
    return out


def test_reflect_index_matches_torch_reflect_padding():
    row = torch.arange(10.0)[None, None]
    padded = F.pad(row, (4, 4), mode="reflect")[0, 0]
    assert torch.equal(reflect_index(torch.arange(-4, 14), 10), padded.long())


def test_every_crop_flip_is_one_the_v2_preset_can_make():
    x = images(32)
    out = crop_flip(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last)
    for i in range(len(x)):
        candidates = all_crop_flips(x[i])
        assert any(torch.equal(out[i], c) for c in candidates.values())


def coordinate_image(n):
    """Channel 0 holds each pixel's column, channel 1 its row: a crop/flip can be read back from the output."""
    cols = torch.arange(32).expand(32, 32)
    img = torch.stack([cols, cols.T, torch.zeros(32, 32, dtype=torch.long)]).to(torch.uint8)
    return img.expand(n, 3, 32, 32).contiguous()


def decode(out):
    """(dx, dy, flipped) of each augmented coordinate image, from the centre pixels (never reflected)."""
    out = out.long()
    c16, c15 = out[:, 0, 16, 16], out[:, 0, 16, 15]
    flipped = c16 < c15
    dx = torch.where(flipped, c16 - 15, c16 - 16)
    dy = out[:, 1, 16, 16] - 16
    return dx, dy, flipped


def test_crop_offsets_and_flips_have_the_v2_distribution():
    n = 1000
    ours = crop_flip(coordinate_image(n), generator=torch.Generator().manual_seed(2))
    v2_tf = build_transform("flip_crop", "none")
    torch.manual_seed(2)
    ref = torch.stack([v2_tf(im) for im in coordinate_image(n)]) * 255
    for got in (decode(ours), decode(ref.round())):
        dx, dy, flipped = got
        assert abs(flipped.float().mean().item() - 0.5) < 0.06
        for d in (dx, dy):  # uniform over the 9 offsets -4..4
            assert d.min() == -4 and d.max() == 4
            hist = torch.bincount(d + 4, minlength=9).float() / n
            assert torch.all((hist - 1 / 9).abs() < 0.04), hist


def test_eval_transform_equals_v2_normalize_exactly():
    x = images(8)
    ref = torch.stack([build_transform("none", "cifar10")(im) for im in x])
    out = BatchTransform("none", "cifar10")(x)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-5)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(
        BatchTransform("none", "cifar10")(torch.zeros(1, 3, 4, 4, dtype=torch.uint8)),
        (-mean / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)).expand(1, 3, 4, 4),
        atol=1e-6,
    )


def test_rotation_zero_is_identity_and_fill_is_black():
    x = images(4).float()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(rotate(x, degrees=0.0, generator=g), x)
    white = torch.full((256, 1, 32, 32), 255.0)
    out = rotate(white, degrees=15.0, generator=g)
    corners = out[:, 0, 0, 0]
    assert (corners == 0).any() and (out[:, 0, 16, 16] == 255).all()  # centre stays, some corners turn black


def test_flip_only_preset_keeps_pixels():
    x = images(16)
    out = BatchTransform("flip", "none")(x) * 255
    for i in range(16):
        assert torch.allclose(out[i], x[i].float()) or torch.allclose(out[i], x[i].float().flip(-1))


def test_policy_presets_are_refused_with_a_clear_error():
    with pytest.raises(CifarLightningError, match="on_device=False"):
        BatchTransform("autoaugment")


def test_resize_upsamples_batches():
    out = BatchTransform("flip_crop", "imagenet", resize=64)(images(2))
    assert out.shape == (2, 3, 64, 64)


def test_smaller_crops_are_windows_of_the_padded_image_at_every_offset():
    n, size = 2000, 24
    out = crop_flip(coordinate_image(n), size=size, generator=torch.Generator().manual_seed(3))
    assert out.shape == (n, 3, size, size) and out.is_contiguous(memory_format=torch.channels_last)
    x = images(8)
    small = crop_flip(x, size=size, generator=torch.Generator().manual_seed(4))
    padded = F.pad(x.float(), (4,) * 4, mode="reflect").to(torch.uint8)
    for i in range(len(x)):  # each is one of the (40 - 24 + 1)^2 windows of the padded image, maybe mirrored
        windows = padded[i].unfold(1, size, 1).unfold(2, size, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)
        assert any(torch.equal(small[i], w) or torch.equal(small[i], w.flip(-1)) for w in windows)
    top = out[:, 1].long().amin(dim=(1, 2))  # coordinate image: the smallest row seen in the window
    # windows start at rows -4..12 of the padded axis; reflected rows read back as 0..4, so check the far edge
    bottom = out[:, 1, -1, 12].long()  # a column away from the flip's effect on rows
    assert top.min() == 0 and bottom.max() == 31 and bottom.min() == 19  # last row: 19 (offset -4) .. 31 (clipped)


def test_crop_size_errors_are_clear():
    with pytest.raises(CifarLightningError, match="larger than the padded image"):
        crop_flip(images(2), size=48)
    with pytest.raises(CifarLightningError, match="needs crop=True"):
        crop_flip(images(2), crop=False, size=24)

"""The GPU-resident data path, checked on CPU tensors: sharding, reshuffling, and a short fit on the CPU."""

import lightning as L
import pytest
import torch

from cifar_lightning import CIFAR10DataModule, CIFARSystem
from cifar_lightning.augment import build_transform
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.fast.device_loader import DeviceLoader
from tests.helpers import cpu_trainer


def data(n=103):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return images, torch.arange(n)


def collect(loader):
    return torch.cat([y for _, y in loader])


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_shards_are_disjoint_and_complete(world):
    images, labels = data()
    seen = [collect(DeviceLoader(images, labels, 10, rank=r, world_size=world)) for r in range(world)]
    allseen = torch.cat(seen)
    assert len(allseen) == len(labels) and torch.equal(allseen.sort().values, labels)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_shards_are_disjoint_equal_and_reshuffled_each_epoch(world):
    images, labels = data()
    loaders = [
        DeviceLoader(images, labels, 8, shuffle=True, drop_last=True, seed=5, rank=r, world_size=world)
        for r in range(world)
    ]
    assert len({len(dl) for dl in loaders}) == 1  # same number of steps on every rank
    assert len(loaders[0]) == (103 // world) // 8
    orders = []
    for epoch in range(2):
        for dl in loaders:
            dl.set_epoch(epoch)
        shards = [torch.cat([dl.indices()]) for dl in loaders]
        merged = torch.cat(shards)
        assert len(merged.unique()) == len(merged) == (103 // world) * world  # disjoint, nothing repeated
        batches = [collect(dl) for dl in loaders]
        assert all(len(b) == len(loaders[0]) * 8 for b in batches)
        orders.append(merged)
    assert not torch.equal(orders[0], orders[1])  # a new permutation each epoch
    again = DeviceLoader(images, labels, 8, shuffle=True, drop_last=True, seed=5, rank=0, world_size=world)
    again.set_epoch(1)
    assert torch.equal(again.indices(), loaders[0].indices())  # seeded: reproducible on every rank


def test_batches_pair_images_with_their_labels():
    images, labels = data(40)
    for x, y in DeviceLoader(images, labels, 16, shuffle=True, seed=1):
        assert x.dtype == torch.uint8 and torch.equal(x[:, 0, 0, 0].long(), y)


def test_loader_rejects_bad_arguments():
    images, labels = data(10)
    with pytest.raises(CifarLightningError, match="rank"):
        DeviceLoader(images, labels, 4, rank=2, world_size=2)
    with pytest.raises(CifarLightningError, match="labels"):
        DeviceLoader(images, labels[:5], 4)


def test_on_device_eval_batches_equal_the_per_sample_path():
    dm = CIFAR10DataModule(source="synthetic", batch_size=64, synthetic_size=(400, 100), on_device=True)
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    x = dm.on_after_batch_transfer((x, y), 0)[0]
    ref = torch.stack([build_transform("none", "cifar10")(im) for im in dm.val_images[:64]])
    assert torch.allclose(x, ref, atol=1e-5) and torch.equal(y, dm.val_labels[:64])


def test_on_device_refuses_per_sample_transforms_and_policy_presets():
    with pytest.raises(CifarLightningError, match="on_device=False"):
        CIFAR10DataModule(source="synthetic", on_device=True, train_transform=build_transform("flip"))
    with pytest.raises(CifarLightningError, match="on_device=False"):
        CIFAR10DataModule(source="synthetic", on_device=True, augment="trivialaugment")


class Recorder(L.Callback):
    """Keeps the first training batch of each epoch as the model receives it."""

    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batches.append(batch)


def tiny_net():
    """A small conv net: the test is about the data path, and a ResNet-18 is slow on a shared CPU."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )


def test_cpu_fallback_fit_augments_training_batches_and_learns(tmp_path):
    L.seed_everything(0)
    dm = CIFAR10DataModule(
        source="synthetic", batch_size=100, synthetic_size=(1000, 200), on_device=True, augment="flip_crop"
    )
    system = CIFARSystem(tiny_net(), lr=0.05, scheduler="onecycle_linear", label_smoothing=0.1, channels_last=True)
    rec = Recorder()
    trainer = cpu_trainer(tmp_path, max_epochs=3, enable_checkpointing=False, callbacks=[rec])
    trainer.fit(system, datamodule=dm)
    assert trainer.num_training_batches == 9  # 900 training images, batch 100
    first = rec.batches[0][0]
    assert first.dtype == torch.float32 and first.shape == (100, 3, 32, 32)
    raw = next(
        iter(DeviceLoader(dm.train_images, dm.train_labels, 100, shuffle=True, drop_last=True, seed=dm.seed + 0))
    )  # what epoch 0 served before augmentation
    plain = dm.batch_eval_transform(raw[0])
    assert not torch.allclose(first, plain)  # training batches were augmented, not only normalized
    assert not torch.equal(rec.batches[0][1], rec.batches[1][1])  # epoch 1 served another order
    result = trainer.test(system, datamodule=dm, verbose=False)[0]
    assert result["test_acc"] > 0.3  # well above chance (0.1) after 3 short epochs

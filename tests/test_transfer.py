"""Class-subset data and the copies of a network for a new task (cifar_lightning/transfer.py)."""

import pytest
import torch

from cifar_lightning import CifarLightningError, CIFARSystem, build_resnet
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.transfer import ClassSubsetDataModule, FrozenFeatures, class_positions, for_new_task
from tests.helpers import cpu_trainer

SYNTH = dict(source="synthetic", synthetic_size=(600, 200), num_workers=0, batch_size=32)


def test_class_positions_keeps_the_first_of_each_class_in_order():
    labels = torch.tensor([3, 1, 3, 2, 1, 3, 1])
    assert class_positions(labels, [1, 3]).tolist() == [0, 1, 2, 4, 5, 6]
    assert class_positions(labels, [3, 1], per_class=2).tolist() == [0, 1, 2, 4]
    with pytest.raises(CifarLightningError, match="fewer than per_class"):
        class_positions(labels, [2], per_class=2)


def test_subset_keeps_only_its_classes_relabelled_with_per_class_images():
    full = CIFAR10DataModule(**SYNTH)
    full.setup()
    dm = ClassSubsetDataModule(classes=[7, 2, 5], per_class=10, **SYNTH)
    dm.setup()
    assert dm.classes == ["horse", "bird", "dog"]
    assert torch.bincount(dm.train_labels, minlength=3).tolist() == [10, 10, 10]
    # val and test keep every image of the kept classes, relabelled 7 -> 0, 2 -> 1, 5 -> 2
    for split in ("val", "test"):
        original = getattr(full, f"{split}_labels")
        kept = original[(original == 7) | (original == 2) | (original == 5)]
        assert torch.equal(getattr(dm, f"{split}_labels"), torch.tensor([7, 2, 5]).eq(kept[:, None]).int().argmax(1))
    # the images are the original ones: each kept training image sits in the full split with its old label
    for image, label, index in zip(dm.train_images, dm.train_labels, dm.train_idx, strict=True):
        position = (full.train_idx == index).nonzero().item()
        assert torch.equal(full.train_images[position], image)
        assert full.train_labels[position].item() == [7, 2, 5][label]


def test_subset_draw_is_seeded_and_splits_stay_disjoint():
    a, b, c = (ClassSubsetDataModule(classes=[0, 1], per_class=5, seed=s, **SYNTH) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train_idx, b.train_idx)
    assert not torch.equal(a.train_idx, c.train_idx)
    assert not set(a.train_idx.tolist()) & set(a.val_idx.tolist())


def test_subset_rejects_bad_classes():
    for classes in ([3], [1, 1], [0, 10]):
        with pytest.raises(CifarLightningError):
            ClassSubsetDataModule(classes=classes, **SYNTH)


def test_for_new_task_copies_the_body_and_gives_a_fresh_head():
    torch.manual_seed(0)
    net = build_resnet(width=8, blocks=[1, 1, 1, 1], num_classes=5)
    fine = for_new_task(net, num_classes=3)
    assert fine.fc.out_features == 3 and net.fc.out_features == 5  # the original is untouched
    assert fine.config["num_classes"] == 3
    assert torch.equal(fine.layer2[0].conv1.weight, net.layer2[0].conv1.weight)
    assert fine.layer2[0].conv1.weight.data_ptr() != net.layer2[0].conv1.weight.data_ptr()
    assert all(p.requires_grad for p in fine.parameters())


def test_frozen_features_train_only_the_head_and_keep_batchnorm_fixed(tmp_path):
    torch.manual_seed(0)
    net = build_resnet(width=8, blocks=[1, 1, 1, 1], num_classes=10)
    probe = for_new_task(net, num_classes=2, freeze=True)
    assert isinstance(probe, FrozenFeatures)
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["net.fc.weight", "net.fc.bias"]
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    dm = ClassSubsetDataModule(classes=[0, 1], **SYNTH)
    system = CIFARSystem(probe, num_classes=2, lr=0.1, scheduler="none")
    cpu_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(system, datamodule=dm)
    assert not probe.net.bn1.training and probe.net.fc.training  # train() left the body in eval mode
    after = probe.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"net.fc.weight", "net.fc.bias"}  # BatchNorm running statistics included: untouched

import numpy as np
import pytest
import torch

from cifar_lightning import CIFAR10DataModule, CifarLightningError, build_transform, sources
from cifar_lightning.augment import PRESETS
from cifar_lightning.data import split_indices


def test_default_split_is_45k_5k_disjoint_and_complete():
    train, val = split_indices(50_000, 0.1, seed=42)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert len(set(train.tolist()) | set(val.tolist())) == 50_000
    assert not set(train.tolist()) & set(val.tolist())
    again, _ = split_indices(50_000, 0.1, seed=42)
    assert torch.equal(train, again)
    other, _ = split_indices(50_000, 0.1, seed=1)
    assert not torch.equal(train, other)


def test_setup_splits_share_no_image(tmp_path):
    dm = CIFAR10DataModule(source="synthetic", synthetic_size=(1000, 200), val_fraction=0.2, cache_dir=str(tmp_path))
    dm.setup("fit")
    assert (len(dm.train_labels), len(dm.val_labels), len(dm.test_labels)) == (800, 200, 200)
    assert not set(dm.train_idx.tolist()) & set(dm.val_idx.tolist())
    # the images themselves: no train image appears in val (synthetic images are all distinct)
    train = {bytes(x.numpy()) for x in dm.train_images}
    assert not any(bytes(x.numpy()) in train for x in dm.val_images)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (256, 3, 32, 32) and y.dtype == torch.int64


def test_subset_limits_training_images_only():
    dm = CIFAR10DataModule(source="synthetic", synthetic_size=(1000, 100), subset=64)
    dm.setup()
    assert len(dm.train_labels) == 64 and len(dm.val_labels) == 100


def test_synthetic_data_is_balanced_uint8():
    x, y, tx, ty = sources.make_synthetic(500, 100)
    assert x.dtype == np.uint8 and x.shape == (500, 32, 32, 3)
    assert np.bincount(y).tolist() == [50] * 10 and len(ty) == 100


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_shape_dtype_and_seeded_repeat(preset):
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    transform = build_transform(preset)
    torch.manual_seed(0)
    a = transform(image)
    torch.manual_seed(0)
    b = transform(image)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)


def test_normalization_and_resize():
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    out = build_transform("none", normalize="none", resize=64)(image)
    assert out.shape == (3, 64, 64)
    assert torch.allclose(out, torch.full_like(out, 128 / 255))
    normed = build_transform("none")(torch.zeros(3, 32, 32, dtype=torch.uint8))
    assert torch.allclose(normed[0], torch.full((32, 32), -0.4914 / 0.2470), atol=1e-4)


def test_folder_source_decodes_once(image_folder, tmp_path, monkeypatch):
    dm = CIFAR10DataModule(
        data_dir=str(image_folder), source="folder", cache_dir=str(tmp_path / "cache"), val_fraction=0.5
    )
    dm.setup()
    assert len(dm.train_labels) + len(dm.val_labels) == 60 and len(dm.test_labels) == 20
    assert sorted(torch.cat([dm.train_labels, dm.val_labels]).bincount().tolist()) == [6] * 10
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decode(files):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(sources, "_decode", no_decode)
    again = CIFAR10DataModule(
        data_dir=str(image_folder), source="folder", cache_dir=str(tmp_path / "cache"), val_fraction=0.5
    )
    again.setup()
    assert torch.equal(again.test_images, dm.test_images)


def test_pickle_source(pickle_dir, tmp_path):
    dm = CIFAR10DataModule(data_dir=str(pickle_dir), source="pickle", cache_dir=str(tmp_path / "c"), val_fraction=0.2)
    dm.setup()
    assert (len(dm.train_labels), len(dm.val_labels), len(dm.test_labels)) == (80, 20, 20)
    assert dm.test_images.shape == (20, 3, 32, 32) and dm.test_images.dtype == torch.uint8


def test_download_offline_gives_clear_error(tmp_path, cifar10_offline):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), source="download")
    with pytest.raises(CifarLightningError, match="could not download CIFAR-10.*source pickle"):
        dm.prepare_data()


def test_test_set_order_mixes_classes(image_folder, tmp_path):
    dm = CIFAR10DataModule(data_dir=str(image_folder), source="folder", cache_dir=str(tmp_path / "c"), val_fraction=0.5)
    dm.setup()
    first_batch = dm.test_labels[:10]
    assert len(first_batch.unique()) > 3  # not all airplanes (the folder lists classes in order)
    assert sorted(dm.test_labels.tolist()) == sorted(list(range(10)) * 2)

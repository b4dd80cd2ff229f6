"""The callbacks of the fast recipe: ProgressiveCrop switches the crop size by epoch; EMAWeights tests the average."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from cifar_lightning import (
    CIFAR10DataModule,
    CifarLightningError,
    CIFARSystem,
    EMAWeights,
    ProgressiveCrop,
    build_resnet,
)
from tests.helpers import cpu_trainer


def fake_trainer(datamodule, epoch, max_epochs=8):
    return SimpleNamespace(datamodule=datamodule, current_epoch=epoch, max_epochs=max_epochs)


def test_progressive_crop_is_small_for_the_first_fraction_then_full_size():
    dm = CIFAR10DataModule(source="synthetic", on_device=True)
    callback = ProgressiveCrop(size=24, fraction=0.75)
    sizes = []
    for epoch in range(8):
        callback.on_train_epoch_start(fake_trainer(dm, epoch), None)
        sizes.append(dm.batch_train_transform.crop_size)
        out = dm.batch_train_transform(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
        assert out.shape[-1] == (sizes[-1] or 32)
    assert sizes == [24] * 6 + [None] * 2


def test_progressive_crop_needs_the_on_device_path():
    with pytest.raises(CifarLightningError, match="on_device=True"):
        ProgressiveCrop().on_train_epoch_start(fake_trainer(CIFAR10DataModule(source="synthetic"), 0), None)
    with pytest.raises(CifarLightningError, match="crop preset"):
        dm = CIFAR10DataModule(source="synthetic", on_device=True, augment="flip")
        ProgressiveCrop().on_train_epoch_start(fake_trainer(dm, 0), None)
    with pytest.raises(CifarLightningError, match="fraction"):
        ProgressiveCrop(fraction=1.5)


def fit_and_test(tmp_path, ema):
    """Fit a tiny ResNet with ``ema`` and a best-checkpoint callback, then test the best checkpoint as the CLI does."""
    torch.manual_seed(0)
    dm = CIFAR10DataModule(source="synthetic", batch_size=16, num_workers=0, synthetic_size=(96, 16), on_device=True)
    system = CIFARSystem(build_resnet(width=8), lr=0.1, scheduler="none")
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc", mode="max")
    trainer = cpu_trainer(tmp_path, max_epochs=2, callbacks=[ema, best])
    trainer.fit(system, datamodule=dm)
    trainer.test(system, datamodule=dm, ckpt_path="best", verbose=False)
    saved = torch.load(best.best_model_path, weights_only=False)
    tested = system.state_dict()
    averaged = all(torch.equal(tested[k], v) for k, v in saved["state_dict"].items())
    raw = all(torch.equal(tested[k], v) for k, v in saved["current_model_state"].items())
    return averaged, raw


def test_ema_weights_are_what_the_test_measures(tmp_path):
    assert fit_and_test(tmp_path / "ours", EMAWeights(decay=0.9)) == (True, False)
    # Lightning's own callback puts the raw training weights back when test loads the checkpoint: why EMAWeights exists
    assert fit_and_test(tmp_path / "lightning", EMAWeightAveraging(decay=0.9)) == (False, True)


def test_ema_update_is_the_exponential_average_of_lightnings_callback():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ours, theirs = EMAWeights(decay=0.8), EMAWeightAveraging(decay=0.8)
    for callback in (ours, theirs):
        callback._average_model = torch.optim.swa_utils.AveragedModel(model, use_buffers=True,
                                                                     avg_fn=torch.optim.swa_utils.get_ema_avg_fn(0.8))
    theirs._average_model.update_parameters(model)  # Lightning's first update copies the weights: ours starts there
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.add_(5)
    ours._update(model)
    theirs._average_model.update_parameters(model)
    for a, b in zip(ours._average_model.module.state_dict().values(), theirs._average_model.module.state_dict().values(),
                    strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b)
    assert ours._average_model.module[1].num_batches_tracked == 5  # a counter is copied, not averaged
    assert torch.allclose(ours._average_model.module[0].bias, model[0].bias - 0.8)  # 0.8 old + 0.2 new (old = new - 1)
    with pytest.raises(CifarLightningError, match="decay"):
        EMAWeights(decay=1.0)

"""The callbacks of the fast recipe: ProgressiveCrop switches the crop size by epoch; EMAWeights validates, saves,
tests and resumes the average as Lightning's EMAWeightAveraging does, and tests a loaded checkpoint's average."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint

from cifar_lightning import (
    CIFAR10DataModule,
    CifarLightningError,
    CIFARSystem,
    EMAWeights,
    ProgressiveCrop,
    build_resnet,
    latest_checkpoint,
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


def tiny_fit(tmp_path, *callbacks, max_epochs=2, ckpt_path=None, seed=0):
    """A tiny ResNet fitted on synthetic data with ``callbacks``; returns (system, datamodule, trainer)."""
    torch.manual_seed(seed)
    dm = CIFAR10DataModule(source="synthetic", batch_size=16, num_workers=0, synthetic_size=(96, 16), on_device=True)
    system = CIFARSystem(build_resnet(width=8), lr=0.1, scheduler="none")
    trainer = cpu_trainer(tmp_path, max_epochs=max_epochs, callbacks=list(callbacks))
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt_path)
    return system, dm, trainer


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fit_and_test(tmp_path, ema):
    """Fit with ``ema`` and a best-checkpoint callback, then test the best checkpoint as the CLI does: whether the
    weights tested are the checkpoint's average (``state_dict``), and whether they are its raw weights."""
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc", mode="max")
    system, dm, trainer = tiny_fit(tmp_path, ema, best)
    trainer.test(system, datamodule=dm, ckpt_path="best", verbose=False)
    saved = torch.load(best.best_model_path, weights_only=False)
    tested = system.state_dict()
    averaged = all(torch.equal(tested[k], v) for k, v in saved["state_dict"].items())
    raw = all(torch.equal(tested[k], v) for k, v in saved["current_model_state"].items())
    return averaged, raw


def test_ema_keeps_the_raw_weights_training_ended_with(tmp_path):
    ema = EMAWeights(decay=0.5)
    averaged, _, _ = tiny_fit(tmp_path / "ema", ema)
    plain, _, _ = tiny_fit(tmp_path / "plain")  # the same seed and batches without the average
    assert same_tensors(ema.raw_state_dict, plain.state_dict())  # the average does not change training
    assert not same_tensors(averaged.state_dict(), plain.state_dict())  # the module holds the average after fit
    averaged.load_state_dict(ema.raw_state_dict)
    assert same_tensors(averaged.state_dict(), plain.state_dict())


def test_ema_weights_are_what_the_test_measures(tmp_path):
    assert fit_and_test(tmp_path / "ours", EMAWeights(decay=0.9)) == (True, False)
    # Lightning's own callback puts the raw training weights back when test loads the checkpoint: why EMAWeights exists
    assert fit_and_test(tmp_path / "lightning", EMAWeightAveraging(decay=0.9)) == (False, True)


def test_validation_and_checkpoints_use_the_average(tmp_path):
    """The val_loss logged during fit is the one of the checkpoint's ``state_dict`` (the average), not of its raw
    weights (``current_model_state``)."""
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", mode="min")
    system, dm, _ = tiny_fit(tmp_path, EMAWeights(decay=0.9), best)
    saved = torch.load(best.best_model_path, weights_only=False)
    assert not same_tensors(saved["state_dict"], saved["current_model_state"])
    plain = cpu_trainer(tmp_path / "plain")

    def val_loss(state):
        system.load_state_dict(state)
        return plain.validate(system, datamodule=dm, verbose=False)[0]["val_loss"]

    logged = best.best_model_score.item()
    assert val_loss(saved["state_dict"]) == pytest.approx(logged, rel=1e-5)
    assert val_loss(saved["current_model_state"]) != pytest.approx(logged, rel=1e-5)


class SaveAtTrainStart(Callback):
    """Saves a checkpoint when training starts, i.e. right after a resumed fit restored its checkpoint."""

    def __init__(self, path):
        self.path = path

    def on_train_start(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


def test_resuming_a_fit_restores_both_the_raw_weights_and_the_average(tmp_path):
    _, _, first = tiny_fit(
        tmp_path / "first", EMAWeights(decay=0.9), latest_checkpoint(tmp_path / "ckpt"), max_epochs=1
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert not same_tensors(saved["state_dict"], saved["current_model_state"])
    # a fresh system from another seed: whatever it holds after the restore came from the checkpoint
    tiny_fit(
        tmp_path / "resumed",
        EMAWeights(decay=0.9),
        SaveAtTrainStart(tmp_path / "restored.ckpt"),
        ckpt_path=str(last),
        seed=1,
    )
    restored = torch.load(tmp_path / "restored.ckpt", weights_only=False)
    assert same_tensors(restored["state_dict"], saved["state_dict"])  # the average
    assert same_tensors(restored["current_model_state"], saved["current_model_state"])  # the raw weights


def test_ema_decay_is_checked():
    with pytest.raises(CifarLightningError, match="decay"):
        EMAWeights(decay=1.0)

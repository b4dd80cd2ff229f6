"""last.ckpt must hold the last epoch, also when the monitored metric got worse (Lightning 2.6 changed save_last)."""

import torch

from cifar_lightning import CIFAR10DataModule, CIFARSystem, build_callbacks, build_resnet, load_system
from cifar_lightning.experiment import fit_experiment


def test_last_ckpt_is_the_final_epoch_even_without_improvement(tmp_path, one_thread):
    dm = CIFAR10DataModule(source="synthetic", batch_size=16, num_workers=0, synthetic_size=(64, 16), subset=32)
    # monitor a metric that never improves after epoch 0: the best checkpoint stays at epoch 0
    callbacks = build_callbacks(monitor="step", mode="min", lr_monitor=False)
    trainer, _ = fit_experiment(
        tmp_path / "run",
        lambda: CIFARSystem(build_resnet(width=4), scheduler="none"),
        dm,
        callbacks=callbacks,
        max_epochs=3,
        limit_val_batches=1,
    )
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    assert torch.load(folder / "last.ckpt", weights_only=False)["epoch"] == 2
    restored = load_system(str(folder / "last.ckpt")).state_dict()
    final = trainer.lightning_module.cpu().state_dict()
    assert all(torch.equal(final[k], restored[k]) for k in final)

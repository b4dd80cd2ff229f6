"""fit_experiment logs to its own folder, read_metrics reads it back, profile_breakdown splits the training time,
GradNormLogger measures what clipping does."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_lightning import CIFAR10DataModule, CIFARSystem, GradNormLogger, build_resnet
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.experiment import (
    PROFILE_PARTS,
    TTA_VARIANTS,
    fit_experiment,
    profile_breakdown,
    profile_table,
    read_metrics,
    validate_tta_variants,
)
from tests.helpers import cpu_trainer, nested_profile

TINY = dict(max_epochs=1, limit_train_batches=3, limit_val_batches=1, enable_checkpointing=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def datamodule():
    return CIFAR10DataModule(source="synthetic", batch_size=16, num_workers=0, synthetic_size=(160, 32))


def tiny_system():
    return CIFARSystem(build_resnet(width=4), lr=0.5, scheduler="none")


def test_fit_experiment_logs_metrics_in_a_fresh_folder(tmp_path, datamodule):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stale.txt").write_text("old")
    trainer, metrics = fit_experiment(tmp_path / "run", tiny_system, datamodule, **TINY)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert trainer.global_step == 3
    assert {"train_loss", "val_acc", "val_loss"} <= set(metrics.columns)
    assert metrics["val_acc"].notna().sum() == 1
    assert read_metrics(tmp_path / "run").equals(metrics)
    assert read_metrics(trainer).equals(metrics)


def test_fit_experiment_seeds_the_factory(tmp_path, datamodule):
    _, first = fit_experiment(tmp_path / "a", tiny_system, datamodule, **TINY)
    _, second = fit_experiment(tmp_path / "b", tiny_system, datamodule, **TINY)
    assert first["train_loss"].dropna().tolist() == pytest.approx(second["train_loss"].dropna().tolist())


def test_read_metrics_merges_train_and_val_rows_per_epoch(csv_run, tmp_path):
    log_dir = csv_run("a")
    per_epoch = read_metrics(log_dir, by="epoch")
    assert list(per_epoch.index) == [0, 1, 2]
    assert np.allclose(per_epoch["val_acc"], [0.0, 0.1, 0.2])
    assert np.allclose(per_epoch["train_loss"], [3.0, 7.0, 11.0])  # the last step of each epoch (4 steps/epoch)
    per_step = read_metrics(f"{log_dir}/metrics.csv", by="step")
    assert per_step["train_loss"].dropna().tolist() == [float(s) for s in range(12)]
    with pytest.raises(CifarLightningError, match="no metrics.csv"):
        read_metrics(tmp_path / "nowhere")


def test_read_metrics_groups_a_table_it_already_read(logged_rows):
    per_epoch = read_metrics(logged_rows, by="epoch")
    assert per_epoch.index.tolist() == [0, 1]
    assert per_epoch["val_acc"].tolist() == [0.4, 0.6]
    assert read_metrics(logged_rows) is logged_rows  # by=None: the rows as logged
    with pytest.raises(CifarLightningError, match="by must be"):
        read_metrics(logged_rows, by="batch")


def test_read_metrics_without_a_log_is_an_error(tmp_path):
    with pytest.raises(CifarLightningError, match="no metrics.csv"):
        read_metrics(tmp_path)


def test_profile_table_sorts_by_total_time():
    from lightning.pytorch.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    profiler.recorded_durations.update({"fast": [0.1, 0.1], "slow": [1.0, 2.0], "mid": [0.5]})
    table = profile_table(profiler, top=2)
    assert table["action"].tolist() == ["slow", "mid"]
    assert table["total_s"].tolist() == pytest.approx([3.0, 0.5])
    assert table["calls"].tolist() == [2, 1]
    assert profile_table(profiler, top=None)["action"].tolist() == ["slow", "mid", "fast"]


def test_profile_breakdown_counts_every_wait_for_data_and_adds_up_to_the_epochs():
    profiler = nested_profile()
    assert "[_TrainingEpochLoop].train_dataloader_next" not in profile_table(profiler, top=8)["action"].tolist()
    parts = profile_breakdown(profiler)["seconds"]
    assert parts["waiting for data"] == pytest.approx(0.01)  # summed before any cut, however short
    assert parts["forward (training_step)"] == pytest.approx(2.0) and parts["backward"] == pytest.approx(3.0)
    assert parts["rest of the batch (optimizer update, hooks)"] == pytest.approx(6.0 - 2.0 - 3.0)
    assert parts["rest of the epoch (validation, logging)"] == pytest.approx(10.0 - 0.01 - 6.0)
    assert parts.sum() == pytest.approx(10.0)  # nested timings counted once: the parts add up to the epoch
    assert profile_breakdown(profiler)["share"].sum() == pytest.approx(1.0)


def test_profile_breakdown_of_a_real_fit(tmp_path, datamodule):
    from lightning.pytorch.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    fit_experiment(tmp_path / "profile", tiny_system, datamodule, profiler=profiler, **{**TINY, "max_epochs": 2})
    breakdown = profile_breakdown(profiler)
    assert list(breakdown.index) == list(PROFILE_PARTS)
    assert (breakdown["seconds"] >= 0).all() and breakdown.loc["waiting for data", "seconds"] > 0
    epochs = float(np.sum(profiler.recorded_durations["run_training_epoch"]))
    assert breakdown["seconds"].sum() == pytest.approx(epochs)
    with pytest.raises(CifarLightningError, match="no training epoch"):
        profile_breakdown(SimpleProfiler())


class RecordingSGD(torch.optim.SGD):
    """SGD that records the 2-norm of the gradients it is about to apply: Lightning's closure (training step,
    backward, ``on_before_optimizer_step``, clipping) runs first, then the update reads ``.grad``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied = []

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.applied.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())
        super().step()
        return loss


class RecordedSystem(CIFARSystem):
    """CIFARSystem's parameter groups (no weight decay on BatchNorm and biases) and Nesterov SGD, in the
    multi-tensor implementation a GPU gets by default: it adds the momentum term into ``.grad`` in place for the
    group without weight decay, so ``.grad`` read after the step is not what the step applied."""

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}]
        return RecordingSGD(groups, lr=self.lr, momentum=0.9, nesterov=True, foreach=True)


@pytest.mark.parametrize("algorithm", [None, "norm", "value"])
def test_grad_norm_logger_logs_the_norm_the_optimizer_applies(tmp_path, datamodule, algorithm):
    limit = 0.01 if algorithm else None  # far below the gradients of a fresh network: every step is clipped
    system = RecordedSystem(build_resnet(width=4), lr=0.5, scheduler="none")
    _, metrics = fit_experiment(
        tmp_path / str(algorithm),
        system,
        datamodule,
        callbacks=[GradNormLogger()],
        gradient_clip_val=limit,
        gradient_clip_algorithm=algorithm,
        **TINY,
    )
    rows = metrics.dropna(subset=["grad_norm"])
    assert len(rows) == 3  # one per optimizer step
    before, after = rows["grad_norm"].to_numpy(), rows["grad_norm_clipped"].to_numpy()
    assert after == pytest.approx(system.optimizers().optimizer.applied, rel=1e-5)
    assert (before >= after * (1 - 1e-6)).all()
    if algorithm is None:
        assert after == pytest.approx(before, rel=1e-6)
    elif algorithm == "norm":
        assert (before > limit).all()
        assert (after <= limit * (1 + 1e-5)).all() and after == pytest.approx([limit] * 3, rel=1e-3)
    else:  # every entry capped at `limit`: the norm shrinks but stays above it
        assert (rows["grad_max_abs"].to_numpy() > limit).all()
        assert (after < before).all() and (after > limit).all()


def test_grad_norm_logger_leaves_a_module_s_own_clipping_unmeasured(tmp_path, datamodule):
    class OwnClipping(CIFARSystem):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm="value")

    with pytest.warns(UserWarning, match="overrides configure_gradient_clipping"):
        _, metrics = fit_experiment(
            tmp_path / "own",
            lambda: OwnClipping(build_resnet(width=4), lr=0.5, scheduler="none"),
            datamodule,
            callbacks=[GradNormLogger()],
            **TINY,
        )
    assert metrics["grad_norm"].notna().sum() == 3
    assert "grad_norm_clipped" not in metrics.columns


def test_grad_norm_logger_logs_once_per_accumulated_step(tmp_path, datamodule):
    _, metrics = fit_experiment(
        tmp_path / "acc", tiny_system, datamodule, callbacks=[GradNormLogger()], accumulate_grad_batches=3, **TINY
    )
    assert metrics["grad_norm"].notna().sum() == 1
    assert metrics["grad_norm_clipped"].notna().sum() == 1
    # without clipping the optimizer applies the gradient as it is
    assert metrics["grad_norm_clipped"].dropna().iloc[0] == pytest.approx(metrics["grad_norm"].dropna().iloc[0])


def test_quiet_logs_hides_info_lines_but_not_warnings():
    import logging

    from cifar_lightning.experiment import quiet_logs

    quiet_logs()
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not log.isEnabledFor(logging.INFO)
    assert log.isEnabledFor(logging.WARNING)


def test_lesson_trainer_logs_into_its_folder_and_accepts_overrides(tmp_path):
    from cifar_lightning.experiment import lesson_trainer

    trainer = lesson_trainer(tmp_path / "run", max_epochs=2, enable_model_summary=True)
    assert Path(trainer.logger.log_dir) == tmp_path / "run"
    assert trainer.max_epochs == 2 and trainer.log_every_n_steps == 1
    assert trainer.num_devices == 1


def test_device_name_names_the_gpu_or_cpu(monkeypatch):
    from cifar_lightning.experiment import device_name

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name() == "CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "NVIDIA H100")
    assert device_name() == "NVIDIA H100"


def test_tta_variants_score_the_checkpoint_and_restore_the_config(tmp_path):
    system = CIFARSystem(build_resnet(depth=18, width=8), tta_flip=True, tta_translate=0)
    data = CIFAR10DataModule(source="synthetic", synthetic_size=(256, 64), batch_size=64, num_workers=0)
    trainer = cpu_trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(system, datamodule=data)
    scores = validate_tta_variants(trainer, system, data, trainer.checkpoint_callback.best_model_path)
    assert set(scores) == set(TTA_VARIANTS) and all(0 <= s <= 1 for s in scores.values())
    assert (system.hparams.tta_flip, system.hparams.tta_translate) == (True, 0)

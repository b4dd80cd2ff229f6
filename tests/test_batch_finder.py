"""trace_batch_trials records what Lightning's batch-size finder ran; stop_reason says why it stopped."""

import lightning as L
import pytest
from lightning.pytorch.tuner import Tuner

from cifar_lightning import CIFAR10DataModule, CIFARSystem, build_resnet
from cifar_lightning.batch_finder import plot_batch_trials, stop_reason, trace_batch_trials
from tests.helpers import cpu_trainer


class OutOfMemoryAbove(CIFARSystem):
    """Fails every training step of a batch larger than ``limit`` with the error CUDA gives when memory runs out."""

    limit = 20

    def training_step(self, batch, batch_idx):
        if len(batch[1]) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().training_step(batch, batch_idx)


def find(tmp_path, system_class, mode, cap):
    L.seed_everything(0, verbose=False)
    system = system_class(build_resnet(width=8, blocks=[1, 1, 1, 1]), scheduler="none")
    dm = CIFAR10DataModule(source="synthetic", synthetic_size=(256, 32), batch_size=4, num_workers=0)
    trainer = cpu_trainer(tmp_path, max_epochs=1)
    with trace_batch_trials(system) as trials:
        answer = Tuner(trainer).scale_batch_size(
            system, datamodule=dm, mode=mode, init_val=4, max_trials=10, steps_per_trial=1, max_val=cap
        )
    return system, dm, trials, answer


@pytest.mark.parametrize("mode, expected", [("power", 32), ("binsearch", int(32 * 0.95))])
def test_the_cap_not_memory_gives_the_answer(tmp_path, mode, expected):
    system, dm, trials, answer = find(tmp_path, CIFARSystem, mode, cap=32)
    assert answer == expected == dm.batch_size
    assert [t["batch_size"] for t in trials] == [4, 8, 16]  # the cap itself is returned without being run
    assert all(t["steps_done"] == t["steps_started"] == 1 for t in trials)
    assert "cap" in stop_reason(trials, answer, cap=32)
    assert "on_train_batch_start" not in vars(system)  # the class's hooks are back
    ax = plot_batch_trials(trials, answer, cap=32)
    assert len(ax.patches) == 3


def test_a_failed_trial_is_recorded_and_bisected(tmp_path):
    _, _, trials, answer = find(tmp_path, OutOfMemoryAbove, "binsearch", cap=1024)
    sizes = [t["batch_size"] for t in trials]
    failed = [t["batch_size"] for t in trials if t["steps_done"] < t["steps_started"]]
    assert sizes[:4] == [4, 8, 16, 32] and 32 in failed
    assert all(size > OutOfMemoryAbove.limit for size in failed)
    assert answer == int(OutOfMemoryAbove.limit * 0.95)  # bisected to the limit, then the 5 % margin
    assert "memory" in stop_reason(trials, answer, cap=1024)

"""The CLI's DDP strategy, the buffer sync before evaluation, and configs/ddp.yaml, on CPU (two gloo processes)."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.strategies import DDPStrategy

from cifar_lightning import CIFAR10DataModule, CIFARSystem, EMAWeights, ProgressiveCrop, build_resnet
from cifar_lightning.cli import CifarCLI
from cifar_lightning.ddp import FlatGradients, LeanDDPStrategy, check_sigterm_every, sync_buffers
from cifar_lightning.errors import CifarLightningError

ROOT = Path(__file__).resolve().parents[1]


def cli_strategy(*strategy):
    args = ["--trainer.devices", "2", "--trainer.accelerator", "cpu", "--data.source", "synthetic", *strategy]
    return CifarCLI(CIFARSystem, CIFAR10DataModule, args=args, run=False).trainer.strategy


def test_cli_ddp_is_lean_and_lightnings_stays_reachable():
    lean = cli_strategy("--trainer.strategy", "ddp")
    assert isinstance(lean, LeanDDPStrategy) and lean.num_processes == 2 and lean.gradient_sync == "flat"
    assert lean._ddp_kwargs == {"broadcast_buffers": False, "gradient_as_bucket_view": True}
    plain = cli_strategy("--trainer.strategy", "ddp_find_unused_parameters_false")  # Lightning's own, same defaults
    assert type(plain) is DDPStrategy and "broadcast_buffers" not in plain._ddp_kwargs


def test_options_of_pytorchs_wrapper_need_bucketed_sync():
    """DDP-wrapper options with the flat sync would be silently ignored: a one-line error names them and the switch."""
    with pytest.raises(CifarLightningError) as error:
        LeanDDPStrategy(find_unused_parameters=True, bucket_cap_mb=50)
    assert "bucket_cap_mb, find_unused_parameters" in str(error.value) and "gradient_sync buckets" in str(error.value)
    assert LeanDDPStrategy(gradient_sync="buckets", find_unused_parameters=True)._ddp_kwargs["find_unused_parameters"]
    assert LeanDDPStrategy(find_unused_parameters=False, ddp_comm_hook=None).gradient_sync == "flat"  # defaults: fine
    bad = subprocess.run([sys.executable, "-m", "cifar_lightning", "fit", "--trainer.accelerator", "cpu",
                          "--trainer.devices", "2", "--data.source", "synthetic", "--trainer.strategy",
                          "cifar_lightning.ddp.LeanDDPStrategy", "--trainer.strategy.gradient_sync", "bucket"],
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "unknown gradient_sync 'bucket': choose one of flat, buckets" in bad.stderr


def two_processes(worker) -> dict:
    """Run ``worker(rank, results)`` in two processes joined in a gloo group; what they put in ``results``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_in_gloo_group, args=(port, worker, results), nprocs=2)
    return dict(results)


def _in_gloo_group(rank: int, port: int, worker, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        worker(rank, results)
    finally:
        dist.destroy_process_group()


def _flat_worker(rank: int, results):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(2, 3)).to(memory_format=torch.channels_last)
    model[1].double()  # a second dtype: a second buffer
    model[0].bias.requires_grad_(False)  # frozen: no gradient expected, none averaged
    flat = FlatGradients(model.named_parameters())
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(rank), dtype=p.dtype).contiguous(
                memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)
    results[rank] = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    flat.average(world_size=2)
    results[rank + 2] = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    results[rank + 4] = model[0].weight.grad.is_contiguous(memory_format=torch.channels_last) and all(
        view.stride() == p.stride() for _, params, _, views in flat.groups for view, p in zip(views, params, strict=True))
    model[1].weight.grad = None
    try:
        flat.average(world_size=2)
    except CifarLightningError as error:
        results[rank + 6] = str(error)


def test_flat_gradients_are_every_processs_mean_in_place():
    """One all-reduce per dtype averages each trainable parameter's gradient across the processes, in the gradient's
    own tensor and memory layout (the buffer's views have the gradients' strides: the GPU's fused copies need them);
    a missing gradient is an error that names the parameter and the way out."""
    results = two_processes(_flat_worker)
    before, after = (results[0], results[1]), (results[2], results[3])
    assert set(after[0]) == {"0.weight", "1.weight", "1.bias"}
    for name in after[0]:
        torch.testing.assert_close(after[0][name], (before[0][name] + before[1][name]) / 2)
        assert torch.equal(after[0][name], after[1][name])
    assert after[0]["1.weight"].dtype == torch.float64 and results[4] and results[5]
    assert "'1.weight' got no gradient" in results[6] and "gradient_sync buckets" in results[6]


def test_no_all_reduce_while_lightning_accumulates_gradients():
    """With ``accumulate_grad_batches`` Lightning runs the non-stepping backward passes inside
    ``block_backward_sync``: those sum locally, and only the last backward before the step averages."""
    lean = cli_strategy("--trainer.strategy", "ddp")
    averaged = []
    lean._flat_gradients = type("Recorder", (), {"average": lambda self, world_size: averaged.append(world_size)})()
    with lean.block_backward_sync():
        lean.post_backward(torch.tensor(0.0))
    assert averaged == []
    lean.post_backward(torch.tensor(0.0))
    assert averaged == [2]


def _sync_worker(rank: int, results):
    system = CIFARSystem(build_resnet(depth=18, width=8))
    bn = next(m for m in system.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(float(rank + 1))  # each process's own statistics, as after training without broadcasts
    sync_buffers(system)
    results[rank] = bn.running_mean.clone()


def test_sync_buffers_gives_every_process_rank_zeros_statistics():
    results = two_processes(_sync_worker)
    assert torch.equal(results[0], results[1]) and torch.all(results[1] == 1.0)


def test_sync_buffers_is_a_no_op_outside_ddp():
    system = CIFARSystem(build_resnet(depth=18, width=8))
    before = [b.clone() for b in system.buffers()]
    sync_buffers(system)
    assert all(torch.equal(a, b) for a, b in zip(before, system.buffers(), strict=True))


def test_sigterm_broadcast_runs_every_nth_step_on_every_rank_alike():
    calls = []
    loop = type("Loop", (), {"_broadcast_sigterm_tensor": lambda self: calls.append(trainer.global_step)})()
    trainer = type("Trainer", (), {"global_step": 0})()
    check_sigterm_every(loop, trainer, 50)
    for step in range(120):
        trainer.global_step = step
        loop._broadcast_sigterm_tensor()
    assert calls == [0, 50, 100]


def test_lightning_still_has_the_sigterm_broadcast_that_the_strategy_thins_out(tmp_path):
    from tests.helpers import cpu_trainer

    # a Lightning release without it would make check_sigterm_every a silent no-op: this test says so instead
    assert callable(getattr(cpu_trainer(tmp_path).fit_loop.epoch_loop, "_broadcast_sigterm_tensor", None))


def test_ddp_config_on_top_of_full_changes_only_its_own_settings():
    """configs/ddp.yaml after configs/full.yaml: two GPUs, the scaled lr, more epochs, a shorter EMA; the rest of the
    recipe (crops, progress bar, batch per process, backbone) is full.yaml's."""
    def parsed(*configs):
        args = [arg for c in configs for arg in ("--config", str(ROOT / c))]
        cli = CifarCLI(CIFARSystem, CIFAR10DataModule, run=False, args=[
            *args, "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--data.source", "synthetic"])
        callbacks = {type(cb).__name__: cb for cb in cli.trainer.callbacks}
        return cli, callbacks

    one, one_cbs = parsed("configs/full.yaml")
    two, two_cbs = parsed("configs/full.yaml", "configs/ddp.yaml")
    assert isinstance(two.trainer.strategy, LeanDDPStrategy) and two.trainer.num_devices == 2
    assert two.model.hparams.lr == 2 * one.model.hparams.lr
    assert two.trainer.max_epochs > one.trainer.max_epochs
    assert two.trainer.check_val_every_n_epoch == two.trainer.max_epochs  # still one validation, after the last epoch
    assert two.datamodule.hparams.batch_size == one.datamodule.hparams.batch_size  # per process: the global batch doubles
    assert two_cbs["EMAWeights"].decay < one_cbs["EMAWeights"].decay
    for name in ("ProgressiveCrop", "TQDMProgressBar"):
        assert name in two_cbs
    crop_one, crop_two = one_cbs["ProgressiveCrop"], two_cbs["ProgressiveCrop"]
    assert isinstance(crop_two, ProgressiveCrop) and isinstance(two_cbs["EMAWeights"], EMAWeights)
    assert (crop_two.size, crop_two.fraction) == (crop_one.size, crop_one.fraction)


def ddp_fit(root: Path, *args: str, launcher: tuple[str, ...] = (sys.executable,)) -> subprocess.CompletedProcess:
    """configs/full.yaml + configs/ddp.yaml through the CLI on a CPU: two gloo processes, tiny synthetic data.
    ``launcher`` starts the command (default: python, and Lightning starts the second process in ``fit``)."""
    cmd = [*launcher, "-m", "cifar_lightning", "fit", "--config", str(ROOT / "configs/full.yaml"),
           "--config", str(ROOT / "configs/ddp.yaml"), "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
           "--data.source", "synthetic", "--data.synthetic_size", "[512, 128]", "--model.backbone.width", "8",
           "--data.batch_size", "32", "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "2",
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *args]
    root.mkdir(exist_ok=True)
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_ddp_config_trains_two_processes_through_the_cli(tmp_path):
    """The README's two-GPU command, on a CPU: the test after fit."""
    done = ddp_fit(tmp_path)
    assert "MEMBER: 2/2" in done.stdout + done.stderr and "test accuracy:" in done.stdout


def test_torchrun_starts_both_processes_and_the_cli_trains_with_them(tmp_path):
    """Lesson 08's torchrun command on one machine: torchrun starts both processes, which join, train and test."""
    done = ddp_fit(tmp_path, launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc-per-node=2"))
    out = done.stdout + done.stderr
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out and "test accuracy:" in done.stdout


def test_flat_gradient_sync_trains_the_same_weights_as_pytorchs_ddp(tmp_path):
    """Two epochs with one flat all-reduce per step end with the weights (and EMA, BatchNorm statistics) of PyTorch's
    bucketed DDP: the same averaged gradients, only fewer host calls to get them."""
    def weights(sync: str) -> dict:
        ddp_fit(tmp_path / sync, "--trainer.strategy", "cifar_lightning.ddp.LeanDDPStrategy",
                "--trainer.strategy.gradient_sync", sync, "--test_after_fit", "false")
        (ckpt,) = (tmp_path / sync).rglob("last.ckpt")
        return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]

    flat, buckets = weights("flat"), weights("buckets")
    assert flat.keys() == buckets.keys()
    for name in flat:
        torch.testing.assert_close(flat[name], buckets[name], msg=name)


def test_garbage_collector_frozen_while_training_only():
    """``LeanDDPStrategy`` freezes the collector's objects when training starts (its full collections stop walking
    them during the steps) and unfreezes them at teardown, which also follows a failed fit; ``freeze_gc=False``
    leaves the collector alone."""
    gc.unfreeze()
    lean = cli_strategy("--trainer.strategy", "ddp")
    lean.on_train_start()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        lean.teardown()
    assert gc.get_freeze_count() == 0
    untouched = cli_strategy("--trainer.strategy", "cifar_lightning.ddp.LeanDDPStrategy",
                             "--trainer.strategy.freeze_gc", "false")
    untouched.on_train_start()
    assert gc.get_freeze_count() == 0
    untouched.teardown()

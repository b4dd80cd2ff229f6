"""Multi-GPU on Lightning's own DDPStrategy, on a CPU: two gloo processes started by Lightning or by torchrun (one
machine or two "nodes" on localhost), configs/ddp.yaml, and the global-batch arithmetic."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from cifar_lightning import EMAWeights, ProgressiveCrop, WeightDigest
from cifar_lightning.callbacks import tensor_digest
from cifar_lightning.cli import build_cli
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.global_batch import describe, global_batch_size, linear_scaled_lr

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--trainer.accelerator",
    "cpu",
    "--data.source",
    "synthetic",
    "--data.synthetic_size",
    "[256, 64]",
    "--model.backbone.width",
    "8",
    "--data.batch_size",
    "32",
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--data.num_workers",
    "0",
    "--trainer.callbacks+",
    "tests.helpers.SaveRankWeights",
]


def test_cli_ddp_is_lightnings_ddp_strategy():
    cli = build_cli(
        [
            "--trainer.devices",
            "2",
            "--trainer.accelerator",
            "cpu",
            "--data.source",
            "synthetic",
            "--trainer.strategy",
            "ddp",
        ],
        run=False,
    )
    assert type(cli.trainer.strategy) is DDPStrategy and cli.trainer.strategy.num_processes == 2


def test_ddp_config_on_top_of_full_changes_only_its_own_settings():
    """configs/ddp.yaml after configs/full.yaml: two GPUs with Lightning's DDP, the scaled lr, more epochs, a shorter
    EMA; the rest of the recipe (crops, progress bar, batch per process, backbone) is full.yaml's."""

    def parsed(*configs):
        args = [arg for c in configs for arg in ("--config", str(ROOT / c))]
        cli = build_cli(
            [*args, "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--data.source", "synthetic"],
            run=False,
        )
        return cli, {type(cb).__name__: cb for cb in cli.trainer.callbacks}

    one, one_cbs = parsed("configs/full.yaml")
    two, two_cbs = parsed("configs/full.yaml", "configs/ddp.yaml")
    assert type(two.trainer.strategy) is DDPStrategy and two.trainer.num_devices == 2
    batch = two.datamodule.hparams.batch_size
    assert batch == one.datamodule.hparams.batch_size  # per process: the global batch doubles
    assert two.model.hparams.lr == linear_scaled_lr(one.model.hparams.lr, batch, global_batch_size(batch, devices=2))
    assert two.trainer.max_epochs > one.trainer.max_epochs
    assert two.trainer.check_val_every_n_epoch == two.trainer.max_epochs  # one validation, after the last epoch
    assert two_cbs["EMAWeights"].decay < one_cbs["EMAWeights"].decay
    assert isinstance(two_cbs["ProgressiveCrop"], ProgressiveCrop) and isinstance(two_cbs["EMAWeights"], EMAWeights)
    assert "TQDMProgressBar" in two_cbs
    crop_one, crop_two = one_cbs["ProgressiveCrop"], two_cbs["ProgressiveCrop"]
    assert (crop_two.size, crop_two.fraction) == (crop_one.size, crop_one.fraction)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_command(root: Path, *args: str, launcher: tuple[str, ...] = (sys.executable,)) -> list[str]:
    """``python -m cifar_lightning fit`` on configs/quick.yaml with tiny synthetic data, writing under ``root``;
    ``launcher`` starts it (default: python, and Lightning starts the other processes inside ``fit``)."""
    return [
        *launcher,
        "-m",
        "cifar_lightning",
        "fit",
        "--config",
        str(ROOT / "configs/quick.yaml"),
        *TINY,
        "--trainer.default_root_dir",
        str(root),
        *args,
    ]


def run_all(commands: list[list[str]], root: Path) -> list[subprocess.CompletedProcess]:
    """Start every command at once (several "nodes" must meet at the rendezvous), wait for all, check each."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [
        subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        for cmd in commands
    ]
    done = []
    for proc, cmd in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return done


def rank_weights(root: Path) -> list[dict]:
    return [torch.load(root / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def assert_same_ddp_weights(ranks: list[dict]) -> None:
    """Both processes ran Lightning's DDPStrategy in a world of two and end with bit-identical parameters (DDP
    averages the gradients, so every process takes the same optimizer step)."""
    for saved in ranks:
        assert saved["strategy"] == "lightning.pytorch.strategies.ddp.DDPStrategy" and saved["world_size"] == 2
    first, second = (saved["parameters"] for saved in ranks)
    assert first.keys() == second.keys() and len(first) > 10
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_two_process_fit_through_the_cli_with_lightnings_ddp(tmp_path):
    """The README's command on a CPU: ``--trainer.devices 2 --trainer.strategy ddp``, Lightning's launcher."""
    (done,) = run_all(
        [
            cli_command(
                tmp_path,
                "--trainer.devices",
                "2",
                "--trainer.strategy",
                "ddp",
                "--trainer.callbacks+",
                "cifar_lightning.WeightDigest",
            )
        ],
        tmp_path,
    )
    assert_same_ddp_weights(rank_weights(tmp_path))
    # WeightDigest (lesson 08): one line per process, on the pipe both share, with the same parameter digest
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    ddp = "lightning.pytorch.strategies.ddp.DDPStrategy"
    assert [line.split(": ")[0] for line in lines] == [f"rank 0/2 {ddp}", f"rank 1/2 {ddp}"]
    assert len({line.split("parameters ")[1].split(" | ")[0] for line in lines}) == 1
    assert "global batch 64 = 32 per process x 2 processes per node x 1 node" in done.stdout
    assert "test accuracy:" in done.stdout


def test_two_nodes_on_localhost_through_torchrun(tmp_path):
    """Two torchrun launchers, one per "node" (``--nnodes 2 --node-rank 0/1``, one process each), meet at a
    rendezvous on localhost; the CLI trains with ``--trainer.num_nodes 2`` and tests the best checkpoint."""
    port = free_port()
    commands = [
        cli_command(
            tmp_path,
            "--trainer.devices",
            "1",
            "--trainer.num_nodes",
            "2",
            "--trainer.strategy",
            "ddp",
            launcher=(
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(node),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "two-nodes",
            ),
        )
        for node in (0, 1)
    ]
    done = run_all(commands, tmp_path)
    assert_same_ddp_weights(rank_weights(tmp_path))
    out = "".join(proc.stdout for proc in done)
    assert "global batch 64 = 32 per process x 1 process per node x 2 nodes" in out and "test accuracy:" in out


def test_global_batch_arithmetic():
    assert global_batch_size(1024) == 1024
    assert global_batch_size(1024, devices=2) == 2048
    assert global_batch_size(256, devices=8, num_nodes=4, accumulate_grad_batches=2) == 16384
    assert linear_scaled_lr(0.6, 1024, 2048) == pytest.approx(1.2)
    assert linear_scaled_lr(0.1, 256, 64) == pytest.approx(0.025)
    with pytest.raises(CifarLightningError, match="num_nodes must be a whole number >= 1"):
        global_batch_size(32, num_nodes=0)
    trainer = type("T", (), {"num_devices": 4, "num_nodes": 2, "accumulate_grad_batches": 3})()
    assert describe(trainer, 128) == (
        "global batch 3072 = 128 per process x 4 processes per node x 2 nodes x 3 accumulated batches"
    )


def test_tensor_digest_tells_bit_identical_tensors_apart():
    a = [torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.tensor(3)]
    same = [t.clone() for t in a]
    assert tensor_digest(a) == tensor_digest(same) and len(tensor_digest(a)) == 12
    same[0][1, 2] = torch.nextafter(same[0][1, 2], torch.tensor(100.0))  # one float32 step: a different bit
    assert tensor_digest(a) != tensor_digest(same)
    assert tensor_digest(a) != tensor_digest(a[::-1])  # the order counts
    assert tensor_digest([torch.ones(3, dtype=torch.bfloat16)]) != tensor_digest([torch.ones(3)])


def test_weight_digest_prints_rank_strategy_and_digests(capsys):
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    trainer = SimpleNamespace(global_rank=1, world_size=2, strategy=DDPStrategy())
    WeightDigest().on_fit_end(trainer, module)
    assert capsys.readouterr().out == (
        f"rank 1/2 lightning.pytorch.strategies.ddp.DDPStrategy: parameters {tensor_digest(module.parameters())} | "
        f"buffers {tensor_digest(module.buffers())}\n"
    )

"""``precision: auto`` follows the hardware: the GPU's compute capability is faked, so every case runs on a CPU."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from cifar_lightning.cli import build_cli
from cifar_lightning.precision import autocast_dtype, pick_precision
from tests.test_cli import SMALL

ROOT = Path(__file__).resolve().parents[1]

# (name, compute capability, the precision it gets)
GPUS = [
    ("V100", (7, 0), "16-mixed"),
    ("T4 (Colab)", (7, 5), "16-mixed"),
    ("A100", (8, 0), "bf16-mixed"),
    ("L4", (8, 9), "bf16-mixed"),
    ("H100", (9, 0), "bf16-mixed"),
]


def fake_gpu(monkeypatch, capability):
    """PyTorch, and so Lightning, sees one CUDA GPU of this compute capability (nothing may run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # the GPU configs set it


def no_gpu(monkeypatch):
    """PyTorch, and so Lightning, sees no CUDA GPU, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda", CUDAAccelerator()])
@pytest.mark.parametrize("name,capability,expected", GPUS, ids=[gpu[0] for gpu in GPUS])
def test_bf16_only_where_the_gpu_has_it_natively(monkeypatch, accelerator, name, capability, expected):
    fake_gpu(monkeypatch, capability)
    assert pick_precision(accelerator) == expected


@pytest.mark.parametrize("accelerator", ["cpu", "mps", CPUAccelerator()])
def test_full_precision_off_the_gpu_even_where_there_is_one(monkeypatch, accelerator):
    fake_gpu(monkeypatch, (9, 0))
    assert pick_precision(accelerator) == "32-true"


def test_full_precision_without_a_gpu(monkeypatch):
    no_gpu(monkeypatch)
    assert pick_precision() == "32-true"
    assert pick_precision("gpu") == "32-true"


def gpu_cli(tmp_path, config, *args):
    return build_cli(
        [
            "--config",
            str(ROOT / config),
            "--data.source",
            "synthetic",
            "--model.backbone.width",
            "8",
            *args,
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
    )


@pytest.mark.parametrize("config", ["configs/full.yaml", "configs/long.yaml"])
@pytest.mark.parametrize("name,capability,expected", [GPUS[1], GPUS[4]], ids=["T4 (Colab)", "H100"])
def test_gpu_configs_take_the_gpus_precision(monkeypatch, tmp_path, config, name, capability, expected):
    fake_gpu(monkeypatch, capability)
    trainer = gpu_cli(tmp_path, config).trainer
    assert isinstance(trainer.accelerator, CUDAAccelerator)
    assert trainer.precision == expected
    assert (trainer.scaler is not None) == (expected == "16-mixed")  # float16 gradients are scaled


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--trainer.accelerator", "cpu"], "32-true"),  # auto follows the accelerator the run asks for
        (["--trainer.precision", "32-true"], "32-true"),  # a precision given by name is kept
        (["--trainer.precision", "bf16-mixed"], "bf16-mixed"),
    ],
)
def test_on_a_t4_the_run_can_still_choose(monkeypatch, tmp_path, args, expected):
    fake_gpu(monkeypatch, (7, 5))
    assert gpu_cli(tmp_path, "configs/full.yaml", *args).trainer.precision == expected


def test_auto_fits_on_a_cpu(monkeypatch, tmp_path):
    no_gpu(monkeypatch)
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "configs/quick.yaml"),
            *SMALL,
            "--trainer.precision",
            "auto",
            "--trainer.fast_dev_run",
            "1",
            "--test_after_fit",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert cli.trainer.precision == "32-true"
    assert cli.trainer.global_step == 1


def test_autocast_dtype_follows_the_trainer_precision():
    assert autocast_dtype("bf16-mixed") is torch.bfloat16 and autocast_dtype("16-mixed") is torch.float16
    assert autocast_dtype("32-true") is None

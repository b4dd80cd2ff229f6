"""The command line: a real fit, and one actionable line with exit status 2 for each kind of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_lightning.cli import build_cli, main
from tests.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--data.source",
    "synthetic",
    "--data.synthetic_size",
    "[256, 64]",
    "--data.num_workers",
    "0",
    "--model.backbone.width",
    "8",
    "--trainer.enable_progress_bar",
    "false",
]


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "cifar_lightning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_fit_fast_dev_run_then_tests(tmp_path):
    result = run_cli(
        "fit",
        "--config",
        str(ROOT / "configs/quick.yaml"),
        *SMALL,
        "--trainer.fast_dev_run",
        "2",
        "--trainer.default_root_dir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy:" in result.stdout


def test_fit_writes_best_and_last_checkpoints(tmp_path):
    main(
        [
            "fit",
            *SMALL,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    ckpts = {p.name for p in tmp_path.rglob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(name.startswith("best-") for name in ckpts)


# configs/full.yaml and configs/long.yaml on a CPU (precision: auto makes it 32-true): their TQDMProgressBar
# (refresh_rate 20) stays in trainer.callbacks
GPU_CONFIG_ON_CPU = ["--trainer.accelerator", "cpu"]


@pytest.mark.parametrize("config", ["configs/full.yaml", "configs/long.yaml"])
def test_gpu_configs_keep_their_progress_bar_unless_disabled(tmp_path, config):
    def progress_bar(*args):
        cli = build_cli(
            ["--config", str(ROOT / config), *GPU_CONFIG_ON_CPU, *args, "--trainer.default_root_dir", str(tmp_path)],
            run=False,
        )
        return cli.trainer.progress_bar_callback

    assert progress_bar().refresh_rate == 20
    assert progress_bar("--trainer.enable_progress_bar", "false") is None


def test_full_config_runs_without_progress_bar(capsys, tmp_path):
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/full.yaml"),
            *GPU_CONFIG_ON_CPU,
            *SMALL,
            "--trainer.fast_dev_run",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert "test accuracy:" in capsys.readouterr().out


def fails_with(capsys, args, pattern):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and pattern in err[-1], err[-3:]
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    "option,value,pattern",
    [
        ("--model.backbone.depth", "50", "unknown depth 50: choose one of 18, 34"),
        ("--model.optimizer", "rmsprop", "unknown optimizer 'rmsprop'"),
        ("--model.scheduler", "step", "unknown scheduler 'step'"),
        ("--data.augment", "mixup", "unknown augmentation preset 'mixup'"),
        ("--data.batch_size", "0", "batch_size must be positive"),
        ("--data.batch_size", "-8", "batch_size must be positive"),
        ("--model.lr", "0", "lr must be positive"),
        ("--model.lr", "-0.1", "lr must be positive"),
        ("--data.val_fraction", "1.5", "val_fraction must be between 0 and 1"),
        ("--data.val_fraction", "0", "val_fraction must be between 0 and 1"),
        ("--data.source", "imagenet", "unknown data source 'imagenet'"),
        ("--trainer.precision", "fast", '"trainer.precision"'),
    ],
)
def test_bad_arguments(capsys, tmp_path, option, value, pattern):
    fails_with(capsys, ["fit", *SMALL, option, value, "--trainer.default_root_dir", str(tmp_path)], pattern)


def folder_with(folder, name):
    folder.mkdir()
    (folder / name).write_text("not CIFAR-10")
    return folder


@pytest.mark.parametrize(
    "make,source,pattern",
    [
        (lambda p: p / "missing", "folder", "does not exist"),
        (lambda p: p / "missing", "pickle", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "folder", "is empty"),
        (
            lambda p: write_image_folder(p / "wrong", classes=("cat", "dog", "cow"), per_class=(1, 1)),
            "folder",
            "wrong class folders",
        ),
        (lambda p: folder_with(p / "junk", "readme.txt"), "pickle", "no CIFAR-10 batches"),
    ],
)
def test_bad_data_dirs(capsys, tmp_path, make, source, pattern):
    data_dir = make(tmp_path)
    fails_with(
        capsys,
        [
            "fit",
            *SMALL,
            "--data.source",
            source,
            "--data.data_dir",
            str(data_dir),
            "--data.cache_dir",
            str(tmp_path / "cache"),
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ],
        pattern,
    )
    assert not list((tmp_path / "run").rglob("*.ckpt"))  # nothing half-written


def test_corrupt_image_and_pickle(capsys, tmp_path, image_folder, pickle_dir):
    (image_folder / "train" / "cat" / "0000.png").write_bytes(b"not a png")
    fails_with(
        capsys,
        [
            "fit",
            *SMALL,
            "--data.source",
            "folder",
            "--data.data_dir",
            str(image_folder),
            "--data.cache_dir",
            str(tmp_path / "c1"),
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        "cannot read image",
    )
    (pickle_dir / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80garbage")
    fails_with(
        capsys,
        [
            "fit",
            *SMALL,
            "--data.source",
            "pickle",
            "--data.data_dir",
            str(pickle_dir),
            "--data.cache_dir",
            str(tmp_path / "c2"),
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        "corrupt CIFAR-10 batch",
    )


def test_offline_download(capsys, tmp_path, cifar10_offline):
    fails_with(
        capsys,
        [
            "fit",
            "--data.source",
            "download",
            "--data.data_dir",
            str(tmp_path / "d"),
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        "could not download CIFAR-10",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_missing_accelerator(capsys, tmp_path):
    fails_with(
        capsys,
        ["fit", *SMALL, "--trainer.accelerator", "gpu", "--trainer.default_root_dir", str(tmp_path)],
        "this machine offers: cpu; use --trainer.accelerator auto",
    )


def test_bad_input_exits_2_from_the_shell(tmp_path):
    result = run_cli("fit", *SMALL, "--data.batch_size", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: batch_size must be positive, got 0"

"""Resume that really resumes: a fit killed mid-epoch and resumed with ``--ckpt_path last`` ends bit-identical to an
uninterrupted one; ``last`` with nothing to resume, and checkpoints that cannot be used, end in one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cifar_lightning import CifarResNet, CIFARSystem
from cifar_lightning.cli import build_cli, main
from cifar_lightning.resume import resolve
from tests.test_cli import SMALL, fails_with

ROOT = Path(__file__).resolve().parents[1]
# Deterministic CPU fits of 3 epochs (7 steps each) on tiny synthetic data; one thread so every run adds up alike.
EXACT = [
    *SMALL,
    "--data.batch_size",
    "32",
    "--trainer.max_epochs",
    "3",
    "--trainer.deterministic",
    "true",
    "--trainer.enable_model_summary",
    "false",
]
PATHS = {  # the CPU DataLoader (worker processes, per-sample transforms) and the GPU-resident loader's path, on the CPU
    "cpu_loader": ["--data.num_workers", "2", "--data.augment", "flip_crop_rotate"],
    "on_device": ["--data.on_device", "true", "--data.augment", "flip_crop_rotate"],
}
# configs/full.yaml's callbacks: 24-pixel crops for the first epochs, an EMA of the weights (its state is checkpointed)
FULL_RECIPE = """trainer:
  callbacks:
    - class_path: cifar_lightning.ProgressiveCrop
      init_args: {size: 24, fraction: 0.5}
    - class_path: cifar_lightning.EMAWeights
      init_args: {decay: 0.9}
"""


def start(*args, cwd) -> subprocess.Popen:
    """``python -m cifar_lightning ARGS`` in a process group of its own (signals reach its loader workers too)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_lightning", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def stall_config(folder: Path, epoch: int, batch: int = 3, seconds: float = 300) -> tuple[Path, Path]:
    """A config adding :class:`tests.helpers.StallAt` (and the marker file it touches)."""
    marker, config = folder / "stalled", folder / "stall.yaml"
    config.write_text(
        f"trainer:\n  callbacks+:\n    - class_path: tests.helpers.StallAt\n      init_args:\n"
        f"        epoch: {epoch}\n        batch: {batch}\n        marker: {marker}\n"
        f"        seconds: {seconds}\n"
    )
    return config, marker


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, f"the fit ended before it stalled: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the fit did not reach the stall point in time"
        time.sleep(0.2)


def last_ckpt(root: Path) -> dict:
    return torch.load(root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)


def epoch_metrics(log_dir: Path, epoch: int) -> dict:
    """What a run logged for ``epoch`` (its CSVLogger's metrics.csv)."""
    rows = pd.read_csv(log_dir / "metrics.csv")
    rows = rows[rows["epoch"] == epoch]
    return {name: rows[name].dropna().tolist() for name in ("train_acc", "val_acc", "val_loss")}


def printed_accuracy(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("test accuracy:")).split()[2]


def assert_same_tensors(a, b, where="") -> None:
    """Every tensor in two nested checkpoint structures is equal (bit for bit), and so is everything else."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}/{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("path,stall_epoch", [("cpu_loader", 1), ("on_device", 2)])
def test_killed_fit_resumes_bit_identical(tmp_path, path, stall_epoch):
    args = [*EXACT, *PATHS[path]]
    if path == "on_device":
        (tmp_path / "recipe.yaml").write_text(FULL_RECIPE)
        args += ["--config", str(tmp_path / "recipe.yaml")]
    config, marker = stall_config(tmp_path, epoch=stall_epoch)
    whole = start("fit", *args, "--trainer.default_root_dir", str(tmp_path / "whole"), cwd=tmp_path)
    cut = start(
        "fit", *args, "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "cut"), cwd=tmp_path
    )
    wait_for(marker, cut)
    os.killpg(cut.pid, signal.SIGKILL)  # in the middle of epoch `stall_epoch`, its predecessor checkpointed
    assert finish(cut)[0] == -signal.SIGKILL
    assert last_ckpt(tmp_path / "cut")["epoch"] == stall_epoch - 1

    resumed = finish(
        start("fit", *args, "--trainer.default_root_dir", str(tmp_path / "cut"), "--ckpt_path", "last", cwd=tmp_path)
    )
    uninterrupted = finish(whole)
    assert resumed[0] == 0 and uninterrupted[0] == 0, (resumed[2][-2000:], uninterrupted[2][-2000:])
    a, b = last_ckpt(tmp_path / "whole"), last_ckpt(tmp_path / "cut")
    assert a["epoch"] == b["epoch"] == 2
    for part in ("state_dict", "optimizer_states", "lr_schedulers", "loops"):
        assert_same_tensors(a[part], b[part], part)
    best = [
        (s["best_model_score"], Path(s["best_model_path"]).name)
        for ckpt in (a, b)
        for key, s in ckpt["callbacks"].items()
        if key.startswith("ModelCheckpoint") and s["monitor"]
    ]
    assert best[0] == best[1]  # the same best epoch with the same score, in the folder the run started in
    assert printed_accuracy(resumed[1]) == printed_accuracy(uninterrupted[1])
    # the resumed part logs to a version folder of its own: its last epoch's metrics are the uninterrupted run's
    logs = tmp_path / "whole" / "lightning_logs"
    assert epoch_metrics(logs / "version_0", 2) == epoch_metrics(tmp_path / "cut" / "lightning_logs" / "version_1", 2)


def test_last_and_best_name_the_newest_runs_checkpoints(tmp_path, one_thread):
    root = tmp_path / "runs"
    short = [
        *SMALL,
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--test_after_fit",
        "false",
        "--trainer.default_root_dir",
        str(root),
    ]
    main(["fit", *short])
    main(["fit", *short, "--seed_everything", "7"])
    newest = root / "lightning_logs" / "version_1" / "checkpoints"
    trainer = build_cli([*SMALL, "--trainer.default_root_dir", str(root)], run=False).trainer
    assert resolve("last", trainer, "test") == str(newest / "last.ckpt")
    (best,) = newest.glob("best-*.ckpt")
    assert resolve("best", trainer, "validate") == str(best)


def test_resume_last_with_nothing_to_resume(capsys, tmp_path):
    line = fails_with(
        capsys,
        ["fit", *SMALL, "--trainer.default_root_dir", str(tmp_path / "runs"), "--ckpt_path", "last"],
        "nothing to resume: no last.ckpt under",
    )
    assert str(tmp_path / "runs") in line
    assert not (tmp_path / "runs").exists()  # no empty run folder either


def lightning_checkpoint(path: Path, depth: int = 18, width: int = 8) -> Path:
    """A checkpoint as a fit of CIFARSystem writes it (the parts these checks read)."""
    system = CIFARSystem(CifarResNet(depth=depth, width=width))
    checkpoint = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams)}
    system.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def truncated(path: Path) -> Path:
    data = lightning_checkpoint(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_CHECKPOINTS = {
    "missing": (lambda p: p / "nowhere.ckpt", "does not exist"),
    "truncated": (lambda p: truncated(p / "cut.ckpt"), "is truncated or damaged"),
    "text": (
        lambda p: (p / "notes.ckpt").write_text("epoch 3 was good\n") and p / "notes.ckpt",
        "is not a checkpoint (not a file torch.save wrote)",
    ),
    "resnet34": (
        lambda p: lightning_checkpoint(p / "r34.ckpt", depth=34),
        "holds a ResNet-34 but this command builds a ResNet-18: add --model.backbone.depth 34",
    ),
}


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_bad_checkpoint_is_one_line(capsys, tmp_path, command, case):
    make, pattern = BAD_CHECKPOINTS[case]
    ckpt = make(tmp_path)
    line = fails_with(
        capsys,
        [command, *SMALL, "--trainer.default_root_dir", str(tmp_path / "runs"), "--ckpt_path", str(ckpt)],
        pattern,
    )
    assert str(ckpt) in line
    assert not (tmp_path / "runs").exists()  # stopped before anything was written


def test_ctrl_c_ends_in_one_line_naming_the_last_checkpoint(tmp_path):
    # StallAt only marks the moment (seconds=0): Ctrl-C lands while the loader workers are busy augmenting.
    config, marker = stall_config(tmp_path, epoch=1, batch=2, seconds=0)
    run = start(
        "fit",
        *EXACT,
        *PATHS["cpu_loader"],
        "--trainer.max_epochs",
        "100",
        "--config",
        str(config),
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    wait_for(marker, run)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the signal goes to the whole process group
    code, _, err = finish(run)
    last = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert code == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"interrupted: the last checkpoint is {last}; to resume, run the same command with --ckpt_path last"
    )
    assert "Traceback" not in err and "Error" not in err, err[-3000:]


def test_resume_with_other_epochs_than_the_schedule(capsys, tmp_path, one_thread):
    root = [
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
        "--data.batch_size",
        "32",
        "--test_after_fit",
        "false",
    ]
    main(["fit", *SMALL, *root, "--trainer.max_epochs", "1"])  # OneCycle over 7 steps
    fails_with(
        capsys,
        ["fit", *SMALL, *root, "--trainer.max_epochs", "3", "--ckpt_path", "last"],
        "the checkpoint's learning-rate schedule (OneCycleLR) spans 7 steps, this fit 21: resume with the "
        "--trainer.max_epochs the run started with (1)",
    )
    assert sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir()) == ["version_0"]

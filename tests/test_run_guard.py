"""Where a run's files go and what a failed run leaves: everything under --trainer.default_root_dir (W&B included),
one line when that place cannot be written, no empty version folders."""

import errno
import os

import pytest

from cifar_lightning.cli import main
from tests.test_cli import ROOT, SMALL, fails_with

ONE_STEP = [
    *SMALL,
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "1",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
    "--trainer.num_sanity_val_steps",
    "0",
]


def test_read_only_run_directory(capsys, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    makedirs = os.makedirs

    def read_only(path, *args, **kwargs):  # what a read-only mount answers (a test cannot mount one)
        if str(path).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    line = fails_with(capsys, ["fit", *ONE_STEP, "--trainer.default_root_dir", str(root)], f"cannot write {root}")
    assert line.endswith("(Read-only file system): pass --trainer.default_root_dir with a folder you can write to")


def test_run_directory_under_a_file(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("a file where the run directory should go")
    fails_with(
        capsys,
        ["fit", *ONE_STEP, "--trainer.default_root_dir", str(tmp_path / "notes.txt" / "runs")],
        f"cannot write {tmp_path / 'notes.txt'}",
    )


def test_failed_run_leaves_no_empty_version_folder(capsys, tmp_path):
    earlier = tmp_path / "runs" / "lightning_logs" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("epoch,val_acc\n0,0.5\n")
    fails_with(
        capsys,
        [
            "fit",
            *ONE_STEP,
            "--data.source",
            "folder",
            "--data.data_dir",
            str(tmp_path / "missing"),
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
        ],
        "does not exist",
    )
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["version_0"]  # the failed run's version_1 is gone
    fails_with(
        capsys,
        [
            "fit",
            *ONE_STEP,
            "--data.source",
            "folder",
            "--data.data_dir",
            str(tmp_path / "missing"),
            "--trainer.default_root_dir",
            str(tmp_path / "fresh"),
        ],
        "does not exist",
    )
    assert not (tmp_path / "fresh").exists()


@pytest.mark.usefixtures("one_thread")
def test_wandb_files_go_under_the_run_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    main(
        [
            "fit",
            *ONE_STEP,
            "--config",
            str(ROOT / "configs" / "wandb.yaml"),
            "--trainer.default_root_dir",
            str(tmp_path / "mine"),
        ]
    )
    assert "test accuracy:" in capsys.readouterr().out
    mine = tmp_path / "mine"
    assert (mine / "config.yaml").is_file()
    assert [p.name for p in mine.glob("cifar-lightning/*/checkpoints/*.ckpt")].count("last.ckpt") == 1
    assert len(list((mine / "wandb").glob("offline-run-*"))) == 1 and len(list((mine / "records").glob("*.json"))) == 1
    assert not (tmp_path / "runs").exists()


def test_a_lost_ctrl_c_still_stops_the_run(capsys, tmp_path, one_thread):
    config = tmp_path / "swallow.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.SwallowCtrlC\n      init_args: {batch: 1}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                *SMALL,
                "--data.batch_size",
                "32",
                "--trainer.max_epochs",
                "1",
                "--config",
                str(config),
                "--trainer.default_root_dir",
                str(tmp_path / "runs"),
            ]
        )
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted: stopped before the first checkpoint was saved: nothing to resume"
    )

"""W&B tracking: the mode is chosen without ever prompting; offline runs are kept and read back; disabled works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_lightning import CIFAR10DataModule, CifarResNet, CIFARSystem, build_callbacks
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.tracking import RunReport, WorkshopWandbLogger, has_api_key, resolve_mode
from cifar_lightning.tracking.results import curves_table, load_records, runs_table
from tests.helpers import cpu_trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def keyless(tmp_path, monkeypatch):
    """No API key anywhere, no WANDB_MODE, and every W&B file under tmp_path."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # absent: no `wandb login` entry
    for name, sub in (
        ("WANDB_DIR", "wandb"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_DATA_DIR", "wandb-data"),
    ):
        monkeypatch.setenv(name, str(tmp_path / sub))
    return tmp_path


def tiny_fit(save_dir: Path, epochs: int = 2, **logger_args):
    """Fit and test a width-8 ResNet-18 for a few synthetic batches, logged by WorkshopWandbLogger."""
    logger = WorkshopWandbLogger(save_dir=str(save_dir), group="tiny", **logger_args)
    data = CIFAR10DataModule(source="synthetic", synthetic_size=(256, 64), batch_size=32, num_workers=0)
    model = CIFARSystem(CifarResNet(depth=18, width=8), lr=0.05)
    trainer = cpu_trainer(
        str(save_dir),
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        limit_test_batches=2,
        logger=logger,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        callbacks=[*build_callbacks(), RunReport(n_samples=8, n_mistakes=4)],
    )
    trainer.fit(model, datamodule=data)
    test_acc = trainer.test(model, datamodule=data, ckpt_path="best", verbose=False)[0]["test_acc"]
    logger.log_metrics({"fit_seconds": 1.5})
    logger.finish()
    return logger, test_acc


def test_keyless_environment_picks_offline(keyless):
    assert not has_api_key()
    assert resolve_mode() == "offline"


def test_an_api_key_or_a_netrc_login_picks_online(keyless, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode() == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    (keyless / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    assert has_api_key()


def test_wandb_mode_is_obeyed(keyless, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode() == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # wandb's old name for offline
    assert resolve_mode() == "offline"
    assert resolve_mode("disabled") == "disabled"  # the argument wins over the environment
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(CifarLightningError, match="unknown W&B mode 'sometimes'"):
        resolve_mode()
    monkeypatch.setenv("WANDB_MODE", "online")  # online without a key would prompt: refuse with a hint instead
    with pytest.raises(CifarLightningError, match="wandb login"):
        resolve_mode()


def test_offline_run_is_kept_and_read_back(keyless):
    logger, test_acc = tiny_fit(keyless / "runs")
    assert logger.mode == "offline"
    record_dir = Path(load_records(keyless / "runs", source="local")[0]["wandb_dir"])
    assert record_dir.name.startswith("offline-run-") and list(record_dir.glob("run-*.wandb"))  # `wandb sync`able
    media = {p.name.split("_")[0] for p in (record_dir / "files" / "media" / "images").glob("*.png")}
    assert {"train", "confusion", "test"} <= media  # samples grid, confusion matrix, test mistakes

    runs = runs_table(load_records(keyless / "runs", source="auto"))  # no key: auto reads the local records
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["setting"] == "tiny" and row["epochs"] == 2
    assert row["test_acc"] == pytest.approx(test_acc)
    assert row["fit_seconds"] == 1.5 and row["images_per_sec"] > 0
    assert row["lr"] == 0.05 and row["optimizer"] == "sgd"
    curves = curves_table(load_records(keyless / "runs"))
    assert curves["epoch"].tolist() == [0, 1] and curves["val_acc"].between(0, 1).all()
    record = load_records(keyless / "runs")[0]
    assert record["config"]["precision"] == "32-true" and record["config"]["max_epochs"] == 2  # RunReport settings
    assert any("lr-SGD" in key for key in record["summary"])  # LearningRateMonitor
    assert {"epoch_time", "train_loss", "train_acc", "val_loss", "test_loss"} <= set(record["summary"])


def test_disabled_mode_trains_without_wandb_files(keyless, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger, test_acc = tiny_fit(keyless / "runs", epochs=1)
    assert logger.mode == "disabled"
    assert not (keyless / "runs" / "wandb").exists() and not (keyless / "wandb").exists()
    runs = runs_table(load_records(keyless / "runs"))
    assert runs["test_acc"].tolist() == [pytest.approx(test_acc)]


def test_checkpoint_artifact_is_off_by_default_and_kept_offline_when_asked(keyless):
    assert WorkshopWandbLogger(save_dir=str(keyless))._log_model is False
    tiny_fit(keyless / "runs", epochs=1, log_model=True)
    staged = list((keyless / "wandb-data").rglob("*"))  # offline artifacts wait in W&B's staging area for `wandb sync`
    assert any(p.is_file() and p.stat().st_size > 100_000 for p in staged)


def _cli(keyless: Path, extra_env: dict, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m cifar_lightning fit`` of a tiny synthetic run with configs/wandb.yaml, stdin closed."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(PYTHONPATH=str(ROOT), HOME=str(keyless / "home"), MPLBACKEND="agg", **extra_env)
    cmd = [
        sys.executable,
        "-m",
        "cifar_lightning",
        "fit",
        "--config",
        "configs/quick.yaml",
        "--config",
        "configs/wandb.yaml",
        "--data.source",
        "synthetic",
        "--data.synthetic_size",
        "[256, 64]",
        "--data.subset",
        "null",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "32",
        "--model.backbone.init_args.width",
        "8",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(keyless / "runs"),
        *overrides,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)


def test_cli_with_wandb_config_logs_offline_with_stdin_closed(keyless):
    done = _cli(keyless, {})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test accuracy:" in done.stdout
    # under --trainer.default_root_dir, which on the command line decides over $WANDB_DIR
    assert len(list((keyless / "runs" / "wandb").glob("offline-run-*"))) == 1
    assert len(list((keyless / "runs" / "records").glob("*.json"))) == 1


def test_cli_online_without_key_fails_with_a_hint_instead_of_prompting(keyless):
    done = _cli(keyless, {"WANDB_MODE": "online"})
    assert done.returncode == 2
    assert "error: W&B mode is online but no API key is configured" in done.stderr


def test_lesson_logger_starts_a_run_of_its_own_under_runs(keyless, monkeypatch):
    from cifar_lightning.tracking import lesson_logger

    monkeypatch.chdir(keyless)  # not inside a repo: lesson.run_dir() is <cwd>/runs/<lesson>
    first = lesson_logger("lesson-x", name="a")
    first.log_metrics({"val_acc": 0.5}, step=0)  # a cell that never closed its run
    second = lesson_logger("lesson-x", name="b")
    second.log_metrics({"val_acc": 0.7}, step=0)
    second.finish()
    assert second.version != first.version
    records = load_records(keyless / "runs" / "lesson-x")
    assert [(r["name"], r["group"], r["summary"]["val_acc"]) for r in records] == [
        ("a", "lesson-x", 0.5),
        ("b", "lesson-x", 0.7),
    ]


def test_wandb_config_adds_its_callback_to_the_runs_own(keyless):
    """configs/wandb.yaml after configs/full.yaml keeps full.yaml's crops and EMA (a plain ``callbacks:`` list in the
    later file would replace them and silently change the recipe) and adds the run report."""
    from cifar_lightning.cli import build_cli

    cli = build_cli(
        [
            "--config",
            str(ROOT / "configs/full.yaml"),
            "--config",
            str(ROOT / "configs/wandb.yaml"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.precision",
            "32-true",
            "--data.source",
            "synthetic",
            "--trainer.default_root_dir",
            str(keyless / "runs"),
        ],
        run=False,
    )
    names = [type(cb).__name__ for cb in cli.trainer.callbacks]
    assert {"ProgressiveCrop", "EMAWeights", "TQDMProgressBar", "RunReport"} <= set(names)
    assert isinstance(cli.trainer.logger, WorkshopWandbLogger)

"""The CPU track: configs/cpu.yaml parses through the CLI and trains; the shallow ResNet it uses."""

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

from cifar_lightning import CifarResNet, build_resnet, count_parameters
from cifar_lightning.cli import main
from cifar_lightning.errors import CifarLightningError
from cifar_lightning.model import load_imagenet_weights
from cifar_lightning.system import load_system

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cpu.yaml"


def test_cpu_config_fast_dev_run_on_synthetic_data(tmp_path, capsys):
    main(
        [
            "fit",
            "--config",
            str(CONFIG),
            "--data.source",
            "synthetic",
            "--data.synthetic_size",
            "[512, 256]",
            "--trainer.fast_dev_run",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    out = capsys.readouterr().out
    assert "test accuracy:" in out  # fit ran, then the test of the (in-memory) weights


def test_cpu_config_builds_the_cpu_recipe():
    """print_config resolves the YAML through the CLI's parser: every key is a real argument."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(CONFIG), "--print_config"])
    assert done.value.code in (0, None)
    cfg = yaml.safe_load(buf.getvalue())
    backbone = cfg["model"]["backbone"]["init_args"]
    assert backbone["width"] == 16 and backbone["blocks"] == [1, 1, 1, 1]
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["trainer"]["precision"] == "32-true"
    assert cfg["model"]["channels_last"] is True
    assert cfg["data"]["on_device"] is True and cfg["data"]["num_workers"] == 0


def test_blocks_make_a_shallower_resnet_with_the_same_stages():
    shallow, standard = CifarResNet(depth=18, width=16, blocks=[1, 1, 1, 1]), CifarResNet(depth=18, width=16)
    assert [len(getattr(shallow, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert [len(getattr(standard, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert count_parameters(shallow) < count_parameters(standard) / 2
    x = torch.randn(2, 3, 32, 32)
    assert shallow(x).shape == standard(x).shape == (2, 10)
    assert "blocks" not in standard.config  # old checkpoints and configs stay as they were
    assert build_resnet(width=16, blocks=[1, 2, 1, 1]).config["blocks"] == [1, 2, 1, 1]


@pytest.mark.parametrize("blocks", [[1, 1, 1], [0, 1, 1, 1]])
def test_bad_blocks_are_one_line_errors(blocks):
    with pytest.raises(CifarLightningError, match="blocks must be four counts"):
        CifarResNet(blocks=blocks)


def test_imagenet_weights_refuse_nonstandard_blocks():
    with pytest.raises(CifarLightningError, match="standard blocks"):
        load_imagenet_weights(CifarResNet(depth=18, blocks=[1, 1, 1, 1]))


def test_checkpoint_of_shallow_resnet_restores(tmp_path):
    main(
        [
            "fit",
            "--config",
            str(CONFIG),
            "--data.source",
            "synthetic",
            "--data.synthetic_size",
            "[512, 256]",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--test_after_fit",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    ckpt = next(tmp_path.rglob("last.ckpt"))
    system = load_system(str(ckpt))
    assert system.backbone.config["blocks"] == [1, 1, 1, 1]
    assert [len(system.backbone.layer1), len(system.backbone.layer4)] == [1, 1]

"""Config mistakes end in the one line that matters: the file with a YAML syntax error, an unknown key (and the known
one it resembles), exit status 2, no usage dump."""

import pytest

from cifar_lightning.cli import main
from tests.test_cli import SMALL


def only_line(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines[:5]  # not the usage (over a hundred lines) above it
    return lines[0]


def test_yaml_syntax_error_names_the_file(capsys, tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("trainer:\n  max_epochs: 2\n")
    bad.write_text("trainer:\n  max_epochs: 3\n   devices: [1\n")
    assert only_line(capsys, ["fit", "--config", str(good), "--config", str(bad)]).startswith(
        f"error: {bad} is not valid YAML at line 3"
    )


def test_unknown_key_in_a_config_file(capsys, tmp_path):
    good, typo = tmp_path / "good.yaml", tmp_path / "typo.yaml"
    good.write_text("model:\n  lr: 0.1\n")
    typo.write_text("trainer:\n  max_epoch: 3\n")
    assert only_line(capsys, ["fit", *SMALL, "--config", str(typo), "--config", str(good)]) == (
        f"error: unknown key trainer.max_epoch in {typo} (did you mean trainer.max_epochs?)"
    )


@pytest.mark.parametrize(
    "args,line",
    [
        (["--modle.lr", "0.1"], "error: unknown option --modle.lr (did you mean --model.lr?)"),
        (["--model.lr", "fast"], "error: Parser key \"model.lr\": Expected a <class 'float'>. Got value: fast"),
        (
            ["--model.backbone", "mynet.Net"],
            "error: Parser key \"model.backbone\": Problem with given class_path 'mynet.Net': No module named 'mynet'",
        ),
    ],
)
def test_bad_option_on_the_command_line(capsys, args, line):
    assert only_line(capsys, ["fit", *SMALL, *args]) == line

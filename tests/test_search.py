"""The Ray Tune search: its configs and tables without Ray, then a two-trial search end to end whose best.yaml the
CLI trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import yaml

from cifar_lightning import search
from cifar_lightning.errors import CifarLightningError

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--data.source",
    "synthetic",
    "--data.synthetic_size",
    "[320, 64]",
    "--model.backbone.init_args.width",
    "8",
    "--trainer.accelerator",
    "cpu",
    "--trainer.limit_val_batches",
    "1",
]


def test_importing_the_package_does_not_import_ray():
    code = "import sys, cifar_lightning, cifar_lightning.search; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_options_merge_into_the_recipe_as_the_cli_reads_them():
    recipe = search.base_recipe(
        [ROOT / "configs/quick.yaml"], ["--data.subset", "800", "--model.lr=0.3", "--data.synthetic_size", "[64, 8]"]
    )
    assert recipe["data"]["subset"] == 800 and recipe["model"]["lr"] == 0.3
    assert recipe["data"]["synthetic_size"] == [64, 8]
    assert recipe["model"]["backbone"]["init_args"]["width"] == 16  # untouched parts of the config stay
    with pytest.raises(CifarLightningError, match="needs a value"):
        search.parse_options(["--data.subset"])
    with pytest.raises(CifarLightningError, match="--config"):
        search.parse_options(["--config", "x.yaml"])


def test_recipe_values_fall_back_to_the_classes_defaults():
    recipe = search.base_recipe([ROOT / "configs/quick.yaml"])
    values = search.recipe_values(recipe, list(search.search_space()))
    # quick.yaml sets lr 0.05 and batch 128; weight decay and label smoothing are CIFARSystem's defaults
    assert values["model.lr"] == 0.05 and values["data.batch_size"] == 128
    assert values["model.weight_decay"] == 5e-4 and values["model.label_smoothing"] == 0.0


def test_trial_options_and_best_config_round_alike():
    config = {"model.lr": 0.123456789, "data.batch_size": 256}
    assert search.trial_options(config) == ["--model.lr", "0.1235", "--data.batch_size", "256"]
    recipe = search.base_recipe([ROOT / "configs/full.yaml"])
    best = search.best_config(recipe, config, epochs=10, seed=3)
    assert best["model"]["lr"] == 0.1235 and best["data"]["batch_size"] == 256
    assert best["trainer"]["max_epochs"] == 10 and best["seed_everything"] == 3
    assert best["trainer"]["check_val_every_n_epoch"] == 10  # full.yaml's 40 would never validate in 10 epochs
    assert recipe["model"]["lr"] == 0.6  # the recipe itself is not changed


def test_search_space_checks_its_bounds():
    space = search.search_space(batch_size=(64, 128))
    assert space["data.batch_size"].values == (64, 128)
    assert "loguniform in [0.05, 2]" == space["model.lr"].describe()
    with pytest.raises(CifarLightningError, match="below"):
        search.search_space(lr=(1.0, 0.1))
    with pytest.raises(CifarLightningError, match="above 0"):
        search.Dimension("model.weight_decay", "loguniform", (0.0, 1e-3))


def history():
    """Three trials of up to 3 epochs: a stopped after 1 epoch, b and c ran all 3, c best."""
    rows = [("a", 1, 0.30, 10, 0)]
    rows += [("b", e, 0.30 + 0.1 * e, 10 * e, 1) for e in (1, 2, 3)]
    rows += [("c", e, 0.35 + 0.1 * e, 12 * e, 2) for e in (1, 2, 3)]
    return pd.DataFrame(rows, columns=["trial_id", "epoch", "val_acc", "time_total_s", "start_s"])


def test_trials_table_ranks_the_longest_trained_first_and_marks_the_stopped():
    params = {t: {"model.lr": lr} for t, lr in (("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.4))}
    table = search.trials_table(history(), params, epochs=3, errors={"d": "ValueError: boom"})
    assert list(table["trial_id"]) == ["c", "b", "a", "d"]
    assert list(table["status"]) == ["ran all epochs", "ran all epochs", "stopped early", "error"]
    assert table.loc[0, "val_acc"] == pytest.approx(0.65) and table.loc[0, "end_s"] == pytest.approx(38)
    info = search.summary(table, epochs=3, baseline_id="b")
    assert info["best_trial"] == "c" and info["stopped"] == 1 and info["errors"] == 1
    assert info["epochs_trained"] == 7 and info["epochs_without_stopping"] == 12
    assert info["recipe_val_acc"] == pytest.approx(0.6)
    md = search.markdown_table(table)
    assert md.count("\n") == len(table) + 2 and "| stopped early |" in md


def test_history_frame_reads_ray_result_tables():
    frame = pd.DataFrame(
        {"training_iteration": [1, 2], "val_acc": [0.5, 0.6], "time_total_s": [5.0, 9.0], "timestamp": [105, 109]}
    )
    later = frame.assign(timestamp=frame["timestamp"] + 7)
    history = search.history_frame([("x", frame), ("y", later), ("z", pd.DataFrame())])
    assert list(history["epoch"]) == [1, 2, 1, 2]
    assert list(history["start_s"]) == [0, 0, 7, 7]


def test_plot_trials_shows_the_stopped_trials():
    params = {t: {"model.lr": 0.1} for t in "abc"}
    table = search.trials_table(history(), params, epochs=3)
    ax = search.plot_trials(history(), table)
    labels = ax.get_legend_handles_labels()[1]
    assert {"best trial", "ran all epochs", "stopped early", "stopped by the scheduler"} <= set(labels)
    assert len(ax.lines) == 3 + 1 + 1  # a line per trial, the stopped trial's cross, the cross's legend entry
    assert ax.get_title() == "3 trials, 1 stopped early"


def test_command_line_splits_its_options_from_the_trials():
    args, rest = search.parser().parse_known_args(
        ["--config", "a.yaml", "--gpus-per-trial", "0.25", "--data.subset", "8000", "--batch-size", "64", "128"]
    )
    assert args.gpus_per_trial == 0.25 and args.batch_size == [64, 128] and rest == ["--data.subset", "8000"]


def test_a_tiny_search_end_to_end_and_its_best_yaml_trains(tmp_path, capsys):
    pytest.importorskip("ray.tune")
    from cifar_lightning.cli import build_cli, main

    result = search.run_search(
        [ROOT / "configs/quick.yaml"],
        TINY,
        space=search.search_space(batch_size=(32, 64)),
        epochs=1,
        num_samples=2,
        num_cpus=2,
        out_dir=tmp_path / "search",
        quiet=True,
    )
    assert len(result.trials) == 2 and set(result.trials["status"]) == {"ran all epochs"}
    assert result.summary["recipe_trial"] in set(result.trials["trial_id"])
    for name in ("trials.csv", "trials.md", "history.csv", "best.yaml"):
        assert (result.out_dir / name).is_file()
    best = yaml.safe_load(result.best_yaml.read_text())
    assert best["model"]["lr"] == result.best_params["model.lr"]
    cli = build_cli(["--config", str(result.best_yaml), "--trainer.default_root_dir", str(tmp_path / "fit")], run=False)
    assert cli.model.hparams.lr == result.best_params["model.lr"]
    assert cli.datamodule.batch_size == result.best_params["data.batch_size"]
    main(["fit", "--config", str(result.best_yaml), "--trainer.default_root_dir", str(tmp_path / "fit")])
    assert "test accuracy:" in capsys.readouterr().out


def test_the_search_benchmark_plans_at_least_16_trials_and_equal_epochs(tmp_path):
    from tests.test_benchmarks import load_script

    bench = load_script("search_benchmark.py")
    args = bench.parser().parse_args(["--data-dir", "/data/cifar10-jpeg", "--results", str(tmp_path)])
    steps = bench.plan(args, ["--model.compile", "false"])
    assert steps["search"]["num_samples"] >= 16 and steps["search"]["gpus_per_trial"] == 0.25
    assert steps["search"]["options"][:4] == ["--data.source", "folder", "--data.data_dir", "/data/cifar10-jpeg"]
    fits = steps["fits"]
    assert [(name, seed) for name, _, seed, _ in fits] == [
        (name, seed) for name in ("configs/full.yaml", "searched best.yaml") for seed in (0, 1, 2)
    ]
    for _, _config, seed, options in fits:
        assert options[options.index("--trainer.max_epochs") + 1] == str(args.epochs)
        assert options[options.index("--seed_everything") + 1] == str(seed) and "--model.compile" in options
    assert fits[-1][1] == str(tmp_path / "search-best.yaml")


def test_the_search_benchmark_reports_mean_std_and_a_verdict():
    from tests.test_benchmarks import load_script

    bench = load_script("search_benchmark.py")
    data = "JPEG copy of CIFAR-10: 45,000 training / 5,000 validation images"
    runs = [
        {"name": n, "seed": s, "epochs": 12, "val_acc": a, "test_acc": a, "fit_s": 10.0, "data": data}
        for n, accs in (("configs/full.yaml", (0.880, 0.882, 0.884)), ("searched best.yaml", (0.900, 0.901, 0.902)))
        for s, a in enumerate(accs)
    ]
    info = {"trials": 16, "epochs": 12, "stopped": 9, "best_params": {"model.lr": 0.8}, "best_val_acc": 0.9}
    md, summary = bench.report(info, runs, "python benchmarks/search_benchmark.py", {"card": "H200", "gpus": 1})
    assert "JPEG copy of CIFAR-10" in md and "| configs/full.yaml | 12 | 0,1,2 | 88.20 ± 0.20 |" in md
    assert summary["comparison"]["difference_points"] == pytest.approx(1.9)
    assert "beats configs/full.yaml by 1.90 points" in summary["comparison"]["verdict"]
    noisy = (0.880, 0.890, 0.885, 0.884, 0.878, 0.889)
    close = [dict(r, test_acc=a) for r, a in zip(runs, noisy, strict=True)]
    assert "no winner" in bench.compare(close)["verdict"]


def test_the_command_ends_bad_input_in_one_error_line_before_starting_ray(capsys):
    with pytest.raises(SystemExit) as exit_info:
        search.main(["--config", "no-such.yaml", "--epochs", "1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: no config file no-such.yaml"
    with pytest.raises(SystemExit):
        search.main(["--config", str(ROOT / "configs/quick.yaml"), "--model.lr", "0.1"])
    assert "sets --model.lr itself" in capsys.readouterr().err

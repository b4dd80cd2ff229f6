"""Reading runs back: from local records or the W&B API, into tables, a mean ± std summary and figures."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from cifar_lightning.errors import CifarLightningError
from cifar_lightning.tracking import comparison, results

ROOT = Path(__file__).resolve().parents[1]

_clock = itertools.count()


def record(setting: str, seed: int, val: list[float], test_acc: float, seconds: float, speed=(100.0, 300.0, 500.0)):
    history = [{"step": 10 * e, "epoch": e, "val_acc": v, "val_loss": 1.0} for e, v in enumerate(val)]
    history += [{"step": 10 * e + 9, "epoch": e, "images_per_sec": s} for e, s in enumerate(speed)]
    return {
        "id": f"{setting}{seed}",
        "name": f"{setting}-seed{seed}",
        "group": setting,
        "created": f"2026-11-26T08:00:{next(_clock):02d}",
        "config": {"setting": setting, "global_seed": seed, "seed": 42, "lr": 0.1, "optimizer": "sgd"},
        "summary": {"test_acc": test_acc, "fit_seconds": seconds},
        "history": history,
    }


RECORDS = [
    record("baseline", 0, [0.5, 0.7, 0.8], 0.80, 10.0),
    record("baseline", 1, [0.4, 0.6, 0.9], 0.90, 12.0),
    record("adam", 0, [0.3, 0.5, 0.6], 0.60, 11.0),
]


def test_tables_and_summary_from_records():
    runs = results.runs_table(RECORDS)
    assert runs["setting"].tolist() == ["baseline", "baseline", "adam"]
    assert runs["best_val_acc"].tolist() == [0.8, 0.9, 0.6]
    assert runs["images_per_sec"].tolist() == [400.0] * 3  # the start-up epoch is left out
    assert runs["epochs"].tolist() == [3] * 3
    sparse = record("baseline", 0, [0.5, 0.7], 0.7, 5.0)  # validated after epochs 4 and 8 of 8
    sparse["history"] = [{**row, "epoch": 4 * row["epoch"] + 3} for row in sparse["history"]]
    assert results.runs_table([sparse])["epochs"].tolist() == [8]  # epochs trained, not validations counted
    curves = results.curves_table(RECORDS)
    assert len(curves) == 9 and curves.groupby("id")["epoch"].max().eq(2).all()

    summary = results.summarize(runs).set_index("setting")
    assert summary.index.tolist() == ["baseline", "adam"]  # first-appearance order, baseline on top
    assert summary.loc["baseline", "runs"] == 2
    assert summary.loc["baseline", "test_acc_mean"] == pytest.approx(0.85)
    assert summary.loc["baseline", "test_acc_std"] == pytest.approx(math.sqrt(0.005))  # sample std of 0.8, 0.9
    assert math.isnan(summary.loc["adam", "test_acc_std"])  # one seed: no spread to report
    assert summary.loc["baseline", "fit_seconds_mean"] == 11.0

    shown = results.format_summary(summary.reset_index())
    assert shown["test acc %"].tolist() == ["85.00 ± 7.07", "60.00"]


def test_summary_of_nothing_says_what_to_run():
    with pytest.raises(CifarLightningError, match="cifar_lightning.tracking.comparison"):
        results.summarize(results.runs_table([]))


def test_local_records_are_found_at_any_depth_and_filtered_by_tag(tmp_path):
    for i, r in enumerate(RECORDS):
        folder = tmp_path / f"part{i % 2}" / "records"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{r['id']}.json").write_text(json.dumps({**r, "tags": ["A" if i < 2 else "B"]}))
    assert [r["id"] for r in results.load_records(tmp_path, source="local")] == ["baseline0", "baseline1", "adam0"]
    assert {r["id"] for r in results.load_records(tmp_path, source="local", tag="A")} == {"baseline0", "baseline1"}


class FakeRun:
    """The parts of ``wandb.apis.public.Run`` that results.read_wandb uses."""

    def __init__(self, rec):
        self.id, self.name, self.group, self.config = rec["id"], rec["name"], rec["group"], rec["config"]
        self.summary_metrics, self._history = rec["summary"], rec["history"]

    def scan_history(self, keys):
        return [{k: row[k] for k in keys} for row in self._history if all(k in row for k in keys)]


class FakeApi:
    def __init__(self, *args, **kwargs):
        self.calls = []

    def runs(self, path, filters=None, order=None):
        self.calls.append((path, filters))
        return [FakeRun(r) for r in RECORDS]


def test_online_source_reads_the_wandb_api(monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    api = FakeApi()
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: api)
    records = results.load_records(source="auto", project="p", entity="me", tag="t1")  # a key: auto goes online
    assert api.calls == [("me/p", {"tags": {"$in": ["t1"]}})]
    online = results.summarize(results.runs_table(records))
    local = results.summarize(results.runs_table(RECORDS))
    pd.testing.assert_frame_equal(
        online.drop(columns="images_per_sec_mean"), local.drop(columns="images_per_sec_mean")
    )  # W&B keeps only val rows here
    assert results.curves_table(records)["val_acc"].tolist() == results.curves_table(RECORDS)["val_acc"].tolist()


def test_compact_summary_round_trip_and_figures(tmp_path):
    runs, curves = results.runs_table(RECORDS), results.curves_table(RECORDS)
    results.save_compact(runs, curves, tmp_path, meta={"device": "test"})
    runs2, curves2, meta = results.load_compact(tmp_path)
    assert meta == {"device": "test"}
    pd.testing.assert_frame_equal(results.summarize(runs2), results.summarize(runs), check_dtype=False)
    assert curves2["val_acc"].tolist() == curves["val_acc"].tolist()

    fig = results.plot_curves(curves)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["baseline (2)", "adam (1)"]
    assert ax.get_lines()[0].get_ydata().tolist() == pytest.approx([45.0, 65.0, 85.0])  # mean over seeds, in %
    table = results.plot_summary_table(results.summarize(runs))
    texts = [cell.get_text().get_text() for cell in table.axes[0].tables[0].get_celld().values()]
    assert "85.00 ± 7.07" in texts and "adam" in texts
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_comparison_runner_smoke_offline(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    out, summary_dir = tmp_path / "runs", tmp_path / "summary"
    done = comparison.main(
        [
            "--smoke",
            "--settings",
            "baseline,lr_finder_div10",
            "--seeds",
            "1",
            "--baseline-seeds",
            "2",
            "--out",
            str(out),
            "--summary",
            str(summary_dir),
            "--tag",
            "smoke-test",
            "--no-media",
        ]
    )
    summary = done["summary"].set_index("setting")
    assert summary["runs"].to_dict() == {"baseline": 2, "lr_finder_div10": 1}
    assert summary.loc["lr_finder_div10", "lr"] == pytest.approx(done["meta"]["lr_finder_suggestion"] / 10)
    assert summary.loc["baseline", "lr"] == 0.05  # configs/quick.yaml
    assert (out / "lr_finder.png").exists()
    assert len(list((out / "wandb").glob("offline-run-*"))) == 3  # no key: every run offline, ready for wandb sync

    # what the results notebook does: the same numbers from the local records and from the committed copy
    again = results.runs_table(results.load_records(out, tag="smoke-test"))
    assert sorted(again["test_acc"]) == sorted(done["runs"]["test_acc"])
    assert again["seed"].tolist() == [0, 1, 0] and again["fit_seconds"].gt(0).all()
    runs, curves, meta = results.load_compact(summary_dir)
    assert runs["test_acc"].tolist() == pytest.approx(done["runs"]["test_acc"].tolist())
    assert len(curves) == 3 and meta["tag"] == "smoke-test" and meta["total_seconds"] > 0


def test_comparison_runs_three_seeds_per_setting_by_default():
    opts, extra = comparison.parse(["--settings", "baseline,adam", "--data.subset", "100"])
    assert opts.seeds == 3 and opts.baseline_seeds is None  # main() gives the baseline --seeds runs too
    assert extra == ["--data.subset", "100"]  # unknown options go to every run's CLI


def versus_of(tests: dict[str, list[float]]) -> pd.DataFrame:
    runs = pd.DataFrame(
        [
            {"setting": s, "seed": i, "test_acc": a, "best_val_acc": a, "fit_seconds": 10.0, "images_per_sec": 1.0}
            for s, accs in tests.items()
            for i, a in enumerate(accs)
        ]
    ).assign(lr=0.1)
    return results.versus_baseline(results.summarize(runs))


def test_versus_baseline_pools_the_seed_spread_of_both_arms():
    versus = versus_of(
        {
            "baseline": [0.80, 0.81, 0.82],  # std 1 point
            "worse": [0.70, 0.71, 0.72],  # 10 points below, std 1: far beyond
            "same": [0.80, 0.82, 0.84],  # +1 point, std 2: pooled std sqrt(2.5), noise ± 3.16
            "single": [0.835],  # one run: borrows the baseline's spread, noise ± 2
        }
    ).set_index("setting")
    assert versus["Δ test acc (points)"].to_dict() == pytest.approx(
        {"baseline": 0.0, "worse": -10.0, "same": 1.0, "single": 2.5}
    )
    assert versus["noise ± (points)"].to_dict() == pytest.approx(
        {"baseline": 2.0, "worse": 2.0, "same": 3.16, "single": 2.0}, abs=0.01
    )
    assert versus["beyond noise"].to_dict() == {"baseline": False, "worse": True, "same": False, "single": True}
    text = results.describe_versus(versus.reset_index())
    assert "Beat the baseline beyond the seed spread: single (+2.50 points, noise ± 2.00)." in text
    assert "Fell behind it beyond the seed spread: worse (-10.00 points, noise ± 2.00)." in text
    assert "Within the seed spread" in text and "same (+1.00 points, noise ± 3.16)" in text


def test_versus_baseline_of_a_single_baseline_run_claims_nothing():
    versus = versus_of({"baseline": [0.80], "adam": [0.90]})
    assert not versus["beyond noise"].any() and versus["noise ± (points)"].isna().all()
    assert "single run" in results.describe_versus(versus)


def test_comparison_runner_rejects_unknown_settings():
    with pytest.raises(CifarLightningError, match="unknown setting"):
        comparison.main(["--smoke", "--settings", "baseline,warp_drive"])


def test_load_comparison_falls_back_to_local_records_then_to_the_committed_copy(tmp_path, monkeypatch):
    import wandb

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", unreachable)
    (tmp_path / "runs" / "records").mkdir(parents=True)
    (tmp_path / "runs" / "records" / "a.json").write_text(json.dumps(RECORDS[0]))
    runs, curves, where = results.load_comparison(tmp_path / "runs", tmp_path / "committed")
    assert where.startswith("local run records") and runs["id"].tolist() == ["baseline0"] and len(curves) == 3

    results.save_compact(
        results.runs_table(RECORDS),
        results.curves_table(RECORDS),
        tmp_path / "committed",
        meta={"device": "NVIDIA H100", "note": "JPEG copy of CIFAR-10"},
    )
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs, _, where = results.load_comparison(tmp_path / "nothing-here", tmp_path / "committed")
    assert len(runs) == 3 and "NVIDIA H100, JPEG copy of CIFAR-10" in where


def test_benchmark_table_reads_the_gpu_benchmark_summary(tmp_path):
    row = {
        "config": "configs/full.yaml",
        "extra": "",
        "gpus": 1,
        "seeds": [0, 1, 2],
        "epochs": 18,
        "test_acc": [0.8867, 0.0037],
        "fit_s": [25.5, 1.7],
        "images_per_s": [38178.0, 2227.0],
    }
    summary = {
        "versions": {"card": "NVIDIA H100 80GB HBM3"},
        "rows": [{"name": "full", **row}, {"name": "classic", **row, "seeds": [0], "test_acc": [0.8958, 0.0]}],
    }
    path = tmp_path / "gpu-recipes.json"
    path.write_text(json.dumps(summary))
    table = results.benchmark_table(path, ["classic", "full"])
    assert list(table.index) == ["classic", "full"]
    assert table.loc["full", "test acc %"] == "88.67 ± 0.37"
    assert table.loc["classic", "test acc %"] == "89.58"  # one seed: no spread shown
    assert table.loc["full", "train images/s"] == "38,178 ± 2,227"
    assert table.attrs["card"] == "NVIDIA H100 80GB HBM3"
    assert "compile s" not in table.columns  # a summary without compile times: no such column
    summary["rows"][0].update(compile_s=[9.1, 0.5], fit_less_compile_s=[18.1, 0.1])
    path.write_text(json.dumps(summary))
    timed = results.benchmark_table(path, ["full"])
    assert timed.loc["full", "compile s"] == "9.1 ± 0.5" and timed.loc["full", "fit s less compile"] == "18.1 ± 0.1"
    with pytest.raises(CifarLightningError, match="no run named long"):
        results.benchmark_table(path, ["long"])


def test_recipes_table_puts_a_lessons_run_beside_every_benchmark(tmp_path):
    gpu = {
        "versions": {"card": "NVIDIA H200"},
        "rows": [
            {
                "name": "full-compiled",
                "config": "configs/full.yaml",
                "extra": "--model.compile reduce-overhead",
                "gpus": 1,
                "seeds": [0, 1, 2],
                "epochs": 40,
                "test_acc": [0.907, 0.0023],
                "fit_s": [43.2, 26.5],
                "compile_s": [23.9, 26.0],
                "images_per_s": [101394.0, 3204.0],
            }
        ],
    }
    (tmp_path / "gpu-recipes.json").write_text(json.dumps(gpu))
    cpu_runs = [{"test_acc": acc, "fit_s": 500.0, "epochs": 8, "train_images": 45000} for acc in (0.80, 0.81, 0.82)]
    (tmp_path / "cpu-track.json").write_text(json.dumps({"cpu": "AMD EPYC", "cores": 2, "runs": cpu_runs}))
    mine = {"run": "this lesson", "config": "configs/full.yaml", "machine": "GPU", "epochs": 40}
    table = results.recipes_table(tmp_path, {**mine, "test_acc": 0.9051, "fit_s": 80.0, "images_per_s": 25000.0})
    assert list(table.index) == ["this lesson", "full-compiled", "cpu-track"]
    assert table.loc["this lesson", "test acc %"] == "90.51" and table.loc["this lesson", "compile s"] == "–"
    assert table.loc["full-compiled", "machine"] == "1 x NVIDIA H200"
    assert table.loc["full-compiled", "config"] == "configs/full.yaml --model.compile reduce-overhead"
    assert table.loc["full-compiled", "test acc %"] == "90.70 ± 0.23" and table.loc["full-compiled", "seeds"] == 3
    assert table.loc["cpu-track", "test acc %"] == "81.00 ± 1.00"
    assert table.loc["cpu-track", "train images/s"] == "720"  # 8 x 45,000 images in 500 s, no spread
    assert table.loc["cpu-track", "machine"] == "2-core AMD EPYC CPU"
    assert table.attrs["test_acc"]["full-compiled"] == [0.907, 0.0023]
    assert table.attrs["missing"] == [
        "gpu-ddp.json: not measured yet: `python benchmarks/gpu_benchmark.py suite ddp` on a GPU"
    ]


def test_a_gpu_benchmark_not_measured_yet_says_the_command_that_measures_it(tmp_path):
    """Lesson 11 prints this line where the GPU benchmark's results file is not there yet."""
    with pytest.raises(CifarLightningError) as missing:
        results.benchmark_table(tmp_path / "gpu-recipes.json")
    assert str(missing.value) == (
        "gpu-recipes.json: not measured yet: run `python benchmarks/gpu_benchmark.py suite "
        "recipes --data-dir <cifar10-jpeg>` on a GPU"
    )


def test_comparison_arms_drop_the_full_configs_callbacks(tmp_path):
    cli = comparison.configure_run(["--config", str(ROOT / "configs/full.yaml"), *comparison.SMOKE_ARGS], tmp_path)

    def names():
        return [type(c).__name__ for c in cli.trainer.callbacks]

    assert {"ProgressiveCrop", "EMAWeights"} <= set(names())
    arms = {s.name: s for s in comparison.SETTINGS}
    assert comparison.drop_callbacks(cli.trainer, arms["no_ema"]) == ["EMAWeights"]
    assert "EMAWeights" not in names() and "ProgressiveCrop" in names()
    assert comparison.drop_callbacks(cli.trainer, arms["no_progressive_crop"]) == ["ProgressiveCrop"]
    # an arm that only drops, on a config without the callback, would rerun the baseline: refused
    with pytest.raises(CifarLightningError, match="does not have"):
        comparison.drop_callbacks(cli.trainer, arms["no_ema"])
    assert comparison.drop_callbacks(cli.trainer, arms["swa"]) == []  # swa also adds SWA: allowed
    assert "ProgressiveCrop" in arms["no_augmentation"].drop  # crops need the crop augmentation

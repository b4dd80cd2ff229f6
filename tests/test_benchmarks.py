"""The benchmarks' logic on CPU: the GPU plans, their jobs and tables, the step timeline, the CPU track's report."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from cifar_lightning.cli import build_cli
from cifar_lightning.tracking import results

ROOT = Path(__file__).resolve().parents[1]
# A ResNet-18 of width 8 on 640 synthetic images, on the CPU, uncompiled: a GPU job's path in seconds.
TINY_CPU_FIT = [
    "--data.source",
    "synthetic",
    "--data.synthetic_size",
    "[640, 128]",
    "--data.batch_size",
    "64",
    "--model.backbone.init_args.width",
    "8",
    "--trainer.accelerator",
    "cpu",
    "--model.compile",
    "false",
    "--trainer.enable_progress_bar",
    "false",
]


def load_script(path: str):
    """A script under benchmarks/ as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / "benchmarks" / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_benchmark():
    return load_script("gpu_benchmark.py")


def epoch(train_s, size=32, images=45000):
    return {"train_s": train_s, "epoch_s": train_s, "validated": False, "size": size, "images": images}


def job(name, seed, gpus, images_per_s, *, fit_s=25.0, compile_calls=(2.5,), launcher="", **extra):
    """A job's JSON as run_job writes it (the fields the report reads)."""
    phases = {
        "before_first_epoch_s": 3.1,
        "after_last_epoch_s": 0.1,
        "validation_s": [0.4],
        "checkpoint_s": [0.3],
        "compile_setup_s": list(compile_calls),
    }
    return {
        "name": name,
        "config": "configs/full.yaml",
        "seed": seed,
        "extra": [],
        "world_size": gpus,
        "launcher": launcher,
        "data": "JPEG copy of CIFAR-10: 45,000 training / 5,000 validation images",
        "epochs": 40,
        "fit_s": fit_s,
        "launch_to_fit_end_s": fit_s + 20.0,
        "launch_to_tested_s": fit_s + 22.0,
        "data_setup_s": 6.0,
        "test_acc": 0.91,
        "val_acc": 0.915,
        "images_per_s": images_per_s,
        "first_epoch_overhead_s": 1.5,
        "fit_phases": phases,
        "peak_gpu_mem_gib": 3.5,
        "versions": {
            "card": "NVIDIA H200",
            "gpus": gpus,
            "torch": "2",
            "torchvision": "0",
            "lightning": "2",
            "cuda": "13",
            "cudnn": "9",
            "python": "3",
        },
        "finished": f"2026-12-0{seed + 1} 10:00 UTC",
        **extra,
    }


def report_of(gpu_benchmark, jobs: list[dict], tmp_path, name="gpu-ddp") -> Path:
    """Write each job's JSON as the suite does and run the report over them: the Markdown table's path."""
    files = []
    for j in jobs:
        files.append(tmp_path / f"{j['name']}-s{j['seed']}.json")
        files[-1].write_text(json.dumps(j))
    md = tmp_path / f"{name}.md"
    gpu_benchmark.report(
        [str(f) for f in files], md, "title", f"python benchmarks/gpu_benchmark.py suite {name[4:]}", quiet=True
    )
    return md


def test_plans_run_todays_configs_and_the_ddp_plan_both_launchers(gpu_benchmark):
    plans = gpu_benchmark.PLANS
    assert {name: plan.results for name, plan in plans.items()} == {
        "recipes": "gpu-recipes",
        "ddp": "gpu-ddp",
        "smoke": None,
    }
    recipes = {e.name: e for e in plans["recipes"].entries}
    assert {name: e.config for name, e in recipes.items()} == {
        "classic": "configs/classic.yaml",
        "long-compiled": "configs/long.yaml",
        "full-compiled": "configs/full.yaml",
    }
    assert recipes["long-compiled"].seeds == recipes["full-compiled"].seeds == (0, 1, 2)
    ddp = {e.name: e for e in plans["ddp"].entries}
    for gpus in (2, 4):
        for torchrun in (False, True):
            entry = ddp[f"full-ddp{gpus}{'-torchrun' if torchrun else ''}-compiled"]
            assert (entry.gpus, entry.torchrun, entry.seeds) == (gpus, torchrun, (0, 1, 2))
            assert entry.options == (
                "--config",
                "configs/ddp.yaml",
                "--trainer.devices",
                str(gpus),
                "--model.compile",
                "reduce-overhead",
            )
    assert all(
        e.options[-2:] == ("--model.compile", "reduce-overhead")
        for plan in plans.values()
        for e in plan.entries
        if e.name.endswith("-compiled")
    )


def test_ddp_plan_on_two_gpus_alternates_the_launchers_and_skips_four(gpu_benchmark):
    single, multi, skipped = gpu_benchmark.plan_jobs(gpu_benchmark.PLANS["ddp"], n_gpus=2)
    assert [(e.name, s) for e, s in single] == [("full-compiled", s) for s in (0, 1, 2)]
    assert [(e.name, s) for e, s in multi] == [
        (name, s) for s in (0, 1, 2) for name in ("full-ddp2-compiled", "full-ddp2-torchrun-compiled")
    ]
    assert {e.gpus for e, _ in skipped} == {4} and len(skipped) == 6
    _, multi, skipped = gpu_benchmark.plan_jobs(gpu_benchmark.PLANS["ddp"], n_gpus=4)
    assert [e.gpus for e, _ in multi] == [2] * 6 + [4] * 6 and not skipped


@pytest.mark.parametrize("plan", ["recipes", "ddp", "smoke"])
def test_every_job_of_a_plan_is_a_valid_cli_command(gpu_benchmark, plan, tmp_path, monkeypatch):
    """The options a plan gives its jobs build a trainer through the CLI, as the job does (on the CPU here)."""
    monkeypatch.chdir(ROOT)  # the suite runs its jobs in the project's root: configs/ddp.yaml is relative to it
    for entry in gpu_benchmark.PLANS[plan].entries:
        cli = build_cli(
            ["--config", entry.config, *entry.options, "--trainer.accelerator", "cpu"],
            run=False,
            trainer_defaults={"default_root_dir": str(tmp_path)},
        )
        assert cli.trainer.world_size == entry.gpus
        assert cli.model.hparams.compile == ("reduce-overhead" if "--model.compile" in entry.options else False)


def test_a_torchrun_job_starts_every_process_at_once(gpu_benchmark):
    assert gpu_benchmark.launcher(2, torchrun=True)[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
    ]
    assert gpu_benchmark.launcher(2, torchrun=False) == [sys.executable]
    assert gpu_benchmark.launcher(1, torchrun=True) == [sys.executable]


def test_overheads_and_throughput_per_input_size(gpu_benchmark):
    """ProgressiveCrop switches 24 -> 32 pixels: each size's first epoch pays its own compile/autotune."""
    log = [epoch(t, size) for t, size in [(20.0, 24), (0.5, 24), (0.5, 24), (30.0, 32), (0.9, 32), (0.9, 32)]]
    assert gpu_benchmark.first_epochs_overhead(log) == pytest.approx(19.5 + 29.1)
    assert gpu_benchmark.steady_images_per_s(log) == pytest.approx(4 * 45000 / 2.8)  # first epoch of each size left out


def test_compile_time_and_the_fit_besides_it(gpu_benchmark, tmp_path):
    """Compile = torch.compile's call + the first-epoch overhead; an eager fit compiled nothing and counts whole."""
    compiled = [job("full-compiled", seed, 1, 100000.0, fit_s=fit) for seed, fit in ((0, 24.0), (1, 26.0))]
    eager = job("classic", 0, 1, 12000.0, fit_s=141.0, compile_calls=(), config="configs/classic.yaml")
    assert gpu_benchmark.compile_s(compiled[0]) == pytest.approx(1.5 + 2.5) and gpu_benchmark.compile_s(eager) is None
    md = report_of(gpu_benchmark, [eager, *compiled], tmp_path, "gpu-recipes")
    text = md.read_text()
    assert "| classic | configs/classic.yaml | 1 | – | 0 | 40 | 91.00 | 141.0 | – | 141.0 | 12,000 | 163.0 |" in text
    assert (
        "| full-compiled | configs/full.yaml | 1 | – | 0,1 | 40 | 91.00 ± 0.00 | 25.0 ± 1.4 | 4.0 ± 0.0 | 21.0 ± 1.4 |"
        in text
    )
    rows = {row["name"]: row for row in json.loads(md.with_suffix(".json").read_text())["rows"]}
    assert rows["full-compiled"]["fit_less_compile_s"] == pytest.approx([21.0, 2**0.5])
    assert rows["classic"]["test_acc"] == [0.91, None]  # one seed: no spread


def test_report_states_card_data_and_command_and_pairs_ddp_rows_with_one_gpu(gpu_benchmark, tmp_path):
    jobs = [job("full-compiled", s, 1, 100000.0, fit_s=30.0) for s in (0, 1)]
    jobs += [job("full-ddp2-compiled", s, 2, 190000.0, fit_s=40.0, launcher="Lightning") for s in (0, 1)]
    jobs += [job("full-ddp2-torchrun-compiled", s, 2, 195000.0, fit_s=20.0, launcher="torchrun") for s in (0, 1)]
    md = report_of(gpu_benchmark, jobs, tmp_path)
    text = md.read_text()
    assert "Regenerate: `python benchmarks/gpu_benchmark.py suite ddp`" in text
    assert "Card: NVIDIA H200 x2; torch 2" in text and "last job 2026-12-02 10:00 UTC" in text
    assert "Data: JPEG copy of CIFAR-10: 45,000 training / 5,000 validation images." in text
    assert "| full-ddp2-torchrun-compiled | configs/full.yaml | 2 | torchrun | 0,1 |" in text
    assert (
        "- full-ddp2-compiled against full-compiled: 1.90x the train images/s on 2 GPUs, test accuracy +0.00 "
        "points, launch to tested model 1.19x"
    ) in text  # 62 s against 52 s
    assert "- full-ddp2-torchrun-compiled against full-compiled: 1.95x" in text
    summary = json.loads(md.with_suffix(".json").read_text())
    assert summary["command"] == "python benchmarks/gpu_benchmark.py suite ddp" and len(summary["runs"]) == 6


def test_lesson_10_reads_the_tables_the_plans_write(gpu_benchmark, tmp_path):
    """The rows lesson 11 shows, read back by results.benchmark_table from the report's JSON."""
    jobs = [
        job("classic", 0, 1, 12000.0, compile_calls=()),
        job("full-compiled", 0, 1, 1e5),
        job("long-compiled", 0, 1, 8e4),
    ]
    md = report_of(gpu_benchmark, jobs, tmp_path, "gpu-recipes")
    table = results.benchmark_table(md.with_suffix(".json"), ["classic", "full-compiled", "long-compiled"])
    assert table.loc["classic", "compile s"] == "–" and table.loc["full-compiled", "compile s"] == "4.0"
    assert table.attrs["card"] == "NVIDIA H200"
    assert {e.name for e in gpu_benchmark.PLANS["recipes"].entries} == set(table.index)


def test_suite_runs_a_plan_through_the_cli_and_resumes(gpu_benchmark, tmp_path, monkeypatch):
    """The smoke plan on the CPU (tiny synthetic data): a job process fits, tests and writes its JSON; the table
    names the command; ``--resume`` leaves a finished job alone."""
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the suite's handlers belong to its own process
    md = tmp_path / "table.md"
    argv = [
        "suite",
        "smoke",
        "--out",
        str(tmp_path / "jobs"),
        "--run-dir",
        str(tmp_path / "fits"),
        "--md",
        str(md),
        "--",
        *TINY_CPU_FIT,
    ]
    gpu_benchmark.main(argv)
    result = json.loads((tmp_path / "jobs" / "full-compiled-s0.json").read_text())
    assert result["epochs"] == 3 and 0 <= result["test_acc"] <= 1 and result["world_size"] == 1
    assert result["fit_s"] < result["launch_to_fit_end_s"] < result["launch_to_tested_s"]
    assert result["data"] == (
        "synthetic images (no accuracy to read): 576 training / 64 validation images "
        "(a split of the training set), 128 test images"
    )
    assert [e["size"] for e in result["epoch_log"]] == [24, 24, 32]  # ProgressiveCrop, as configs/full.yaml sets it
    assert f"Regenerate: `python benchmarks/gpu_benchmark.py suite smoke --out {tmp_path / 'jobs'}" in md.read_text()
    written = (tmp_path / "jobs" / "full-compiled-s0.json").stat().st_mtime_ns
    gpu_benchmark.main([*argv[:2], "--resume", *argv[2:]])
    assert (tmp_path / "jobs" / "full-compiled-s0.json").stat().st_mtime_ns == written
    assert "--resume" not in json.loads(md.with_suffix(".json").read_text())["command"]  # not part of regenerating


def test_step_timeline_summary_leaves_out_first_and_validated_epochs():
    step_timeline = load_script("diagnose/step_timeline.py")
    rows = [
        {"size": 24, "train_s": 9.0, "host_ms": [1, 90, 90, 1], "gpu_ms": [1, 90, 90, 1]},  # first: compiling
        {"size": 24, "train_s": 0.2, "host_ms": [50, 6, 7, 50], "gpu_ms": [50, 8, 8, 50]},
        {"size": 32, "train_s": 5.0, "host_ms": [1, 70, 70, 1], "gpu_ms": [1, 70, 70, 1]},
        {"size": 32, "train_s": 0.3, "host_ms": [50, 7, 7, 50], "gpu_ms": [50, 12, 12, 50]},
        {"size": 32, "train_s": 1.3, "host_ms": [50, 7, 9, 999], "gpu_ms": [50, 12, 12, 999]},
    ]  # validated
    small, full = step_timeline.size_summary(rows)
    assert small == {"size": 24, "epochs": 1, "epoch_s": 0.2, "host_ms": 6.5, "gpu_ms": 8.0}
    assert full == {"size": 32, "epochs": 1, "epoch_s": 0.3, "host_ms": 7.0, "gpu_ms": 12.0}


def test_step_timeline_records_every_step_of_a_cpu_fit(tmp_path, capsys):
    step_timeline = load_script("diagnose/step_timeline.py")
    step_timeline.main(
        [
            "--out",
            str(tmp_path),
            "--tag",
            "cpu",
            "--",
            "--config",
            str(ROOT / "configs/full.yaml"),
            *TINY_CPU_FIT,
            "--trainer.max_epochs",
            "4",
            "--trainer.check_val_every_n_epoch",
            "4",
        ]
    )
    rows = json.loads((tmp_path / "cpu-r0.json").read_text())
    assert [r["size"] for r in rows] == [24, 24, 24, 32]  # ProgressiveCrop: 3/4 of the epochs at 24 pixels
    assert all(len(r["host_ms"]) == len(r["gpu_ms"]) == 9 for r in rows)  # one per step: 576 training images / 64
    assert "[cpu] 24px, 2 epochs" in capsys.readouterr().out


def test_cpu_track_report_shows_each_runs_tta_scores_and_its_command():
    cpu_track = load_script("cpu_track.py")
    run = {
        "seed": 0,
        "epochs": 8,
        "test_acc": 0.81,
        "val_acc": [0.5, 0.8],
        "epoch_end_s": [60.0, 120.0],
        "fit_s": 120.0,
        "fit_cpu_s": 230.0,
        "test_s": 8.0,
        "command_s": 130.0,
        "val_acc_tta": {"none": 0.79, "flip": 0.80, "flip+shift1": 0.805, "flip+shift2": 0.802},
    }
    summary = {
        "benchmark": "CPU track",
        "started": "now",
        "data": "JPEG copy",
        "cpu": "EPYC",
        "cores": 2,
        "torch": "2",
        "lightning": "2",
        "python": "3",
        "threads_per_run": 1,
        "threads_option": 1,
        "parallel_runs": False,
        "load_average_start": [0],
        "load_average_end": [0],
        "decode_s": 1.0,
        "decode_fresh": True,
        "extra_cli_args": ["--model.tta_translate", "1"],
        "note": "",
        "test_acc_mean": 81.0,
        "test_acc_std": 0.0,
        "fit_min_mean": 2.0,
        "fit_min_std": 0.0,
        "runs": [run],
    }
    text = cpu_track.markdown(summary)
    assert (
        "| seed | none | flip | flip+shift1 | flip+shift2 |" in text and "| 0 | 79.00 | 80.00 | 80.50 | 80.20 |" in text
    )
    assert (
        "Regenerate: `python benchmarks/cpu_track.py --data-dir <cifar10-jpeg> --seeds 0 --threads=1 "
        "--model.tta_translate 1`"
    ) in text


def test_every_results_file_is_current_and_in_the_readme(gpu_benchmark):
    """benchmarks/results/ holds what a benchmark writes today, each file named in benchmarks/README.md."""
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    files = sorted(p.name for p in (ROOT / "benchmarks" / "results").iterdir())
    assert [f for f in files if f not in readme] == []
    stems = {"cpu-track", "cpu-throughput", "lesson-times-laptop", "lesson-times-full"}
    stems |= {p.results for p in gpu_benchmark.PLANS.values() if p.results}
    stems |= {"search", "search-trials", "search-summary", "search-trials.csv", "search-history.csv", "search-runs.csv"}
    stems |= {"search-best.yaml"}  # benchmarks/search_benchmark.py writes these
    assert {re.sub(r"\.(md|json)$", "", f) for f in files if not f.startswith("comparison-")} <= stems
    for plan in ("recipes", "ddp"):
        assert f"python benchmarks/gpu_benchmark.py suite {plan} --data-dir" in readme


SPAWNS_A_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\tZ" not in status.read_text().split("State:")[1].splitlines()[0]  # a zombie has ended
    except (FileNotFoundError, IndexError):
        return False


def wait_for_pid(log: Path) -> int:
    for _ in range(200):
        text = log.read_text().strip()
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the job never started its child")


def test_suite_job_timeout_ends_the_jobs_own_children_too(gpu_benchmark, tmp_path):
    """A DDP job's second process is the first one's child: a timed-out job must not leave it running."""
    log = tmp_path / "job.log"
    with open(log, "w") as f:
        rc = gpu_benchmark.run_in_group([sys.executable, "-c", SPAWNS_A_CHILD], dict(os.environ), f, timeout=3)
    child = wait_for_pid(log)
    time.sleep(0.2)
    assert rc == "timeout" and not alive(child) and not gpu_benchmark.RUNNING_JOBS


def test_stopping_the_suite_ends_its_running_jobs(gpu_benchmark, tmp_path):
    """``timeout`` ending the suite (SIGTERM) takes its running jobs' process groups down before it exits."""
    log = tmp_path / "job.log"
    with open(log, "w") as f:
        runner = threading.Thread(
            target=gpu_benchmark.run_in_group, args=([sys.executable, "-c", SPAWNS_A_CHILD], dict(os.environ), f, 60)
        )
        runner.start()
        child = wait_for_pid(log)
        with pytest.raises(SystemExit) as stopped:
            gpu_benchmark.stop_running_jobs(signal.SIGTERM, None)
        runner.join(timeout=10)
    time.sleep(0.2)
    assert stopped.value.code == 128 + signal.SIGTERM and not alive(child) and not runner.is_alive()

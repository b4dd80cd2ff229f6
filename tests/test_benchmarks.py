"""The GPU benchmark's bookkeeping, on CPU: overheads from the epoch log, DDP rows paired with their single-GPU twin."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A script under benchmarks/ as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_benchmark():
    return load_script("gpu_benchmark")


@pytest.fixture(scope="module")
def profile_fit():
    return load_script("profile_fit")


def epoch(train_s, val_s=None):
    return {"train_s": train_s, "epoch_s": train_s + (val_s or 0.0), "validated": val_s is not None}


def test_first_validation_overhead(gpu_benchmark):
    log = [epoch(20.0), epoch(0.9), epoch(0.9, val_s=12.0), epoch(0.9), epoch(0.9, val_s=0.5), epoch(0.9, val_s=0.7)]
    assert gpu_benchmark.first_validation_overhead(log) == pytest.approx(12.0 - 0.6)
    assert gpu_benchmark.first_validation_overhead(log[:3]) is None  # one validation: nothing to compare with


def job(name, seed, gpus, images_per_s, **extra):
    return {"name": name, "config": "configs/full.yaml", "seed": seed, "extra": [], "world_size": gpus, "epochs": 18,
            "fit_s": 25.0, "data_setup_s": 6.0, "test_acc": 0.88, "val_acc": 0.89, "images_per_s": images_per_s,
            "first_epoch_overhead_s": 1.5, "peak_gpu_mem_gib": 1.5, "versions": {"card": "H100"}, **extra}


def report_of(gpu_benchmark, jobs: list[dict], tmp_path) -> Path:
    """Write each job's JSON as the suite does and run the report over them: the Markdown table's path."""
    files = []
    for j in jobs:
        files.append(tmp_path / f"{j['name']}-s{j['seed']}.json")
        files[-1].write_text(json.dumps(j))
    md = tmp_path / "table.md"
    gpu_benchmark.report(type("Args", (), {"files": [str(f) for f in files], "md": str(md), "quiet": True})())
    return md


def test_report_pairs_ddp_rows_with_their_twin_and_reads_only_job_files(gpu_benchmark, tmp_path):
    jobs = [job("full", 0, 1, 40000.0), job("full", 1, 1, 38000.0), job("full-compiled", 0, 1, 50000.0),
            job("full-ddp2", 0, 2, 39000.0), job("full-ddp2-compiled", 0, 2, 55000.0, first_validation_overhead_s=3.0)]
    md = report_of(gpu_benchmark, jobs, tmp_path)
    text = md.read_text()
    assert "full-ddp2 vs full: 1.00x" in text  # 39,000 / mean(40,000, 38,000)
    assert "full-ddp2-compiled vs full-compiled: 1.10x" in text
    assert "full-ddp2 vs full-compiled" not in text and "full-ddp2-compiled vs full:" not in text
    assert "| 3.0 ± 0.0 |" in text  # the first-validation overhead column
    summary = json.loads(md.with_suffix(".json").read_text())
    assert {row["name"] for row in summary["rows"]} == {"full", "full-compiled", "full-ddp2", "full-ddp2-compiled"}


def test_overheads_and_throughput_per_input_size(gpu_benchmark):
    """ProgressiveCrop switches 24 -> 32 pixels: each size's first epoch pays its own compile/autotune."""
    log = [dict(epoch(t), size=size, images=45000) for t, size in
           [(20.0, 24), (0.5, 24), (0.5, 24), (30.0, 32), (0.9, 32), (0.9, 32)]]
    assert gpu_benchmark.first_epochs_overhead(log) == pytest.approx(19.5 + 29.1)
    assert gpu_benchmark.steady_images_per_s(log) == pytest.approx(4 * 45000 / 2.8)  # first epoch of each size left out
    old = [dict(epoch(t), images=45000) for t in (3.0, 1.0, 1.0)]  # logs from before sizes were recorded
    assert gpu_benchmark.first_epochs_overhead(old) == pytest.approx(2.0)


def test_profile_fit_summarises_a_window_on_cpu(profile_fit):
    """profile_fit's per-step summary from a CPU-only profile: no GPU time, launches or syncs, the ops table."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(4):
            torch.randn(64, 64) @ torch.randn(64, 64)
    text = profile_fit.window_summary(prof, steps=4, wall_s=0.02, label="test window")
    assert text.startswith("== test window: 4 steps\nwall 5.00 ms/step, GPU kernels 0.00 ms/step (0% busy), 0 launches/step")
    assert "aten::mm" in text


def test_profile_fit_refuses_a_window_longer_than_an_epoch(profile_fit):
    """DDP at a global batch of 2048 has 22 steps per epoch: the default window (steps 20-39) would never close."""
    assert profile_fit.window_error(88, first=20, steps=20) is None and profile_fit.window_error(40, 20, 20) is None
    error = profile_fit.window_error(22, first=20, steps=20)
    assert "an epoch has 22 steps" in error and error.endswith("pass e.g. --first 5 --steps 17")
    assert profile_fit.window_error(22, 5, 17) is None


def test_report_tabulates_validation_accuracy_under_each_tta(gpu_benchmark, tmp_path):
    scores = [{"none": 0.90, "flip": 0.91, "flip+shift1": 0.915, "flip+shift2": 0.912},
              {"none": 0.92, "flip": 0.93, "flip+shift1": 0.925, "flip+shift2": 0.918}]
    files = []
    for seed, tta in enumerate(scores):
        files.append(tmp_path / f"full-s{seed}.json")
        files[-1].write_text(json.dumps(job("full", seed, 1, 40000.0, val_acc_tta=tta)))
    md = tmp_path / "table.md"
    gpu_benchmark.report(type("Args", (), {"files": [str(f) for f in files], "md": str(md), "quiet": True})())
    assert "| full | 0,1 | 91.00 ± 1.41 | 92.00 ± 1.41 | 92.00 ± 0.71 | 91.50 ± 0.42 |" in md.read_text()


def test_cpu_track_report_shows_each_runs_tta_scores():
    cpu_track = load_script("cpu_track")
    run = {"seed": 0, "epochs": 8, "test_acc": 0.81, "val_acc": [0.5, 0.8], "epoch_end_s": [60.0, 120.0], "fit_s": 120.0,
           "fit_cpu_s": 230.0, "test_s": 8.0, "command_s": 130.0,
           "val_acc_tta": {"none": 0.79, "flip": 0.80, "flip+shift1": 0.805, "flip+shift2": 0.802}}
    summary = {"benchmark": "CPU track", "started": "now", "data": "JPEG copy", "cpu": "EPYC", "cores": 2, "torch": "2",
               "lightning": "2", "python": "3", "threads_per_run": 2, "parallel_runs": False, "load_average_start": [0],
               "load_average_end": [0], "decode_s": 1.0, "decode_fresh": True, "extra_cli_args": [], "note": "",
               "test_acc_mean": 81.0, "test_acc_std": 0.0, "fit_min_mean": 2.0, "fit_min_std": 0.0, "runs": [run]}
    text = cpu_track.markdown(summary)
    assert "| seed | none | flip | flip+shift1 | flip+shift2 |" in text and "| 0 | 79.00 | 80.00 | 80.50 | 80.20 |" in text


def compiled_fit_phases(checkpoints: int = 1) -> dict:
    """A compiled fit's phases as run_job records them: 2.5 s in torch.compile's call, 0.3 s per checkpoint save."""
    return {"before_fit_start_hook_s": 3.0, "before_first_epoch_s": 3.1, "after_last_epoch_s": 0.1,
            "validation_s": [0.4], "checkpoint_s": [0.3] * checkpoints, "compile_setup_s": [2.5]}


def test_compile_time_and_the_fit_besides_it(gpu_benchmark, tmp_path):
    """Compile = torch.compile's own call + the first-epoch overhead; the table's fit s less compile subtracts both."""
    phases = compiled_fit_phases(checkpoints=2)
    jobs = [job("full-compiled", seed, 1, 100000.0, fit_s=fit, fit_phases=phases, logger="CSVLogger")
            for seed, fit in ((0, 24.0), (1, 26.0))]
    assert gpu_benchmark.compile_s(jobs[0]) == pytest.approx(1.5 + 2.5)
    assert gpu_benchmark.compile_s(job("old", 0, 1, 1.0)) == pytest.approx(1.5)  # older JSONs: no phases
    md = report_of(gpu_benchmark, jobs, tmp_path)
    assert "| full-compiled | 25.00 ± 1.41 | 4.00 ± 0.00 | 21.00 ± 1.41 | 3.10 ± 0.00 | 0.40 ± 0.00 | 0.60 ± 0.00 (2) |" \
        in md.read_text()
    row = json.loads(md.with_suffix(".json").read_text())["rows"][0]
    assert row["fit_less_compile_s"] == pytest.approx([21.0, 2 ** 0.5])


def test_launch_to_fit_end_is_tabulated_and_a_torchrun_row_pairs_with_one_gpu(gpu_benchmark, tmp_path):
    """The seconds from the suite's launch to a trained model (every process's start included) get their column, and
    a DDP row started by torchrun is compared with the same single-GPU twin as one started by Lightning."""
    phases = compiled_fit_phases()
    jobs = [job("full-compiled", 0, 1, 100000.0, fit_s=30.0, fit_phases=phases, launch_to_fit_end_s=41.5),
            job("full-ddp2-torchrun-compiled", 0, 2, 190000.0, fit_s=40.0, fit_phases=phases, launch_to_fit_end_s=52.25)]
    text = report_of(gpu_benchmark, jobs, tmp_path).read_text()
    assert "launch to fit end s" in text
    assert "| 0.10 ± 0.00 | 41.50 ± 0.00 |" in text and "| 0.10 ± 0.00 | 52.25 ± 0.00 |" in text
    assert "full-ddp2-torchrun-compiled vs full-compiled: 1.90x" in text


def test_a_torchrun_job_starts_every_process_at_once(gpu_benchmark):
    """Only a multi-GPU job named for torchrun goes through torch.distributed.run, with a process per GPU."""
    assert gpu_benchmark.launcher("full-ddp2-torchrun-compiled", 2)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert gpu_benchmark.launcher("full-ddp2-compiled", 2) == [sys.executable]
    assert gpu_benchmark.launcher("torchrun-alone", 1) == [sys.executable]


def test_a_fit_that_never_compiled_has_no_compile_time(gpu_benchmark, tmp_path):
    """An eager run (the classic recipe): its first-epoch overhead is not compiling; the fit besides compiling is
    the whole fit."""
    phases = {"before_fit_start_hook_s": 1.0, "before_first_epoch_s": 1.7, "after_last_epoch_s": 0.5,
              "validation_s": [0.4], "checkpoint_s": [0.3], "compile_setup_s": []}
    eager = job("classic", 0, 1, 12000.0, fit_s=141.0, fit_phases=phases, logger="CSVLogger")
    assert gpu_benchmark.compile_s(eager) is None
    md = report_of(gpu_benchmark, [eager], tmp_path)
    assert "| classic | 141.00 ± 0.00 | – | 141.00 ± 0.00 |" in md.read_text()


def test_timed_calls_records_each_call_and_passes_results_through(gpu_benchmark):
    owner = type("Owner", (), {})()
    owner.work = lambda x: x * 2
    seconds = gpu_benchmark.timed_calls(owner, "work")
    assert owner.work(3) == 6 and owner.work(4) == 8
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)


def test_step_timeline_summary_leaves_out_first_and_validated_epochs():
    step_timeline = load_script("step_timeline")
    rows = [{"size": 24, "train_s": 9.0, "host_ms": [1, 90, 90, 1], "gpu_ms": [1, 90, 90, 1]},  # first: compiling
            {"size": 24, "train_s": 0.2, "host_ms": [50, 6, 7, 50], "gpu_ms": [50, 8, 8, 50]},
            {"size": 32, "train_s": 5.0, "host_ms": [1, 70, 70, 1], "gpu_ms": [1, 70, 70, 1]},
            {"size": 32, "train_s": 0.3, "host_ms": [50, 7, 7, 50], "gpu_ms": [50, 12, 12, 50]},
            {"size": 32, "train_s": 1.3, "host_ms": [50, 7, 9, 999], "gpu_ms": [50, 12, 12, 999]}]  # validated
    small, full = step_timeline.size_summary(rows)
    assert small == {"size": 24, "epochs": 1, "epoch_s": 0.2, "host_ms": 6.5, "gpu_ms": 8.0}
    assert full == {"size": 32, "epochs": 1, "epoch_s": 0.3, "host_ms": 7.0, "gpu_ms": 12.0}


def test_step_timeline_records_every_step_of_a_cpu_fit(tmp_path, capsys):
    step_timeline = load_script("step_timeline")
    step_timeline.main(["--out", str(tmp_path), "--tag", "cpu", "--", "--config", str(ROOT / "configs/full.yaml"),
                        "--data.source", "synthetic", "--data.synthetic_size", "[640, 64]", "--data.batch_size", "64",
                        "--model.backbone.width", "8", "--trainer.accelerator", "cpu", "--trainer.max_epochs", "4",
                        "--trainer.check_val_every_n_epoch", "4", "--trainer.enable_progress_bar", "false"])
    rows = json.loads((tmp_path / "cpu-r0.json").read_text())
    assert [r["size"] for r in rows] == [24, 24, 24, 32]  # ProgressiveCrop: 3/4 of the epochs at 24 pixels
    assert all(len(r["host_ms"]) == len(r["gpu_ms"]) == 9 for r in rows)  # one per step: 576 training images / 64
    assert "[cpu] 24px, 2 epochs" in capsys.readouterr().out


SPAWNS_A_CHILD = ("import subprocess, sys, time\n"
                  "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                  "print(child.pid, flush=True)\n"
                  "time.sleep(120)\n")


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
        runner = threading.Thread(target=gpu_benchmark.run_in_group,
                                  args=([sys.executable, "-c", SPAWNS_A_CHILD], dict(os.environ), f, 60))
        runner.start()
        child = wait_for_pid(log)
        with pytest.raises(SystemExit) as stopped:
            gpu_benchmark.stop_running_jobs(signal.SIGTERM, None)
        runner.join(timeout=10)
    time.sleep(0.2)
    assert stopped.value.code == 128 + signal.SIGTERM and not alive(child) and not runner.is_alive()

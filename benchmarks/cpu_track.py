"""Benchmark of the CPU track: configs/cpu.yaml on the full training split, per seed, on this CPU.

    python benchmarks/cpu_track.py --data-dir <cifar10-jpeg>     # seeds 0, 1, 2: about half an hour on 2 cores

Each seed runs the CLI (``python -m cifar_lightning fit --config configs/cpu.yaml --data.source folder ...``) in
its own process, timed from outside (whole command) and inside (``trainer.fit`` alone, and the final test).
Decoding the JPEGs is paid once, before the runs, and reported on its own line. Writes
``benchmarks/results/cpu-track.{md,json}`` with the CPU, cores, versions, threads, load average, and per seed
the test and best validation accuracy and the times. Tune on the validation accuracy only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "cpu.yaml"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(seed: int, out: Path, cli_args: list[str]) -> None:
    """Worker: the CLI's fit (then test of the best checkpoint) in this process, with a clock callback."""
    import lightning as L
    import torch
    from lightning.pytorch.trainer.states import TrainerFn

    from cifar_lightning.callbacks import best_checkpoint
    from cifar_lightning.cli import build_cli
    from cifar_lightning.experiment import validate_tta_variants

    class Clock(L.Callback):
        """Wall and CPU seconds of fit and test, and each epoch's validation accuracy."""

        def __init__(self):
            self.record = {"val_acc": [], "epoch_end_s": []}

        def on_fit_start(self, trainer, pl_module):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_validation_epoch_end(self, trainer, pl_module):
            # the fit's own validations only (not the trainer.validate calls after it)
            if (
                trainer.state.fn == TrainerFn.FITTING
                and not trainer.sanity_checking
                and "val_acc" in trainer.callback_metrics
            ):
                self.record["val_acc"].append(round(float(trainer.callback_metrics["val_acc"]), 4))
                self.record["epoch_end_s"].append(round(time.perf_counter() - self.t0, 1))

        def on_fit_end(self, trainer, pl_module):
            self.record["fit_s"] = time.perf_counter() - self.t0
            self.record["fit_cpu_s"] = time.process_time() - self.c0

        def on_test_start(self, trainer, pl_module):
            self.t1 = time.perf_counter()

        def on_test_end(self, trainer, pl_module):
            self.record["test_s"] = time.perf_counter() - self.t1
            self.record["test_acc"] = float(trainer.callback_metrics["test_acc"])

    clock = Clock()
    run_dir = out.parent / f"seed{seed}"
    args = ["fit", "--config", str(CONFIG), "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false"]
    cli = build_cli([*args, *cli_args], trainer_defaults={"default_root_dir": str(run_dir), "callbacks": [clock]})
    clock.record.update(
        seed=seed,
        threads=torch.get_num_threads(),
        epochs=cli.trainer.current_epoch,
        train_images=len(cli.datamodule.train_labels),
        test_images=len(cli.datamodule.test_labels),
    )
    # the same best checkpoint scored on validation under each test-time augmentation
    clock.record["val_acc_tta"] = validate_tta_variants(
        cli.trainer, cli.model, cli.datamodule, best_checkpoint(cli.trainer)
    )
    out.write_text(json.dumps(clock.record))


def main() -> None:
    # allow_abbrev=False: the CLI's own options (--data.data_dir, ...) pass through untouched
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data-dir", help="the JPEG copy: <dir>/{train,test}/<class>/*.jpg")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache-dir", default=None, help="decoded-array cache (default: a fresh temporary one)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's, one a core)")
    p.add_argument("--parallel", action="store_true", help="run the seeds at the same time (for a shared machine)")
    p.add_argument("--name", default="cpu-track", help="results file stem under benchmarks/results/")
    p.add_argument("--note", default="", help="a line for the results file, e.g. what else ran on the machine")
    p.add_argument("--worker", nargs=2, metavar=("SEED", "OUT"), help=argparse.SUPPRESS)
    args, cli_args = p.parse_known_args()
    if args.worker:
        return run_one(int(args.worker[0]), Path(args.worker[1]), cli_args)
    if not args.data_dir:
        p.error("--data-dir is required: the JPEG copy of CIFAR-10, <dir>/{train,test}/<class>/*.jpg")

    import lightning
    import torch

    from cifar_lightning import sources

    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="cpu-track-cache-"))
    fresh = not any(cache_dir.glob("folder-*.npz"))
    t = time.perf_counter()
    sources.load_cached("folder", args.data_dir, cache_dir)
    decode_s = time.perf_counter() - t

    common = [
        "--data.source",
        "folder",
        "--data.data_dir",
        args.data_dir,
        "--data.cache_dir",
        str(cache_dir),
        *cli_args,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="cpu-track-"))
    load_start = load_average()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    procs = []
    for seed in args.seeds:
        cmd = [sys.executable, __file__, "--worker", str(seed), str(work / f"seed{seed}.json"), *common]
        procs.append((seed, time.perf_counter(), subprocess.Popen(cmd, env=env, cwd=ROOT)))
        if not args.parallel:
            procs[-1] = (*procs[-1], procs[-1][2].wait(), time.perf_counter())
    runs = []
    for entry in procs:
        seed, t0, proc = entry[:3]
        rc, t1 = (entry[3], entry[4]) if len(entry) == 5 else (proc.wait(), time.perf_counter())
        if rc != 0:
            sys.exit(f"error: the run with seed {seed} failed (exit status {rc})")
        record = json.loads((work / f"seed{seed}.json").read_text())
        record["command_s"] = t1 - t0
        runs.append(record)
    load_end = load_average()

    accs = [r["test_acc"] * 100 for r in runs]
    fits = [r["fit_s"] / 60 for r in runs]
    summary = {
        "benchmark": f"CPU track (configs/cpu.yaml) {' '.join(cli_args)}".strip(),
        "data": "JPEG copy of CIFAR-10",
        "started": started,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "threads_per_run": runs[0]["threads"],
        "threads_option": args.threads,
        "parallel_runs": args.parallel,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "note": args.note,
        "decode_s": decode_s,
        "decode_fresh": fresh,
        "extra_cli_args": cli_args,
        "runs": runs,
        "test_acc_mean": statistics.mean(accs),
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "fit_min_mean": statistics.mean(fits),
        "fit_min_std": statistics.stdev(fits) if len(fits) > 1 else 0.0,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(summary))
    print(markdown(summary))


def command(s: dict) -> str:
    """The command that regenerates a summary (the data dir as a placeholder: it is the reader's own)."""
    seeds = [str(r["seed"]) for r in s["runs"]]
    parts = ["--seeds", *seeds] if seeds != ["0", "1", "2"] else []
    parts += ["--parallel"] if s["parallel_runs"] else []
    parts += [f"--threads={s['threads_option']}"] if s.get("threads_option") else []
    return " ".join(
        ["python benchmarks/cpu_track.py --data-dir <cifar10-jpeg>", *map(shlex.quote, parts + s["extra_cli_args"])]
    )


def markdown(s: dict) -> str:
    pm = "\u00b1"
    lines = [
        f"# {s['benchmark']}",
        "",
        f"Written by `benchmarks/cpu_track.py` on {s['started']}. Data: **{s['data']}** (45k train / 5k val split "
        "of the training set, the official 10k test set). Regenerate: `" + command(s) + "`",
        "",
        f"- CPU: {s['cpu']}, {s['cores']} cores; torch {s['torch']}, lightning {s['lightning']}, Python {s['python']}",
        f"- torch threads per run: {s['threads_per_run']}; runs "
        + ("in parallel" if s["parallel_runs"] else "one after another"),
        f"- load average (1/5/15 min) at start {s['load_average_start']}, at end {s['load_average_end']}",
        f"- decoding the JPEGs into the array cache: {s['decode_s']:.0f} s "
        f"({'fresh decode' if s['decode_fresh'] else 'cache hit'}), paid once, not in the times below",
    ]
    if s["extra_cli_args"]:
        lines.append(f"- extra CLI arguments: `{' '.join(s['extra_cli_args'])}`")
    if s["note"]:
        lines.append(f"- note: {s['note']}")
    lines += [
        "",
        f"**Test accuracy {s['test_acc_mean']:.2f} {pm} {s['test_acc_std']:.2f} % (JPEG copy of CIFAR-10), "
        f"`trainer.fit` {s['fit_min_mean']:.1f} {pm} {s['fit_min_std']:.1f} min** (mean {pm} std over "
        f"{len(s['runs'])} seeds)",
        "",
        "| seed | epochs | test acc % | best val acc % | fit min | fit CPU min | test s | whole command min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        lines.append(
            f"| {r['seed']} | {r['epochs']} | {r['test_acc'] * 100:.2f} | {max(r['val_acc']) * 100:.2f} | "
            f"{r['fit_s'] / 60:.1f} | {r['fit_cpu_s'] / 60:.1f} | {r['test_s']:.0f} | {r['command_s'] / 60:.1f} |"
        )
    lines += ["", "Validation accuracy by epoch (%), and minutes into fit at each epoch's end:", ""]
    for r in s["runs"]:
        curve = ", ".join(f"{a * 100:.1f} ({m / 60:.1f})" for a, m in zip(r["val_acc"], r["epoch_end_s"], strict=True))
        lines.append(f"- seed {r['seed']}: {curve}")
    tta = [r for r in s["runs"] if r.get("val_acc_tta")]
    if tta:  # the best checkpoint of each run validated again under each test-time augmentation
        names = list(tta[0]["val_acc_tta"])
        lines += [
            "",
            "Validation accuracy (%) of each run's best checkpoint under each test-time augmentation:",
            "",
            "| seed | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        lines += [
            f"| {r['seed']} | " + " | ".join(f"{r['val_acc_tta'][n] * 100:.2f}" for n in names) + " |" for r in tta
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

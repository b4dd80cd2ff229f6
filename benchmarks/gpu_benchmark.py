"""The GPU benchmarks: a plan's jobs through the project's CLI, one results file pair per plan.

    python benchmarks/gpu_benchmark.py suite recipes --data-dir <cifar10-jpeg>   # writes results/gpu-recipes.{md,json}
    python benchmarks/gpu_benchmark.py suite ddp --data-dir <cifar10-jpeg>       # writes results/gpu-ddp.{md,json}
    python benchmarks/gpu_benchmark.py suite smoke --data-dir <cifar10-jpeg>     # 3 epochs: the machine and data work

``--data-dir`` is an image-folder copy of CIFAR-10 (``<dir>/{train,test}/<class>/*.jpg``, e.g. the JPEG copy); the
jobs read it with ``--data.source folder``, decoded once into ``--cache-dir`` (default ``$PATH_DATASETS/cache``).
Without it the jobs use the configs' own data options. CLI options after ``--`` go to every job.

``suite`` runs the plan's jobs (a config, options, a seed) one at a time, each as its own process, so that no job
shares the host with another: single-GPU jobs on the first GPU, then multi-GPU jobs on as many GPUs as each needs,
started by Lightning's launcher or by torchrun. A job times ``Trainer.fit``, tests the best checkpoint and writes one
JSON; after every job the plan's table is rewritten, so a suite cut short keeps its finished jobs (``--resume`` then
runs only the rest). ``report`` rebuilds a table from job JSONs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import TorchElasticEnvironment
from lightning.pytorch.trainer.states import TrainerFn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from cifar_lightning import sources  # noqa: E402
from cifar_lightning.callbacks import best_checkpoint  # noqa: E402
from cifar_lightning.cli import build_cli  # noqa: E402
from cifar_lightning.tracking.results import format_mean_std  # noqa: E402

SEEDS = (0, 1, 2)
COMPILED = ("--model.compile", "reduce-overhead")  # CUDA graphs for the training steps


def ddp(gpus: int) -> tuple[str, ...]:
    """configs/ddp.yaml's recipe on top of configs/full.yaml, on ``gpus`` GPUs, compiled."""
    return ("--config", "configs/ddp.yaml", "--trainer.devices", str(gpus), *COMPILED)


@dataclass(frozen=True)
class Entry:
    """A row of a plan: a config with extra CLI options, run once per seed on ``gpus`` GPUs."""

    name: str
    config: str
    seeds: tuple[int, ...]
    gpus: int = 1
    options: tuple[str, ...] = ()
    torchrun: bool = False  # start every process at once with torch.distributed.run, not Lightning's launcher


@dataclass(frozen=True)
class Plan:
    title: str
    entries: tuple[Entry, ...]
    results: str | None = None  # the file stem under benchmarks/results/ that the plan regenerates


PLANS = {
    "recipes": Plan(
        "The recipes on one GPU",
        (
            Entry("classic", "configs/classic.yaml", (0,)),
            Entry("full-compiled", "configs/full.yaml", SEEDS, options=COMPILED),
            Entry("long-compiled", "configs/long.yaml", SEEDS, options=COMPILED),
        ),
        results="gpu-recipes",
    ),
    "ddp": Plan(
        "DDP: configs/full.yaml on one GPU against configs/ddp.yaml on several",
        (
            Entry("full-compiled", "configs/full.yaml", SEEDS, options=COMPILED),
            *(
                Entry(
                    f"full-ddp{gpus}{'-torchrun' if torchrun else ''}-compiled",
                    "configs/full.yaml",
                    SEEDS,
                    gpus,
                    ddp(gpus),
                    torchrun,
                )
                for gpus in (2, 4)
                for torchrun in (False, True)
            ),
        ),
        results="gpu-ddp",
    ),
    # 3 epochs: ProgressiveCrop's 24-pixel crops for round(0.75 x 3) = 2 of them, then one at 32 (both graphs);
    # validated at the end, so that there is a best checkpoint to test
    "smoke": Plan(
        "Smoke test: 3 epochs of configs/full.yaml",
        (
            Entry(
                "full-compiled",
                "configs/full.yaml",
                (0,),
                options=("--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "3", *COMPILED),
            ),
        ),
    ),
}


def plan_jobs(plan: Plan, n_gpus: int) -> tuple[list, list, list]:
    """``(single, multi, skipped)`` lists of ``(entry, seed)``: the single-GPU jobs in plan order, the multi-GPU
    jobs that fit on ``n_gpus`` by GPU count then seed (each launcher's seed 0 before either's seed 1, so that a
    machine that drifts during the suite treats both alike), and those that need more GPUs than there are."""
    jobs = [(e, seed) for e in plan.entries for seed in e.seeds]
    multi = sorted((j for j in jobs if 1 < j[0].gpus <= n_gpus), key=lambda j: (j[0].gpus, j[1]))
    return [j for j in jobs if j[0].gpus == 1], multi, [j for j in jobs if j[0].gpus > n_gpus]


class Recorder(L.Callback):
    """Times every training epoch twice: training batches only (for images/s) and with validation, and marks when
    the fit's first epoch starts and its last ends. The clock waits for the GPU, as EpochTimer's does."""

    def __init__(self):
        self.epochs: list[dict] = []
        self.val_acc: list[float] = []
        self.marks: dict[str, float] = {}
        self.validations: list[float] = []  # seconds of each of the fit's validations

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_validation_start(self, trainer, pl_module):
        self.val_start = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module):  # after ModelCheckpoint's save of the best weights
        if trainer.state.fn == TrainerFn.FITTING:
            self.validations.append(self._now(pl_module) - self.val_start)

    def on_train_epoch_start(self, trainer, pl_module):
        self.start, self.images, self.validated = self._now(pl_module), 0, False
        self.marks.setdefault("first_epoch_start", self.start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])
        if batch_idx == trainer.num_training_batches - 1:
            self.train_end = self._now(pl_module)
            self.size = batch[0].shape[-1]  # the input size (ProgressiveCrop changes it)

    def on_validation_epoch_end(self, trainer, pl_module):
        if (
            trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and "val_acc" in trainer.callback_metrics
        ):
            self.val_acc.append(float(trainer.callback_metrics["val_acc"]))
            self.validated = True

    def on_train_epoch_end(self, trainer, pl_module):
        end = self._now(pl_module)
        images = self.images * trainer.world_size  # every rank trains on its own shard
        train_s = self.train_end - self.start
        self.epochs.append(
            {
                "train_s": train_s,
                "epoch_s": end - self.start,
                "images": images,
                "images_per_s": images / train_s,
                "validated": self.validated,
                "size": self.size,
            }
        )
        self.marks["last_epoch_end"] = end


def timed_calls(owner, name: str) -> list[float]:
    """Replace ``owner.name`` by a wrapper that records the seconds of each call (the list returned)."""
    seconds, call = [], getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(owner, name, timed)
    return seconds


def fit_phases(
    rec: Recorder, fit_start: float, fit_end: float, checkpoint_s: list[float], compile_setup_s: list[float]
) -> dict:
    """Where a fit's seconds went outside its training steps: before the first epoch (Lightning's setup, DDP's
    process start and join, moving the model; ``compile_setup_s``: ``torch.compile``'s own call, which imports the
    compiler), after the last one, validations, checkpoint saves (every ModelCheckpoint save goes through
    ``trainer.save_checkpoint``)."""
    return {
        "before_first_epoch_s": rec.marks.get("first_epoch_start", fit_start) - fit_start,
        "after_last_epoch_s": fit_end - rec.marks.get("last_epoch_end", fit_end),
        "validation_s": rec.validations,
        "checkpoint_s": checkpoint_s,
        "compile_setup_s": compile_setup_s,
    }


def compile_s(result: dict) -> float | None:
    """A fit's one-off compile time: ``torch.compile``'s own call and the first epoch at each input size beyond a
    steady one (graph builds, cuDNN autotuning). None for a fit that never called ``torch.compile``."""
    calls = result["fit_phases"]["compile_setup_s"]
    return result["first_epoch_overhead_s"] + sum(calls) if calls else None


def by_size(epochs: list[dict]) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for e in epochs:
        groups.setdefault(e["size"], []).append(e)
    return groups


def first_epochs_overhead(epochs: list[dict]) -> float:
    """Extra time of the first epoch at each input size over a later one at that size (torch.compile builds a graph
    per size, cuDNN autotunes per size)."""
    return sum(
        group[0]["train_s"] - statistics.median(e["train_s"] for e in group[1:])
        for group in by_size(epochs).values()
        if len(group) > 1
    )


def steady_images_per_s(epochs: list[dict]) -> float:
    """Training images per second over the whole run, leaving out the first epoch at each input size."""
    steady = [e for group in by_size(epochs).values() for e in (group[1:] or group)]
    return sum(e["images"] for e in steady) / sum(e["train_s"] for e in steady)


def versions() -> dict:
    import torchvision

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    if torch.cuda.is_available():
        info["card"], info["gpus"] = torch.cuda.get_device_name(0), torch.cuda.device_count()
    else:
        info["card"], info["gpus"] = f"none (CPU, {os.cpu_count()} cores)", 0
    return info


def data_description(dm) -> str:
    """What the job trained, validated and tested on, as the results file says it (after ``dm.setup``)."""
    if dm.source == "folder":
        first = next(Path(dm.data_dir, "train").glob("*/*"), Path())
        kind = "JPEG" if first.suffix.lower() in (".jpg", ".jpeg") else first.suffix.lstrip(".").upper()
        about = f"{kind} copy of CIFAR-10"
    else:
        about = {"synthetic": "synthetic images (no accuracy to read)"}.get(dm.source, "CIFAR-10 (the original files)")
    return (
        f"{about}: {len(dm.train_labels):,} training / {len(dm.val_labels):,} validation images (a split of "
        f"the training set), {len(dm.test_labels):,} test images"
    )


def run_job(args, extra: list[str]) -> None:
    """One fit and test through the CLI; rank 0 writes the JSON. Under DDP every rank runs this same command."""
    rec = Recorder()
    run_dir = Path(args.run_dir) / f"{args.name}-s{args.seed}"
    data = ["--data.source", "folder", "--data.data_dir", args.data_dir] if args.data_dir else []
    data += ["--data.cache_dir", args.cache_dir] if args.cache_dir else []
    cli = build_cli(
        ["--config", str(ROOT / args.config), "--seed_everything", str(args.seed), *data, *extra],
        run=False,
        trainer_defaults={"default_root_dir": str(run_dir), "callbacks": [rec]},
    )
    trainer = cli.trainer
    # Load the decoded data set before the clock starts (fit would do it in DataModule.setup): timed apart.
    t_setup = time.perf_counter()
    cli.datamodule.setup("fit")
    setup_s = time.perf_counter() - t_setup
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    checkpoint_s, compile_setup_s = timed_calls(trainer, "save_checkpoint"), timed_calls(torch, "compile")
    start = time.perf_counter()
    trainer.fit(cli.model, datamodule=cli.datamodule)
    end = time.perf_counter()
    launched = args.launched_at or time.time() - (end - start)  # without the suite's launch time: fit alone
    launch_to_fit_end_s = time.time() - launched  # every process's start, imports and data loading included
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    test = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best_checkpoint(trainer), verbose=False)
    launch_to_tested_s = time.time() - launched
    if not trainer.is_global_zero:
        return
    result = {
        "name": args.name,
        "config": args.config,
        "seed": args.seed,
        "extra": extra,
        "world_size": trainer.world_size,
        "launcher": "torchrun" if TorchElasticEnvironment.detect() else "Lightning" if trainer.world_size > 1 else "",
        "data": data_description(cli.datamodule),
        "epochs": len(rec.epochs),
        "fit_s": end - start,
        "launch_to_fit_end_s": launch_to_fit_end_s,
        "launch_to_tested_s": launch_to_tested_s,
        "data_setup_s": setup_s,
        "test_acc": float(test[0]["test_acc"]),
        "val_acc": rec.val_acc[-1] if rec.val_acc else None,
        "epoch_log": rec.epochs,
        "images_per_s": steady_images_per_s(rec.epochs),
        "first_epoch_overhead_s": first_epochs_overhead(rec.epochs),
        "fit_phases": fit_phases(rec, start, end, list(checkpoint_s), list(compile_setup_s)),
        "peak_gpu_mem_gib": peak,
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"RESULT {args.name} seed={args.seed} fit={result['fit_s']:.1f}s test={result['test_acc']:.4f} "
        f"img/s={result['images_per_s']:.0f} launch-to-tested={launch_to_tested_s:.1f}s"
    )


def launcher(gpus: int, torchrun: bool) -> list[str]:
    """The command that starts a job's processes. torchrun starts all of them at once (their imports and data loading
    overlap, before ``fit``); otherwise one process starts, and under DDP Lightning's launcher starts the others when
    ``fit`` begins."""
    if torchrun and gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}"]
    return [sys.executable]


RUNNING_JOBS: set[subprocess.Popen] = set()


def run_in_group(cmd: list[str], env: dict, log, timeout: float) -> int | str:
    """Run one job in a process group of its own and wait for it; at ``timeout`` kill the whole group: a DDP job's
    other processes are the first one's children, and killing only the first would leave them on the GPUs."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    RUNNING_JOBS.add(proc)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return "timeout"
    finally:
        RUNNING_JOBS.discard(proc)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    proc.wait()


def stop_running_jobs(signum, frame) -> None:
    """SIGTERM/SIGINT handler of ``suite`` (e.g. ``timeout`` ending it): take the running jobs' groups down too."""
    for proc in list(RUNNING_JOBS):
        kill_group(proc)
    sys.exit(128 + signum)


def job_files(out: Path) -> list[str]:
    return sorted(str(p) for p in out.glob("*.json") if re.search(r"-s\d+\.json$", p.name))


def run_suite(args, extra: list[str], argv: list[str]) -> None:
    """Run a plan's jobs one at a time, so that none shares the host's CPU cores with another (compiling and the
    classic recipe's loader workers use them): the single-GPU jobs on the first GPU, then the multi-GPU jobs. The
    table is rewritten after every job."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_running_jobs)
    plan = PLANS[args.plan]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_ids = visible.split(",") if visible else [str(g) for g in range(max(torch.cuda.device_count(), 1))]
    single, multi, skipped = plan_jobs(plan, len(gpu_ids))
    for entry, seed in skipped:
        print(f"skip {entry.name} seed {seed}: needs {entry.gpus} GPUs, {len(gpu_ids)} here")
    out = Path(args.out or f"runs/benchmark/{args.plan}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    md = Path(args.md or (RESULTS / f"{plan.results}.md" if plan.results else out / "table.md")).resolve()
    command = shlex.join(["python", "benchmarks/gpu_benchmark.py", *(a for a in argv if a != "--resume")])
    where = []  # absolute paths: the jobs run in the project's root
    for option, path in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir), ("--run-dir", args.run_dir)):
        where += [option, str(Path(path).resolve()) if path else ""]
    if args.data_dir:  # decode the images once, not in the first job's timings
        start = time.perf_counter()
        sources.load_cached("folder", args.data_dir, args.cache_dir)
        print(f"data ready in {time.perf_counter() - start:.1f}s", flush=True)
    failed = []
    for entry, seed in [*single, *multi]:
        result = out / f"{entry.name}-s{seed}.json"
        if args.resume and result.exists():
            continue
        cmd = [*launcher(entry.gpus, entry.torchrun), str(Path(__file__).resolve()), "job", *where]
        cmd += ["--name", entry.name, "--config", entry.config, "--seed", str(seed), "--out", str(result)]
        cmd += ["--launched-at", f"{time.time():.3f}", "--", *entry.options, *extra]
        devices, log, start = ",".join(gpu_ids[: entry.gpus]), out / f"{entry.name}-s{seed}.log", time.perf_counter()
        with open(log, "w") as f:
            rc = run_in_group(cmd, dict(os.environ, CUDA_VISIBLE_DEVICES=devices), f, args.job_timeout)
        print(
            f"[{time.strftime('%H:%M:%S')}] {entry.name} seed {seed} on GPU {devices}: rc={rc} "
            f"{time.perf_counter() - start:.0f}s",
            flush=True,
        )
        if rc != 0:
            failed.append(f"{entry.name} seed {seed}")
            print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:]), flush=True)
        if job_files(out):  # a suite cut short still leaves its finished jobs' table
            report(job_files(out), md, plan.title, command, quiet=True)
    print(f"table: {md}" if job_files(out) else "no job finished")
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (logs in {out})")


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard deviation over seeds; no spread from one value."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def twin(name: str) -> str:
    """The single-GPU row a multi-GPU row is compared with: its name without the DDP part."""
    return re.sub(r"-ddp\d+(-torchrun)?", "", name)


def summarise(name: str, rs: list[dict]) -> dict:
    """One table row: the runs of one plan entry, mean ± std over their seeds."""
    rs = sorted(rs, key=lambda r: r["seed"])
    row = {
        "name": name,
        "config": rs[0]["config"],
        "extra": " ".join(rs[0]["extra"]),
        "gpus": rs[0]["world_size"],
        "launcher": rs[0]["launcher"],
        "seeds": [r["seed"] for r in rs],
        "epochs": rs[0]["epochs"],
    }
    for key in (
        "test_acc",
        "val_acc",
        "fit_s",
        "launch_to_fit_end_s",
        "launch_to_tested_s",
        "data_setup_s",
        "images_per_s",
        "first_epoch_overhead_s",
        "peak_gpu_mem_gib",
    ):
        values = [r[key] for r in rs if r.get(key) is not None]
        row[key] = mean_std(values) if values else None
    compiles = [compile_s(r) for r in rs]
    compiled = None not in compiles  # an eager fit compiled nothing: all of it counts
    row["compile_s"] = mean_std(compiles) if compiled else None
    row["fit_less_compile_s"] = mean_std(
        [r["fit_s"] - (c if compiled else 0.0) for r, c in zip(rs, compiles, strict=True)]
    )
    phases = [r["fit_phases"] for r in rs]
    for key, values in (
        ("before_first_epoch_s", [p["before_first_epoch_s"] for p in phases]),
        ("validation_s", [sum(p["validation_s"]) for p in phases]),
        ("checkpoint_s", [sum(p["checkpoint_s"]) for p in phases]),
        ("after_last_epoch_s", [p["after_last_epoch_s"] for p in phases]),
    ):
        row[key] = mean_std(values)
    return row


def report(files: list[str], md: str | Path, title: str, command: str, quiet: bool = False) -> None:
    """Aggregate job JSONs into a table (``md``) and a summary (``md`` with ``.json``)."""
    results = [json.loads(Path(p).read_text()) for p in files]
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["name"], []).append(r)
    rows = [summarise(name, rs) for name, rs in groups.items()]
    info = dict(results[0]["versions"])
    info["gpus"] = max(r["versions"]["gpus"] for r in results)  # a single-GPU job sees one card: the most any saw
    data = sorted({r["data"] for r in results})
    gpus = f" x{info['gpus']}" if info["gpus"] else ""

    def fmt(value, scale=1.0, digits=1):  # value: (mean, std) over seeds, or None
        return format_mean_std(*(value or (None, None)), scale, digits)

    lines = [
        f"# {title}",
        "",
        f"Written by `benchmarks/gpu_benchmark.py`, last job {max(r['finished'] for r in results)}. Regenerate: "
        f"`{command}`",
        "",
        f"- Card: {info['card']}{gpus}; torch {info['torch']}, torchvision {info['torchvision']}, "
        f"lightning {info['lightning']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, Python {info['python']}",
        f"- Data: {'; '.join(data)}. Mean ± std over the seeds listed.",
        "- Fit s less compile: the fit without `torch.compile`'s call and the first epoch at each input size "
        "beyond a steady one. Launch to tested model: from starting the job's first process to the end of the "
        "test of the best checkpoint (every process's start, imports and data loading included).",
        "",
        "| run | config | GPUs | launcher | seeds | epochs | test acc % | fit s | compile s | fit s less compile "
        "| train images/s | launch to tested model s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        config = r["config"] + (f" `{r['extra']}`" if r["extra"] else "")
        lines.append(
            f"| {r['name']} | {config} | {r['gpus']} | {r['launcher'] or '–'} | "
            f"{','.join(map(str, r['seeds']))} | {r['epochs']} | {fmt(r['test_acc'], 100, 2)} | "
            f"{fmt(r['fit_s'])} | {fmt(r['compile_s'])} | {fmt(r['fit_less_compile_s'])} | "
            f"{fmt(r['images_per_s'], digits=0)} | {fmt(r['launch_to_tested_s'])} |"
        )
    lines += [
        "",
        "Where the rest of the time went (seconds):",
        "",
        "| run | data load | fit: before first epoch | validations | checkpoint saves | after last epoch "
        "| launch to fit end | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["data_setup_s"],
            r["before_first_epoch_s"],
            r["validation_s"],
            r["checkpoint_s"],
            r["after_last_epoch_s"],
            r["launch_to_fit_end_s"],
        ]
        lines.append(
            f"| {r['name']} | "
            + " | ".join(fmt(c, digits=2) for c in cells)
            + f" | {fmt(r['peak_gpu_mem_gib'], digits=2)} |"
        )
    singles = {r["name"]: r for r in rows if r["gpus"] == 1}
    pairs = [(r, singles[twin(r["name"])]) for r in rows if r["gpus"] > 1 and twin(r["name"]) in singles]
    if pairs:
        lines.append("")
    for multi, single in pairs:
        lines.append(
            f"- {multi['name']} against {single['name']}: "
            f"{multi['images_per_s'][0] / single['images_per_s'][0]:.2f}x the train images/s on "
            f"{multi['gpus']} GPUs, test accuracy {100 * (multi['test_acc'][0] - single['test_acc'][0]):+.2f} "
            f"points, launch to tested model {multi['launch_to_tested_s'][0] / single['launch_to_tested_s'][0]:.2f}x"
        )
    md = Path(md)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines) + "\n")
    summary = {"title": title, "command": command, "versions": info, "data": data, "rows": rows, "runs": results}
    md.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    if not quiet:
        print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default="", help="image-folder copy of CIFAR-10; empty: the configs' data")
    common.add_argument("--cache-dir", default="", help="decoded-array cache; empty: $PATH_DATASETS/cache")
    common.add_argument("--run-dir", default="runs/benchmark/fits", help="checkpoints and logs of the fits")
    suite = sub.add_parser("suite", parents=[common], help="run a plan")
    suite.add_argument("plan", choices=sorted(PLANS))
    suite.add_argument("--out", default=None, help="one JSON and one log per job (default runs/benchmark/<plan>)")
    suite.add_argument(
        "--md",
        default=None,
        help="the table, rewritten after every job, with a .json beside it "
        "(default: the plan's results file, or table.md in --out)",
    )
    suite.add_argument("--job-timeout", type=float, default=900, help="seconds before a job is killed")
    suite.add_argument("--resume", action="store_true", help="skip the jobs whose JSON is already in --out")
    job = sub.add_parser("job", parents=[common], help="one fit and test (the suite starts these)")
    for a in ("--name", "--config", "--out"):
        job.add_argument(a, required=True)
    job.add_argument("--seed", type=int, default=0)
    job.add_argument("--launched-at", type=float, default=None, help="the suite's time.time() at the job's launch")
    r = sub.add_parser("report", help="rebuild a table from job JSONs")
    r.add_argument("files", nargs="+", help="job JSONs")
    r.add_argument("--md", required=True)
    r.add_argument("--title", default="GPU benchmark")
    r.add_argument("--command", default="", help="the command that regenerates the jobs, for the table")
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = p.parse_args(own)  # after --: CLI options for every job (argparse would take the first for its own)
    if args.cmd == "job":
        run_job(args, extra)
    elif args.cmd == "suite":
        run_suite(args, extra, argv)
    else:
        report(args.files, args.md, args.title, args.command or "python benchmarks/gpu_benchmark.py report ...")


if __name__ == "__main__":
    main()

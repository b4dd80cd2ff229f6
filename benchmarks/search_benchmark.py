"""The search benchmark on one GPU: a Ray Tune search over configs/full.yaml, then its best config against
configs/full.yaml itself at the same epochs, 3 seeds each.

    python benchmarks/search_benchmark.py --data-dir <cifar10-jpeg>                      # both phases
    python benchmarks/search_benchmark.py --data-dir <cifar10-jpeg> --phase search       # the search only
    python benchmarks/search_benchmark.py --data-dir <cifar10-jpeg> --phase compare      # then the comparison

The search: ``--num-samples`` trials (default 16) of up to ``--epochs`` epochs (default 12) of configs/full.yaml's
recipe, ``--gpus-per-trial`` 0.25 (four trials share the GPU), ASHA on ``val_acc``; the first trial takes the
recipe's own values. The comparison: configs/full.yaml and the search's best.yaml, each trained ``--epochs`` epochs
(validated at the end) and tested on its best checkpoint, for seeds 0, 1, 2, one fit at a time in this process.

Writes to benchmarks/results/: search-trials.{csv,md} and search-history.csv (the search), search-best.yaml (the best
config), search.{md,json} (the card, versions, seeds, data, the search's numbers, every comparison run and the mean ±
std of each config) and search-runs.csv (one row per comparison run). CLI options after ``--`` go to every trial and
every comparison fit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from cifar_lightning import search  # noqa: E402
from cifar_lightning.tracking.results import format_mean_std  # noqa: E402

SEEDS = (0, 1, 2)
RECIPE = "configs/full.yaml"


def gpu_benchmark():
    """benchmarks/gpu_benchmark.py as a module: its ``versions`` and ``data_description`` describe the run."""
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--data-dir", help="an image-folder copy of CIFAR-10 (read with --data.source folder)")
    p.add_argument("--cache-dir", help="where the decoded images are cached (default <data dir>/cache)")
    p.add_argument("--phase", choices=("all", "search", "compare"), default="all")
    p.add_argument("--epochs", type=int, default=12, help="a trial's epochs, and each comparison fit's")
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--gpus-per-trial", type=float, default=0.25)
    p.add_argument("--cpus-per-trial", type=float, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--out", default=str(ROOT / "runs" / "search-benchmark"), help="Ray's and the fits' files")
    p.add_argument("--results", default=str(RESULTS), help="where the results files go")
    return p


def data_options(args) -> list[str]:
    options = ["--data.source", "folder", "--data.data_dir", args.data_dir] if args.data_dir else []
    return options + (["--data.cache_dir", args.cache_dir] if args.cache_dir else [])


def plan(args, extra: list[str]) -> dict:
    """What the benchmark runs: the search's arguments and the comparison fits (name, config, seed, options)."""
    options = [*data_options(args), *extra]
    best = str(Path(args.results) / "search-best.yaml")
    same_epochs = ["--trainer.max_epochs", str(args.epochs), "--trainer.check_val_every_n_epoch", str(args.epochs)]
    fits = [
        (name, config, seed, [*options, *same_epochs, "--seed_everything", str(seed)])
        for name, config in (("configs/full.yaml", str(ROOT / RECIPE)), ("searched best.yaml", best))
        for seed in args.seeds
    ]
    return {
        "search": dict(
            configs=[str(ROOT / RECIPE)],
            options=options,
            epochs=args.epochs,
            num_samples=args.num_samples,
            gpus_per_trial=args.gpus_per_trial,
            cpus_per_trial=args.cpus_per_trial,
            out_dir=str(Path(args.out) / "search"),
            quiet=True,
        ),
        "fits": fits,
        "best_yaml": best,
    }


def run_search_phase(args, steps: dict) -> dict:
    result = search.run_search(**steps["search"])
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    result.trials.to_csv(results / "search-trials.csv")
    result.history.to_csv(results / "search-history.csv", index=False)
    shutil.copy(result.best_yaml, steps["best_yaml"])
    info = {**result.summary, "seconds": result.seconds, "epochs": args.epochs, "num_samples": args.num_samples}
    info["gpus_per_trial"] = args.gpus_per_trial
    (results / "search-trials.md").write_text(search.markdown_table(result.trials))
    (results / "search-summary.json").write_text(json.dumps(info, indent=1, default=str))
    print(search.markdown_table(result.trials))
    return info


def run_fit(name: str, config: str, seed: int, options: list[str], out: Path, describe) -> dict:
    """One fit of ``config`` through the course's CLI, then the test of its best checkpoint."""
    from cifar_lightning.callbacks import best_checkpoint
    from cifar_lightning.cli import build_cli

    run_dir = out / f"{Path(config).stem}-s{seed}"
    cli = build_cli(
        ["--config", config, *options, "--trainer.enable_progress_bar", "false"],
        run=False,
        trainer_defaults={"default_root_dir": str(run_dir)},
    )
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_s = time.perf_counter() - start
    val_acc = float(cli.trainer.callback_metrics.get("val_acc", float("nan")))  # before test() replaces the metrics
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best_checkpoint(cli.trainer), verbose=False)
    run = {
        "name": name,
        "config": str(Path(config).relative_to(ROOT)) if Path(config).is_relative_to(ROOT) else config,
        "seed": seed,
        "epochs": cli.trainer.current_epoch,
        "val_acc": val_acc,
        "test_acc": float(test[0]["test_acc"]),
        "fit_s": fit_s,
        "data": describe(cli.datamodule),
    }
    print(f"RESULT {name} seed={seed} test={run['test_acc']:.4f} fit={fit_s:.1f}s")
    return run


def compare(runs: list[dict]) -> dict:
    """Mean ± std of the test accuracy per config, the difference, and what it says against the seed spread."""
    by_name: dict[str, list[float]] = {}
    for run in runs:
        by_name.setdefault(run["name"], []).append(run["test_acc"])
    stats = {
        name: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else None, "seeds": len(v)}
        for name, v in by_name.items()
    }
    out = {"configs": stats}
    if {"configs/full.yaml", "searched best.yaml"} <= set(stats):
        base, best = stats["configs/full.yaml"], stats["searched best.yaml"]
        diff = 100 * (best["mean"] - base["mean"])
        spread = 100 * max(s for s in (base["std"], best["std"], 0.0) if s is not None)
        if abs(diff) <= 2 * spread:
            verdict = f"the difference ({diff:+.2f} points) is within twice the seed spread ({spread:.2f}): no winner"
        elif diff > 0:
            verdict = f"the searched config beats configs/full.yaml by {diff:.2f} points (seed spread {spread:.2f})"
        else:
            verdict = f"configs/full.yaml beats the searched config by {-diff:.2f} points (seed spread {spread:.2f})"
        out.update(difference_points=diff, seed_spread_points=spread, verdict=verdict)
    return out


def report(info: dict, runs: list[dict], command: str, versions: dict) -> tuple[str, dict]:
    """The results file's markdown and JSON."""
    result = compare(runs) if runs else {"configs": {}}
    data = runs[0]["data"] if runs else info.get("data", "")
    gpus = f" x{versions['gpus']}" if versions.get("gpus") else ""
    best = info.get("best_params", {})
    lines = [
        "# Hyperparameter search on one GPU: the searched config against configs/full.yaml",
        "",
        f"Written by `benchmarks/search_benchmark.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Regenerate: `{command}`",
        "",
        f"- Card: {versions.get('card')}{gpus}; torch {versions.get('torch')}, lightning {versions.get('lightning')}, "
        f"ray {versions.get('ray')}, Python {versions.get('python')}",
        f"- Data: {data}.",
        f"- Search: {info.get('trials')} trials of up to {info.get('epochs')} epochs of configs/full.yaml's recipe, "
        f"{info.get('gpus_per_trial')} GPU per trial, ASHA on val_acc (seed 42 for every trial); "
        f"{info.get('stopped')} stopped early, {info.get('epochs_trained')} epochs trained of "
        f"{info.get('epochs_without_stopping')}; Ray started in {info.get('seconds', {}).get('ray_start', 0):.0f} s, "
        f"the trials took {info.get('seconds', {}).get('search', 0):.0f} s. Table: `search-trials.md`.",
        f"- Best trial: {best} (val_acc {info.get('best_val_acc', float('nan')):.4f}); the recipe's own values: "
        f"val_acc {info.get('recipe_val_acc', float('nan')):.4f} after {info.get('recipe_epochs', '–')} epochs. "
        "Config: `search-best.yaml`.",
        "",
        "| config | epochs | seeds | test acc % | val acc % | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for name, stat in result["configs"].items():
        mine = [r for r in runs if r["name"] == name]
        val = [r["val_acc"] for r in mine if r["val_acc"] == r["val_acc"]] or [float("nan")]  # NaN: not validated
        fit = [r["fit_s"] for r in mine]
        lines.append(
            f"| {name} | {mine[0]['epochs']} | {','.join(str(r['seed']) for r in mine)} | "
            f"{format_mean_std(stat['mean'], stat['std'], 100, 2)} | "
            f"{format_mean_std(statistics.mean(val), statistics.stdev(val) if len(val) > 1 else None, 100, 2)} | "
            f"{format_mean_std(statistics.mean(fit), statistics.stdev(fit) if len(fit) > 1 else None, 1, 1)} |"
        )
    if "verdict" in result:
        lines += ["", f"Mean ± std over the seeds: {result['verdict']}."]
    summary = {"command": command, "versions": versions, "search": info, "comparison": result, "runs": runs}
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser().parse_args(ours)
    steps = plan(args, extra)
    results = Path(args.results)
    command = "python benchmarks/search_benchmark.py " + " ".join(argv)
    info_file = results / "search-summary.json"
    info = run_search_phase(args, steps) if args.phase in ("all", "search") else json.loads(info_file.read_text())
    if args.phase == "search":
        return
    gb = gpu_benchmark()
    versions = gb.versions()
    try:
        import ray

        versions["ray"] = ray.__version__
    except ImportError:
        versions["ray"] = None
    runs = []
    for name, config, seed, options in steps["fits"]:
        runs.append(run_fit(name, config, seed, options, Path(args.out) / "fits", gb.data_description))
        md, summary = report(info, runs, command, versions)  # rewritten after every fit: a cut run keeps its fits
        (results / "search.md").write_text(md)
        (results / "search.json").write_text(json.dumps(summary, indent=1, default=str))
        import pandas as pd

        pd.DataFrame([{k: v for k, v in r.items() if k != "data"} for r in runs]).to_csv(
            results / "search-runs.csv", index=False
        )
    print(md)


if __name__ == "__main__":
    main()

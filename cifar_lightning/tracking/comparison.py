"""The workshop's comparison runs: one command, one W&B group per setting, a committable summary.

    # on a GPU (the workshop's numbers):
    python -m cifar_lightning.tracking.comparison --config configs/full.yaml --epochs 8 --summary benchmarks/results
    # on a laptop CPU in a few minutes (the CPU track, shortened; lesson 10 runs this at its laptop size):
    python -m cifar_lightning.tracking.comparison --config configs/cpu.yaml --settings baseline,no_lr_schedule \
        --epochs 2 --data.subset 5000 --data.source folder --data.data_dir <cifar10-jpeg>
    # on a CPU in seconds (synthetic data, width-8 network, 1 epoch of a few batches):
    python -m cifar_lightning.tracking.comparison --smoke

Every setting changes one thing of the base config (the baseline): a trick off or on, the LR finder's
suggestion versus a tenth of it, Adam instead of SGD, no augmentation. Every setting runs with 3 seeds by default
(``--seeds``), so that a difference can be compared with the spread between seeds. Each run goes to W&B (online
with an API key, otherwise offline) and writes its local run record under ``--out``; ``--summary`` writes
``comparison-runs.csv``, ``comparison-curves.csv`` and ``comparison-meta.json`` (read by the results notebook).
Arguments this runner does not know are passed to the CLI of every run, e.g. ``--data.source folder``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch

from cifar_lightning.callbacks import best_checkpoint
from cifar_lightning.cli import CifarCLI, build_cli
from cifar_lightning.errors import CifarLightningError, check
from cifar_lightning.lesson import project_root
from cifar_lightning.tracking import results
from cifar_lightning.tracking.wandb_logger import DEFAULT_PROJECT


@dataclass
class Setting:
    """One comparison arm: CLI overrides of the baseline, and which weights the test uses."""

    name: str
    about: str
    overrides: list[str] = field(default_factory=list)
    test_ckpt: str | None = "best"  # None: the weights in memory (SWA's average exists only there)
    lr_factor: float | None = None  # use the LR finder's suggestion times this
    drop: tuple[str, ...] = ()  # class names of the config's callbacks this arm removes


SWA = {
    "class_path": "lightning.pytorch.callbacks.StochasticWeightAveraging",
    "init_args": {"swa_lrs": 0.01, "swa_epoch_start": 0.6},
}

# Made for configs/full.yaml (nesterov SGD + linear OneCycle, label smoothing, flip_crop, 24-pixel crops early, EMA
# of the weights, flip TTA, mixed precision): each arm turns one of its tricks off, or swaps one choice. The arms that
# only drop a callback (no_progressive_crop, no_ema) need a config that has it; the others work with any config.
SETTINGS = [
    Setting("baseline", "the base config as it is"),
    Setting("no_label_smoothing", "the config's label smoothing -> 0", ["--model.label_smoothing", "0"]),
    Setting("no_augmentation", "flip_crop -> no augmentation", ["--data.augment", "none"], drop=("ProgressiveCrop",)),
    Setting("no_tta_flip", "test on each image alone, not averaged with its mirror", ["--model.tta_flip", "false"]),
    Setting("no_progressive_crop", "24-pixel crops early -> 32-pixel crops throughout", drop=("ProgressiveCrop",)),
    Setting("no_ema", "EMA of the weights -> the weights themselves", drop=("EMAWeights",)),
    Setting(
        "swa",
        "stochastic weight averaging over the last 40% of epochs (instead of any EMA)",
        ["--trainer.callbacks+", json.dumps(SWA)],
        test_ckpt=None,
        drop=("EMAWeights",),
    ),
    Setting("fp32", "mixed precision -> full fp32", ["--trainer.precision", "32-true"]),
    Setting("no_lr_schedule", "one-cycle -> a constant learning rate", ["--model.scheduler", "none"]),
    Setting(
        "adam",
        "SGD at the config's lr -> Adam (lr 0.001)",
        ["--model.optimizer", "adam", "--model.lr", "0.001"],
    ),
    Setting("lr_finder", "the LR finder's suggested lr", lr_factor=1.0),
    Setting("lr_finder_div10", "a tenth of the LR finder's suggestion", lr_factor=0.1),
]
SMOKE_SETTINGS = "baseline,no_augmentation,adam"
SMOKE_ARGS = [
    "--data.source",
    "synthetic",
    "--data.synthetic_size",
    "[320, 128]",
    "--data.subset",
    "null",
    "--data.batch_size",
    "32",
    "--data.num_workers",
    "0",
    "--model.backbone.init_args.width",
    "8",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.log_every_n_steps",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.precision",
    "32-true",
    "--trainer.num_sanity_val_steps",
    "0",
]


def find_config(path: str) -> str:
    """``path`` as given, else relative to the repo root (a notebook runs in ``notebooks/``) or to the checkout
    the package was installed from."""
    places = [Path(path), project_root() / path, Path(__file__).resolve().parents[2] / path]
    found = next((p for p in places if p.exists()), None)
    check(found is not None, f"config {path} not found (looked in {Path.cwd()}, {project_root()})")
    return str(found)


def configure_run(args: list[str], out: Path) -> CifarCLI:
    """The objects of one run, configured exactly as ``python -m cifar_lightning fit <args>`` would."""
    with mock.patch.object(sys, "argv", sys.argv[:1]):  # this runner's own options are not the CLI's
        return build_cli(args, run=False, save_config_callback=None, trainer_defaults={"default_root_dir": str(out)})


def suggest_lr(
    base_args: list[str], out: Path, num_training: int, stop_on_divergence: bool = True
) -> tuple[float, Path]:
    """Lightning's LR finder on the baseline: its suggested lr, and a plot of loss against lr."""
    from lightning.pytorch.tuner import Tuner

    # the finder stops after num_training steps; epoch and batch limits must not stop it first
    limits = ["--trainer.max_epochs", "1000", "--trainer.limit_train_batches", "1.0"]
    cli = configure_run([*base_args, *limits, "--trainer.logger", "false"], out)
    finder = Tuner(cli.trainer).lr_find(
        cli.model,
        datamodule=cli.datamodule,
        min_lr=1e-4,
        max_lr=1.0,
        num_training=num_training,
        update_attr=False,
        early_stop_threshold=4.0 if stop_on_divergence else None,
    )
    suggestion = finder.suggestion() if finder else None
    check(suggestion is not None, "the LR finder found no suggestion: give it more steps (--lr-find-steps)")
    import matplotlib.pyplot as plt

    plot = out / "lr_finder.png"
    fig = finder.plot(suggest=True)
    fig.savefig(plot, dpi=120)
    plt.close(fig)  # saved, not shown
    return float(suggestion), plot


def drop_callbacks(trainer, setting: Setting) -> list[str]:
    """Remove the callbacks ``setting.drop`` names from ``trainer`` (before fit); returns the names removed.

    An arm whose only change is a drop must find what it drops: otherwise it would rerun the baseline unnoticed.
    """
    dropped = [type(c).__name__ for c in trainer.callbacks if type(c).__name__ in setting.drop]
    check(
        dropped or not setting.drop or setting.overrides,
        f"setting {setting.name} removes {', '.join(setting.drop)}, which the config does not have: "
        "use configs/full.yaml",
    )
    trainer.callbacks[:] = [c for c in trainer.callbacks if type(c).__name__ not in setting.drop]
    return dropped


def run_one(
    setting: Setting,
    seed: int,
    base_args: list[str],
    out: Path,
    project: str,
    tag: str,
    lr: float | None,
    log_model: bool,
    media: bool,
) -> dict:
    """Fit and test one run of one setting; returns its local record."""
    logger = {
        "class_path": "cifar_lightning.tracking.WorkshopWandbLogger",
        "init_args": {
            "project": project,
            "name": f"{setting.name}-seed{seed}",
            "group": setting.name,
            "tags": [tag],
            "save_dir": str(out),
            "log_model": log_model,
        },
    }
    args = [*base_args, *setting.overrides, "--seed_everything", str(seed), "--trainer.logger", json.dumps(logger)]
    if lr is not None:
        args += ["--model.lr", repr(lr)]
    if media:
        args += ["--trainer.callbacks+", json.dumps({"class_path": "cifar_lightning.tracking.RunReport"})]
    cli = configure_run(args, out)
    trainer, tracker = cli.trainer, cli.trainer.logger
    try:
        dropped = drop_callbacks(trainer, setting)
        # `global_seed`: the data module's own `seed` (its train/val split, fixed) would overwrite a plain `seed`
        tracker.log_hyperparams(
            {
                "setting": setting.name,
                "about": setting.about,
                "global_seed": seed,
                "comparison": tag,
                "dropped_callbacks": ",".join(dropped) or "none",
                "test_weights": "best checkpoint" if setting.test_ckpt else "final weights",
            }
        )
        start = time.perf_counter()
        trainer.fit(cli.model, datamodule=cli.datamodule)
        fit_seconds = time.perf_counter() - start
        ckpt = best_checkpoint(trainer) if setting.test_ckpt else None
        trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)  # the summary prints it
        tracker.log_metrics({"fit_seconds": fit_seconds})
    finally:
        tracker.finish()  # also after a failure: the next run must not continue this W&B run
    record = json.loads(tracker.record_path.read_text())
    del cli, trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m cifar_lightning.tracking.comparison",
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments go to every run's CLI, e.g. --data.source folder --data.data_dir data/cifar10-jpeg",
    )
    parser.add_argument("--config", action="append", help="base config(s) (default configs/full.yaml)")
    parser.add_argument(
        "--settings", default=None, help="comma-separated subset of: " + ", ".join(s.name for s in SETTINGS)
    )
    parser.add_argument("--seeds", type=int, default=3, help="runs per setting, seeds 0..N-1 (default 3)")
    parser.add_argument("--baseline-seeds", type=int, default=None, help="runs of the baseline (default: --seeds)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the config")
    parser.add_argument("--out", default="runs/comparison", help="where the runs go (default runs/comparison)")
    parser.add_argument("--summary", default=None, help="also write the compact CSV/JSON summary to this folder")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="W&B project")
    parser.add_argument("--tag", default=None, help="W&B tag of this comparison (default comparison-<time>)")
    parser.add_argument(
        "--lr-find-steps",
        type=int,
        default=300,
        help="steps of the LR finder (default 300: ~75 per decade, so its smoothed loss lags little)",
    )
    parser.add_argument("--note", default="", help='stored in the summary, e.g. "JPEG copy of CIFAR-10"')
    parser.add_argument("--log-model", action="store_true", help="upload each run's best checkpoint as an artifact")
    parser.add_argument("--no-media", action="store_true", help="skip sample grids, confusion matrices, mistakes")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run: synthetic data, width 8, a few batches")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns ``{"runs": DataFrame, "curves": DataFrame, "summary": DataFrame, "meta": dict}``."""
    opts, extra = parse(argv)
    if opts.baseline_seeds is None:
        opts.baseline_seeds = opts.seeds
    check(opts.seeds >= 1 and opts.baseline_seeds >= 1, "--seeds and --baseline-seeds must be at least 1")
    configs = [find_config(c) for c in opts.config or ["configs/quick.yaml" if opts.smoke else "configs/full.yaml"]]
    base_args = [arg for config in configs for arg in ("--config", config)]
    # every epoch validated: the comparison is about validation curves (a config may validate less often for speed)
    base_args += ["--trainer.check_val_every_n_epoch", "1"]
    if opts.smoke:
        base_args += SMOKE_ARGS
    if opts.epochs is not None:
        base_args += ["--trainer.max_epochs", str(opts.epochs)]
    base_args += extra
    known = {s.name: s for s in SETTINGS}
    names = (opts.settings or (SMOKE_SETTINGS if opts.smoke else ",".join(known))).split(",")
    unknown = [n for n in names if n not in known]
    check(not unknown, f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    settings = [known[n] for n in names]
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = opts.tag or time.strftime("comparison-%Y%m%d-%H%M%S")
    meta = {
        "tag": tag,
        "note": opts.note,
        "configs": configs,
        "extra_args": extra,
        "smoke": opts.smoke,
        "epochs": opts.epochs,
        "seeds": opts.seeds,
        "baseline_seeds": opts.baseline_seeds,
        **results.environment_meta(),
        "settings": {s.name: s.about for s in settings},
    }

    start = time.perf_counter()
    suggested = None
    if any(s.lr_factor for s in settings):
        suggested, plot = suggest_lr(
            base_args + ["--seed_everything", "0"],
            out,
            num_training=20 if opts.smoke else opts.lr_find_steps,
            stop_on_divergence=not opts.smoke,
        )  # a suggestion needs > 11 points
        meta.update(lr_finder_suggestion=suggested, lr_finder_plot=str(plot))
        print(f"LR finder suggests lr={suggested:.3g}")

    plan = [
        (setting, seed)
        for setting in settings
        for seed in range(opts.baseline_seeds if setting.name == "baseline" else opts.seeds)
    ]
    records, runs_start = [], time.perf_counter()
    for i, (setting, seed) in enumerate(plan):
        lr = suggested * setting.lr_factor if setting.lr_factor else None
        print(f"=== run {i + 1}/{len(plan)}: {setting.name} (seed {seed}): {setting.about}", flush=True)
        records.append(
            run_one(setting, seed, base_args, out, opts.project, tag, lr, opts.log_model, media=not opts.no_media)
        )
        meta["total_seconds"] = round(time.perf_counter() - start, 1)
        meta.setdefault("data", {k: records[0]["config"].get(k) for k in ("source", "data_dir", "subset")})
        if opts.summary:  # after every run, so a cut-off comparison still leaves its finished runs
            results.save_compact(results.runs_table(records), results.curves_table(records), opts.summary, meta)
        per_run = (time.perf_counter() - runs_start) / (i + 1)
        print(
            f"=== {meta['total_seconds']:.0f} s so far, about {per_run * (len(plan) - i - 1):.0f} s to go", flush=True
        )

    runs, curves = results.runs_table(records), results.curves_table(records)
    summary = results.summarize(runs)
    print(results.format_summary(summary).to_string(index=False))
    if "baseline" in set(summary["setting"]):
        print(results.describe_versus(results.versus_baseline(summary)))
    print(
        f"{len(records)} runs in {meta['total_seconds']:.0f} s; records under {out}/records"
        + (f"; summary in {opts.summary}" if opts.summary else "")
    )
    return {"runs": runs, "curves": curves, "summary": summary, "meta": meta}


if __name__ == "__main__":
    try:
        main()
    except CifarLightningError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

"""Hyperparameter search with Ray Tune over the course's own command: the same CIFARSystem, CIFAR10DataModule and
configs, one Lightning fit per trial, ASHA stopping the trials that fall behind.

    python -m cifar_lightning.search --config configs/cpu.yaml --epochs 4 --num-samples 8 --data.subset 8000
    python -m cifar_lightning.search --config configs/full.yaml --epochs 10 --num-samples 16 --gpus-per-trial 0.25
    ray start --head                        # a cluster: then `ray start --address <head>:6379` on every other node
    python -m cifar_lightning.search --address auto --storage-path /shared/search --config configs/full.yaml ...

A trial is ``python -m cifar_lightning fit`` with the sampled options added (``--model.lr 0.31 ...``): a Ray worker
builds it with :func:`cifar_lightning.cli.build_cli` and fits. Ray Tune's Lightning callback reports ``val_acc`` after
each epoch's validation, and ASHA (``ray.tune.schedulers.ASHAScheduler``) stops a trial that is not in the top
``1/reduction_factor`` of the trials that reached the same epoch (a "rung": ``grace_period``, then that times the
factor, ...). The recipe's own values are the first trial, so the table shows whether the search beat them.

Written to ``--out``: ``trials.csv`` and ``trials.md`` (one row per trial), ``history.csv`` (one row per reported
epoch, for :func:`plot_trials`) and ``best.yaml``, a whole config that ``python -m cifar_lightning fit --config
best.yaml`` trains. Ray is imported only when a search runs: ``import cifar_lightning`` does not import it. A local Ray
starts without its dashboard and without usage statistics, so a search runs offline and never prompts.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from cifar_lightning.errors import CifarLightningError, check, check_choice

METRIC = "val_acc"
SCHEDULERS = ("asha", "fifo")  # fifo: every trial runs all its epochs (plain random search)
KINDS = ("loguniform", "uniform", "choice")
# Options a trial sets for itself: validate and report every epoch, keep no checkpoints (the best config is trained
# again from best.yaml), no progress bar or model summary in the workers' logs.
TRIAL_OPTIONS = (
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--checkpoint.save_top_k",
    "0",
    "--last_checkpoint.save_top_k",
    "0",
)


@dataclass(frozen=True)
class Dimension:
    """One searched option: ``key`` as the CLI spells it (``model.lr``), sampled log-uniformly or uniformly between
    two bounds, or chosen from a list."""

    key: str
    kind: str
    values: tuple

    def __post_init__(self):
        check_choice("kind of search dimension", self.kind, KINDS)
        if self.kind == "choice":
            check(len(self.values) >= 1, f"{self.key}: give at least one value to choose from")
        else:
            check(len(self.values) == 2, f"{self.key}: give two bounds, low and high, got {list(self.values)}")
            low, high = self.values
            check(low < high, f"{self.key}: the low bound {low} must be below the high bound {high}")
            check(self.kind != "loguniform" or low > 0, f"{self.key}: a log-uniform range must be above 0")

    def to_tune(self):
        """The Ray Tune sampler of this dimension."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {', '.join(map(str, self.values))}"
        return f"{self.kind} in [{self.values[0]:g}, {self.values[1]:g}]"


def search_space(
    lr: Sequence[float] = (0.05, 2.0),
    weight_decay: Sequence[float] = (5e-5, 5e-3),
    label_smoothing: Sequence[float] = (0.0, 0.3),
    batch_size: Sequence[int] = (256, 512, 1024),
) -> dict[str, Dimension]:
    """The searched options: learning rate and weight decay log-uniform (their effect is multiplicative), label
    smoothing uniform, the batch size from a list."""
    return {
        "model.lr": Dimension("model.lr", "loguniform", tuple(lr)),
        "model.weight_decay": Dimension("model.weight_decay", "loguniform", tuple(weight_decay)),
        "model.label_smoothing": Dimension("model.label_smoothing", "uniform", tuple(label_smoothing)),
        "data.batch_size": Dimension("data.batch_size", "choice", tuple(int(b) for b in batch_size)),
    }


def rounded(value):
    """A sampled float to 4 significant digits (what the table, the trial and best.yaml all use); others as they are
    (numpy scalars as Python numbers)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def trial_options(config: Mapping) -> list[str]:
    """CLI options for a trial's sampled values: ``{"model.lr": 0.3}`` -> ``["--model.lr", "0.3"]``."""
    return [part for key, value in config.items() for part in (f"--{key}", str(rounded(value)))]


# --- configs as nested dicts: the search's base recipe and best.yaml ---------------------------------------------


def parse_options(options: Sequence[str]) -> dict[str, object]:
    """``["--data.subset", "8000", "--model.lr=0.1"]`` -> ``{"data.subset": 8000, "model.lr": 0.1}`` (values read
    as YAML, as the CLI reads them)."""
    parsed, items = {}, list(options)
    while items:
        item = items.pop(0)
        check(item.startswith("--") and len(item) > 2, f"expected an option like --data.subset 8000, got {item!r}")
        key, has_value, value = item[2:].partition("=")
        if not has_value:
            check(bool(items) and not items[0].startswith("--"), f"option --{key} needs a value")
            value = items.pop(0)
        check(key not in ("config", "print_config"), f"give configs with --config before the other options: --{key}")
        parsed[key] = yaml.safe_load(value)
    return parsed


def set_dotted(config: dict, key: str, value) -> None:
    """``config["a"]["b"] = value`` for ``key="a.b"``, making the levels that are missing."""
    *parents, last = key.split(".")
    node = config
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def get_dotted(config: Mapping, key: str, default=None):
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def deep_merge(base: dict, update: Mapping) -> dict:
    """``update`` merged into a copy of ``base``, nested dicts key by key (as several ``--config`` files merge)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def base_recipe(configs: Sequence[str | Path], options: Sequence[str] = ()) -> dict:
    """The recipe the search starts from: the config files merged in order, then the options."""
    recipe: dict = {}
    for path in configs:
        check(Path(path).is_file(), f"no config file {path}")
        recipe = deep_merge(recipe, yaml.safe_load(Path(path).read_text()) or {})
    for key, value in parse_options(options).items():
        set_dotted(recipe, key, value)
    return recipe


def recipe_values(recipe: Mapping, keys: Sequence[str]) -> dict:
    """The recipe's own value of each searched key: from the config, else the default of CIFARSystem's or
    CIFAR10DataModule's argument."""
    from cifar_lightning.data import CIFAR10DataModule
    from cifar_lightning.system import CIFARSystem

    owners = {"model": CIFARSystem, "data": CIFAR10DataModule}
    values = {}
    for key in keys:
        value = get_dotted(recipe, key)
        if value is None:
            section, _, name = key.partition(".")
            parameter = inspect.signature(owners[section].__init__).parameters.get(name) if section in owners else None
            check(parameter is not None, f"the recipe sets no {key} and has no default for it")
            value = parameter.default
        values[key] = value
    return values


def best_config(recipe: Mapping, params: Mapping, epochs: int, seed: int) -> dict:
    """The recipe with the best trial's values, trained for ``epochs`` epochs (validated at the end at least)."""
    config = copy.deepcopy(dict(recipe))
    for key, value in params.items():
        set_dotted(config, key, rounded(value))
    set_dotted(config, "trainer.max_epochs", int(epochs))
    config["seed_everything"] = int(seed)
    every = get_dotted(config, "trainer.check_val_every_n_epoch")
    if every is not None and every > epochs:  # e.g. configs/full.yaml validates at its 40th epoch only
        set_dotted(config, "trainer.check_val_every_n_epoch", int(epochs))
    return config


def config_yaml(config: Mapping, header: str = "") -> str:
    """A config as YAML text for ``--config``, after a comment header."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


# --- what the trials reported, as tables ----------------------------------------------------------------------


def trials_table(history: pd.DataFrame, params: Mapping[str, Mapping], epochs: int, errors: Mapping | None = None):
    """One row per trial from the per-epoch ``history`` (columns ``trial_id``, ``epoch``, ``val_acc``,
    ``time_total_s``, ``start_s``) and each trial's sampled ``params``; sorted best first.

    Columns: the searched values, ``epochs`` reached, ``val_acc`` at the last one, ``stopped`` (ASHA ended it before
    ``epochs``), ``start_s``/``end_s`` (seconds after the search started), ``status``. The best trial is the one with
    the highest ``val_acc`` among those that ran the most epochs: a trial stopped early is not compared with trials
    that trained longer.
    """
    errors = dict(errors or {})
    rows = []
    for trial_id, trial_params in params.items():
        seen = history[history["trial_id"] == trial_id].sort_values("epoch") if len(history) else history
        row = {"trial_id": trial_id, **{key: rounded(value) for key, value in trial_params.items()}}
        if len(seen):
            last = seen.iloc[-1]
            row.update(
                epochs=int(last["epoch"]),
                val_acc=float(last[METRIC]),
                best_val_acc=float(seen[METRIC].max()),
                start_s=float(seen["start_s"].iloc[0]),
                end_s=float(last["start_s"] + last["time_total_s"]),
            )
        else:
            row.update(epochs=0, val_acc=float("nan"), best_val_acc=float("nan"), start_s=float("nan"))
            row["end_s"] = float("nan")
        row["stopped"] = trial_id not in errors and row["epochs"] < epochs
        row["status"] = "error" if trial_id in errors else "stopped early" if row["stopped"] else "ran all epochs"
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["epochs", "val_acc"], ascending=False, na_position="last").reset_index(drop=True)
    table.index.name = "rank"
    return table


def history_frame(results: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Ray Tune's per-trial result tables (``Result.metrics_dataframe``) as one table: ``trial_id``, ``epoch``,
    ``val_acc``, ``val_loss``, ``time_total_s`` (since the trial started) and ``start_s`` (when the trial started,
    seconds after the first trial did; Ray's timestamps are whole seconds)."""
    frames = []
    for trial_id, frame in results:
        if frame is None or frame.empty or METRIC not in frame:
            continue
        rows = pd.DataFrame(
            {
                "trial_id": trial_id,
                "epoch": frame["training_iteration"].astype(int),
                METRIC: frame[METRIC].astype(float),
                "val_loss": frame["val_loss"].astype(float) if "val_loss" in frame else float("nan"),
                "time_total_s": frame["time_total_s"].astype(float),
                "started": float((frame["timestamp"] - frame["time_total_s"]).min()),
            }
        )
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "epoch", METRIC, "val_loss", "time_total_s", "start_s"])
    history = pd.concat(frames, ignore_index=True)
    history["start_s"] = history["started"] - history["started"].min()
    return history.drop(columns="started")


def summary(trials: pd.DataFrame, epochs: int, baseline_id: str | None = None) -> dict:
    """The search in numbers: trials, how many ASHA stopped, the epochs trained against ``trials x epochs`` (what
    running every trial to the end costs), the best trial and, when given, the recipe's own trial."""
    done = trials[trials["status"] != "error"]
    best = done.iloc[0] if len(done) else None
    out = {
        "trials": len(trials),
        "errors": int((trials["status"] == "error").sum()),
        "stopped": int(trials["stopped"].sum()),
        "epochs_trained": int(trials["epochs"].sum()),
        "epochs_without_stopping": int(len(trials) * epochs),
        "best_trial": None if best is None else best["trial_id"],
        "best_val_acc": None if best is None else float(best["val_acc"]),
        "best_epochs": None if best is None else int(best["epochs"]),
    }
    if baseline_id is not None and baseline_id in set(trials["trial_id"]):
        row = trials[trials["trial_id"] == baseline_id].iloc[0]
        out.update(recipe_trial=baseline_id, recipe_val_acc=float(row["val_acc"]), recipe_epochs=int(row["epochs"]))
    return out


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    """A table as GitHub markdown (no extra package needed)."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.{digits}g}"
        return str(value)

    frame = table.reset_index() if table.index.name else table
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot_trials(history: pd.DataFrame, trials: pd.DataFrame, ax=None, title: str | None = None):
    """Validation accuracy of every trial against the search's wall time: one line per trial, a cross where ASHA
    stopped one, the best trial highlighted. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    status = dict(zip(trials["trial_id"], trials["status"], strict=True))
    best = trials["trial_id"].iloc[0] if len(trials) else None
    labelled = set()
    for trial_id, rows in history.groupby("trial_id", sort=False):
        rows = rows.sort_values("epoch")
        minutes = (rows["start_s"] + rows["time_total_s"]) / 60
        kind = "best trial" if trial_id == best else status.get(trial_id, "ran all epochs")
        style = {
            "best trial": dict(color="tab:red", lw=2.5, zorder=3),
            "ran all epochs": dict(color="tab:blue", lw=1.2, alpha=0.8),
            "stopped early": dict(color="0.55", lw=1.0, alpha=0.8),
        }.get(kind, dict(color="0.3", lw=1.0))
        ax.plot(minutes, rows[METRIC], marker="o", ms=3, label=None if kind in labelled else kind, **style)
        labelled.add(kind)
        if kind == "stopped early":
            ax.plot(minutes.iloc[-1], rows[METRIC].iloc[-1], "x", color="black", ms=8, mew=2, zorder=4)
    if "stopped early" in labelled:
        ax.plot([], [], "x", color="black", ms=8, mew=2, label="stopped by the scheduler")
    n_stopped = int(trials["stopped"].sum()) if len(trials) else 0
    ax.set(
        xlabel="wall time since the search started (minutes)",
        ylabel="validation accuracy",
        title=title or f"{len(trials)} trials, {n_stopped} stopped early",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax


# --- running the search ---------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """What :func:`run_search` found and wrote."""

    trials: pd.DataFrame
    history: pd.DataFrame
    summary: dict
    best_params: dict
    best_yaml: Path
    out_dir: Path
    seconds: dict = field(default_factory=dict)  # ray_start, search, total


def train_trial(config: dict, base_args: list[str]) -> None:
    """One trial, run by a Ray worker: the course's CLI with the sampled options, fitted with Ray Tune's Lightning
    callback reporting the validation metrics after every validation."""
    from ray import tune
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    from cifar_lightning.cli import build_cli
    from cifar_lightning.experiment import quiet_logs

    quiet_logs()
    report = TuneReportCheckpointCallback(metrics=[METRIC, "val_loss"], save_checkpoints=False, on="validation_end")
    trial_dir = tune.get_context().get_trial_dir()
    cli = build_cli(
        [*base_args, *trial_options(config)],
        run=False,
        trainer_defaults={"default_root_dir": trial_dir, "callbacks": [report]},
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


def start_ray(address: str | None, num_cpus: int | None = None, quiet: bool = False, attempts: int = 3) -> float:
    """Start a local Ray (no dashboard, no usage statistics) or join the cluster at ``address``; seconds it took.

    A Ray already running in this process is used as it is. A local start that times out (Ray waits a fixed time for
    its helper processes, which a busy small machine can exceed) is tried again, up to ``attempts`` times.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never ask, never send
    import ray

    start = time.perf_counter()
    if ray.is_initialized():
        return 0.0
    options = dict(include_dashboard=False, log_to_driver=not quiet, configure_logging=not quiet)
    if address:
        ray.init(address=address, **options)
    else:
        for attempt in range(1, attempts + 1):
            try:
                ray.init(num_cpus=num_cpus, **options)
                break
            except Exception as err:  # Ray raises a plain Exception for a node that timed out starting
                if attempt == attempts or "timed out" not in str(err):
                    raise
                ray.shutdown()
    return time.perf_counter() - start


def run_search(
    configs: Sequence[str | Path],
    options: Sequence[str] = (),
    *,
    space: Mapping[str, Dimension] | None = None,
    epochs: int = 4,
    num_samples: int = 8,
    scheduler: str = "asha",
    grace_period: int = 1,
    reduction_factor: int = 2,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    max_concurrent: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    out_dir: str | Path = "runs/search",
    storage_path: str | None = None,
    seed: int = 42,
    recipe_first: bool = True,
    quiet: bool = False,
    shutdown: bool = True,
) -> SearchResult:
    """Search ``space`` over the recipe ``configs`` + ``options`` with Ray Tune; write the tables and best.yaml
    to ``out_dir``.

    Every trial trains ``epochs`` epochs unless the scheduler stops it, with the same seed (trials differ only in
    their values). ``recipe_first``: the first trial takes the recipe's own values. ``cpus_per_trial`` and
    ``gpus_per_trial`` (a fraction runs several trials on one GPU) are what Ray reserves for each trial: it runs as
    many at once as fit. ``storage_path`` (default ``out_dir/ray``) holds Ray's trial folders; on a cluster it must
    be a folder every node sees (or a cloud URI).
    """
    check(epochs >= 1, f"epochs must be at least 1, got {epochs}")
    check(num_samples >= 1, f"num_samples must be at least 1, got {num_samples}")
    check_choice("scheduler", scheduler, SCHEDULERS)
    check(gpus_per_trial >= 0 and cpus_per_trial > 0, "cpus_per_trial must be > 0 and gpus_per_trial >= 0")
    space = dict(space or search_space())
    recipe = base_recipe(configs, options)
    for key in [*space, "trainer.max_epochs", "seed_everything"]:
        check(key not in parse_options(options), f"the search sets --{key} itself: leave it out of the options")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    base_args = trial_base_args(configs, options, recipe, epochs, seed)
    warm_data_cache(recipe)

    t0 = time.perf_counter()
    ray_start_s = start_ray(address, num_cpus=num_cpus, quiet=quiet)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = [recipe_values(recipe, list(space))] if recipe_first else []
    chosen = (
        ASHAScheduler(max_t=epochs, grace_period=grace_period, reduction_factor=reduction_factor)
        if scheduler == "asha"
        else FIFOScheduler()
    )
    storage = str(Path(storage_path).resolve()) if storage_path and "://" not in storage_path else storage_path
    storage = storage or str(out_dir / "ray")
    name = out_dir.name
    if "://" not in storage:
        shutil.rmtree(Path(storage) / name, ignore_errors=True)  # a re-run starts afresh, as a lesson's runs do
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_args=base_args), {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={key: dim.to_tune() for key, dim in space.items()},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            scheduler=chosen,
            search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=seed),
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0 if quiet else 1),
    )
    t_search = time.perf_counter()
    grid = tuner.fit()
    search_s = time.perf_counter() - t_search
    if shutdown and not address:
        ray.shutdown()

    results = [grid[i] for i in range(len(grid))]
    params = {r.metrics.get("trial_id") or f"#{i}": r.config for i, r in enumerate(results)}
    ids = list(params)
    errors = {ids[i]: str(r.error).strip().splitlines()[-1] for i, r in enumerate(results) if r.error}
    history = history_frame([(ids[i], r.metrics_dataframe) for i, r in enumerate(results)])
    trials = trials_table(history, params, epochs, errors)
    good = trials[trials["status"] != "error"] if len(trials) else trials
    if not len(good) or good["epochs"].iloc[0] == 0:
        message = next(iter(errors.values()), "no trial reported a validation accuracy")
        raise CifarLightningError(f"every trial failed: {message} (see the trial logs under {storage}/{name})")
    baseline_id = first_trial_id(results, points)
    info = summary(trials, epochs, baseline_id)
    best_params = {key: rounded(good.iloc[0][key]) for key in space}
    info["best_params"] = best_params
    command = "python -m cifar_lightning.search " + " ".join(
        [*(f"--config {c}" for c in configs), f"--epochs {epochs}", f"--num-samples {num_samples}", *options]
    )
    header = (
        f"Found by Ray Tune ({scheduler}, {num_samples} trials of up to {epochs} epochs over "
        f"{', '.join(f'{k} {d.describe()}' for k, d in space.items())}):\n  {command}\n"
        f"best trial {info['best_trial']}: val_acc {info['best_val_acc']:.4f} after {info['best_epochs']} epochs.\n"
        "Train it: python -m cifar_lightning fit --config best.yaml"
    )
    best_yaml = out_dir / "best.yaml"
    best_yaml.write_text(config_yaml(best_config(recipe, best_params, epochs, seed), header))
    trials.to_csv(out_dir / "trials.csv")
    history.to_csv(out_dir / "history.csv", index=False)
    (out_dir / "trials.md").write_text(f"# {command}\n\n{markdown_table(trials)}")
    seconds = {"ray_start": ray_start_s, "search": search_s, "total": time.perf_counter() - t0}
    return SearchResult(trials, history, info, best_params, best_yaml, out_dir, seconds)


def trial_base_args(configs, options, recipe: Mapping, epochs: int, seed: int) -> list[str]:
    """Every trial's CLI options before its sampled values; paths made absolute (Ray runs trials elsewhere)."""
    args = [part for config in configs for part in ("--config", str(Path(config).resolve()))]
    parsed = parse_options(options)
    for key in ("data.data_dir", "data.cache_dir"):
        if parsed.get(key):
            parsed[key] = str(Path(str(parsed[key])).expanduser().resolve())
    if not get_dotted(recipe, "data.data_dir") and get_dotted(recipe, "data.source") != "synthetic":
        from cifar_lightning import sources

        parsed["data.data_dir"] = str(Path(sources.default_data_dir()).resolve())
    args += [part for key, value in parsed.items() for part in (f"--{key}", yaml_value(value))]
    return [*args, "--trainer.max_epochs", str(epochs), "--seed_everything", str(seed), *TRIAL_OPTIONS]


def yaml_value(value) -> str:
    """A parsed option's value as the CLI reads it back (``[640, 128]``, ``true``, ``0.1``, ``folder``)."""
    return (
        value
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    )


def warm_data_cache(recipe: Mapping) -> None:
    """Decode a local copy into its cache once, here, so that the first trials do not all decode it at once."""
    source = get_dotted(recipe, "data.source", "download")
    if source not in ("pickle", "folder"):
        return
    from cifar_lightning import sources

    data_dir = get_dotted(recipe, "data.data_dir") or sources.default_data_dir()
    sources.load_cached(source, data_dir, get_dotted(recipe, "data.cache_dir"))


def first_trial_id(results, points: list) -> str | None:
    """The id of the trial that ran the recipe's own values (the first point to evaluate)."""
    if not points:
        return None
    for result in results:
        if all(result.config.get(k) == v for k, v in points[0].items()):
            return result.metrics.get("trial_id")
    return None


# --- the command ----------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cifar_lightning.search",
        description="Search the recipe's hyperparameters with Ray Tune and ASHA. Options of `python -m "
        "cifar_lightning fit` after the search's own (e.g. --data.subset 8000) go to every trial.",
        allow_abbrev=False,
    )
    p.add_argument("--config", action="append", required=True, help="the recipe (repeatable, merged in order)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of a trial that is not stopped (ASHA's max_t)")
    p.add_argument("--num-samples", type=int, default=8, help="trials (the first takes the recipe's own values)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="asha", help="fifo: run every trial to the end")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA: keep the top 1/factor at each rung")
    p.add_argument("--cpus-per-trial", type=float, default=1)
    p.add_argument("--gpus-per-trial", type=float, default=0, help="e.g. 0.25: four trials share a GPU")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    p.add_argument("--address", default=None, help="join a running Ray cluster (auto, or <head>:6379)")
    p.add_argument("--storage-path", default=None, help="Ray's trial folders (shared by every node on a cluster)")
    p.add_argument("--out", default="runs/search", help="where the tables and best.yaml go")
    p.add_argument("--seed", type=int, default=42, help="every trial's seed")
    p.add_argument("--no-recipe-trial", action="store_true", help="sample every trial (no trial of the recipe)")
    p.add_argument("--quiet", action="store_true", help="no Ray progress tables or trial logs")
    p.add_argument("--lr", type=float, nargs=2, default=(0.05, 2.0), metavar=("LOW", "HIGH"))
    p.add_argument("--weight-decay", type=float, nargs=2, default=(5e-5, 5e-3), metavar=("LOW", "HIGH"))
    p.add_argument("--label-smoothing", type=float, nargs=2, default=(0.0, 0.3), metavar=("LOW", "HIGH"))
    p.add_argument("--batch-size", type=int, nargs="+", default=(256, 512, 1024))
    return p


def main(argv: Sequence[str] | None = None) -> SearchResult:
    args, options = parser().parse_known_args(argv)
    try:
        result = run_search(
            args.config,
            options,
            space=search_space(args.lr, args.weight_decay, args.label_smoothing, args.batch_size),
            epochs=args.epochs,
            num_samples=args.num_samples,
            scheduler=args.scheduler,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            max_concurrent=args.max_concurrent,
            address=args.address,
            out_dir=args.out,
            storage_path=args.storage_path,
            seed=args.seed,
            recipe_first=not args.no_recipe_trial,
            quiet=args.quiet,
        )
    except CifarLightningError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(markdown_table(result.trials))
    info = result.summary
    print(
        f"{info['trials']} trials, {info['stopped']} stopped early: {info['epochs_trained']} epochs trained of "
        f"{info['epochs_without_stopping']} without stopping; Ray started in {result.seconds['ray_start']:.1f} s, "
        f"the search took {result.seconds['search']:.1f} s"
    )
    print(f"best: {info['best_params']} val_acc {info['best_val_acc']:.4f} -> {result.best_yaml}")
    return result


if __name__ == "__main__":
    main()

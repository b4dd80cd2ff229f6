"""Read training runs back and compare them: no number copied by hand.

    from cifar_lightning.tracking import results
    records = results.load_records(folder="runs/comparison")   # W&B when online, local run records otherwise
    runs = results.runs_table(records)          # one row per run: setting, seed, test_acc, fit_seconds, ...
    curves = results.curves_table(records)      # one row per run and epoch: val_acc
    summary = results.summarize(runs)           # one row per setting: test accuracy mean ± std over seeds, time

A *record* is a dict ``{id, name, group, config, summary, history}``: what
:class:`~cifar_lightning.tracking.WorkshopWandbLogger` writes to ``<save_dir>/records/<id>.json``, and what
:func:`read_wandb` builds from a W&B run. A run's ``setting`` and ``seed`` come from its config (the comparison
runner logs them; ``global_seed`` is ``seed_everything``'s), falling back to its W&B group.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cifar_lightning.errors import check
from cifar_lightning.experiment import device_name
from cifar_lightning.lesson import project_root
from cifar_lightning.plots import plot_metric_curves
from cifar_lightning.tracking.wandb_logger import DEFAULT_PROJECT, resolve_mode

RUNS_CSV, CURVES_CSV, META_JSON = "comparison-runs.csv", "comparison-curves.csv", "comparison-meta.json"


# --- reading ---------------------------------------------------------------------------------------------
def read_records(folder: str | Path) -> list[dict]:
    """Every run record under ``folder`` (any depth), in the order the runs started."""
    paths = sorted(Path(folder).rglob("records/*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    return sorted(records, key=lambda r: r.get("created") or r.get("written", ""))


def read_wandb(
    project: str = DEFAULT_PROJECT, entity: str | None = None, tag: str | None = None, api: Any = None
) -> list[dict]:
    """The runs of a W&B project (only those tagged ``tag`` if given) as records, oldest first."""
    if api is None:
        import wandb

        api = wandb.Api(timeout=30)
    path = f"{entity}/{project}" if entity else project
    filters = {"tags": {"$in": [tag]}} if tag else None
    records = []
    for run in api.runs(path, filters=filters, order="+created_at"):
        records.append(
            {
                "id": run.id,
                "name": run.name,
                "group": getattr(run, "group", None),
                "config": dict(run.config),
                "summary": dict(getattr(run, "summary_metrics", None) or run.summary),
                # every logged validation epoch (history() would sample; scan_history returns all rows)
                "history": list(run.scan_history(keys=["epoch", "val_acc"])),
            }
        )
    return records


def load_records(
    folder: str | Path | None = None,
    source: str = "auto",
    project: str = DEFAULT_PROJECT,
    entity: str | None = None,
    tag: str | None = None,
) -> list[dict]:
    """Runs from W&B (``source="wandb"``), the local records under ``folder`` (``"local"``), or ``"auto"``:
    W&B when the W&B mode resolves to online (an API key and no ``WANDB_MODE=offline``), else local."""
    check(source in ("auto", "wandb", "local"), f"unknown source {source!r}: choose auto, wandb or local")
    if source == "auto":
        source = "wandb" if resolve_mode() == "online" else "local"
    if source == "wandb":
        return read_wandb(project, entity, tag)
    check(folder is not None, "load_records(source='local') needs the folder that holds the runs")
    records = read_records(folder)
    if tag:
        records = [r for r in records if tag in r.get("tags", []) or r.get("config", {}).get("comparison") == tag]
    return records


# --- tables ----------------------------------------------------------------------------------------------
def _setting(record: dict) -> str:
    return str(record.get("config", {}).get("setting") or record.get("group") or record.get("name") or "run")


def _seed(record: dict):
    seed = record.get("config", {}).get("global_seed")  # seed_everything's (the data module's `seed` is its split's)
    return int(seed) if seed not in (None, "", "None") else None


def _val_rows(record: dict) -> list[dict]:
    return [row for row in record.get("history", []) if row.get("val_acc") is not None and row.get("epoch") is not None]


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: id, setting, seed, test_acc, best/final val_acc, fit_seconds, images_per_sec, epochs (trained
    up to the last validation), lr, optimizer (NaN where a run did not log it)."""
    rows = []
    for r in records:
        config, summary, val = r.get("config", {}), r.get("summary", {}), _val_rows(r)
        speed = [row["images_per_sec"] for row in r.get("history", []) if row.get("images_per_sec") is not None]
        rows.append(
            {
                "id": r.get("id"),
                "name": r.get("name"),
                "setting": _setting(r),
                "seed": _seed(r),
                "test_acc": summary.get("test_acc", np.nan),
                "best_val_acc": max((row["val_acc"] for row in val), default=np.nan),
                "final_val_acc": val[-1]["val_acc"] if val else np.nan,
                "fit_seconds": summary.get("fit_seconds", np.nan),
                # the first epoch includes start-up (workers, cuDNN autotuning): leave it out when there are more
                "images_per_sec": float(np.mean(speed[1:] if len(speed) > 1 else speed)) if speed else np.nan,
                "epochs": int(val[-1]["epoch"]) + 1 if val else 0,  # up to its last validation (every n-th epoch)
                "lr": config.get("lr", np.nan),
                "optimizer": config.get("optimizer"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "name",
            "setting",
            "seed",
            "test_acc",
            "best_val_acc",
            "final_val_acc",
            "fit_seconds",
            "images_per_sec",
            "epochs",
            "lr",
            "optimizer",
        ],
    )


def curves_table(records: list[dict]) -> pd.DataFrame:
    """One row per run and validation epoch: id, setting, seed, epoch, val_acc (the last value of each epoch)."""
    rows = [
        {
            "id": r.get("id"),
            "setting": _setting(r),
            "seed": _seed(r),
            "epoch": int(row["epoch"]),
            "val_acc": float(row["val_acc"]),
        }
        for r in records
        for row in _val_rows(r)
    ]
    curves = pd.DataFrame(rows, columns=["id", "setting", "seed", "epoch", "val_acc"])
    return curves.drop_duplicates(["id", "epoch"], keep="last").reset_index(drop=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (in the order the settings first appear): how many seeds, test accuracy mean and
    standard deviation over seeds (NaN for one seed), best validation accuracy, fit time and throughput."""
    check(
        len(runs) > 0,
        "no runs to summarize: run `python -m cifar_lightning.tracking.comparison` first (see docs/wandb.md)",
    )
    grouped = runs.groupby("setting", sort=False)
    summary = pd.DataFrame(
        {
            "runs": grouped.size(),
            "test_acc_mean": grouped["test_acc"].mean(),
            "test_acc_std": grouped["test_acc"].std(ddof=1),
            "best_val_acc_mean": grouped["best_val_acc"].mean(),
            "fit_seconds_mean": grouped["fit_seconds"].mean(),
            "images_per_sec_mean": grouped["images_per_sec"].mean(),
            "lr": grouped["lr"].first(),
        }
    )
    return summary.reset_index()


def versus_baseline(summary: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """Each setting's test accuracy minus the baseline's (percentage points), and whether the difference is larger
    than the noise: twice the seed-to-seed standard deviation of single runs, pooled over the baseline's seeds and
    the setting's (a setting with one run borrows the baseline's spread). A smaller difference proves nothing."""
    check(baseline in set(summary["setting"]), f"no {baseline!r} setting among {', '.join(summary['setting'])}")
    base = summary.set_index("setting").loc[baseline]
    delta = 100 * (summary["test_acc_mean"] - base["test_acc_mean"])
    base_std = base["test_acc_std"]
    own_std = summary["test_acc_std"].fillna(base_std)
    noise = 200 * np.sqrt((base_std**2 + own_std**2) / 2)  # NaN when the baseline has a single run
    return pd.DataFrame(
        {
            "setting": summary["setting"],
            "runs": summary["runs"],
            "Δ test acc (points)": delta.round(2),
            "noise ± (points)": noise.round(2),
            "beyond noise": [bool(pd.notna(n) and abs(d) > n) for d, n in zip(delta, noise, strict=True)],
            "time vs baseline": (summary["fit_seconds_mean"] / base["fit_seconds_mean"]).round(2),
        }
    )


def describe_versus(versus: pd.DataFrame, baseline: str = "baseline") -> str:
    """What a :func:`versus_baseline` table shows, in sentences built from its numbers: which settings beat the
    baseline, or fall behind it, by more than the noise, and which stay within it."""
    others = versus[versus["setting"] != baseline]
    if others.empty:
        return "Only the baseline ran: there is nothing to compare it with."
    if others["noise ± (points)"].isna().all():
        return (
            "The baseline has a single run, so there is no seed spread to compare the differences with: "
            "run it with more seeds (--seeds 3) before reading anything into them."
        )

    def item(row) -> str:
        return f"{row['setting']} ({row['Δ test acc (points)']:+.2f} points, noise ± {row['noise ± (points)']:.2f})"

    beyond = others[others["beyond noise"]]
    better = [item(r) for _, r in beyond.iterrows() if r["Δ test acc (points)"] > 0]
    worse = [item(r) for _, r in beyond.iterrows() if r["Δ test acc (points)"] < 0]
    within = [item(r) for _, r in others[~others["beyond noise"]].iterrows()]
    lines = [
        "Beat the baseline beyond the seed spread: " + ("; ".join(better) if better else "none") + ".",
        "Fell behind it beyond the seed spread: " + ("; ".join(worse) if worse else "none") + ".",
    ]
    if within:
        lines.append(
            "Within the seed spread, so not shown by these runs (more seeds or a longer budget might): "
            + "; ".join(within)
            + "."
        )
    return "\n".join(lines)


def format_mean_std(mean, std, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` for showing (``–`` without a mean, no ``±`` without a spread)."""
    if mean is None or pd.isna(mean):
        return "–"
    return f"{mean * scale:,.{digits}f}" + ("" if std is None or pd.isna(std) else f" ± {std * scale:,.{digits}f}")


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings for showing: ``93.12 ± 0.15`` (percent), seconds, images/s."""

    def pct(mean, std):
        return format_mean_std(mean, std, scale=100, digits=2)

    return pd.DataFrame(
        {
            "setting": summary["setting"],
            "runs": summary["runs"],
            "test acc %": [pct(m, s) for m, s in zip(summary["test_acc_mean"], summary["test_acc_std"], strict=True)],
            "best val acc %": [pct(m, np.nan) for m in summary["best_val_acc_mean"]],
            "fit time s": [("–" if pd.isna(t) else f"{t:.1f}") for t in summary["fit_seconds_mean"]],
            "images/s": [("–" if pd.isna(v) else f"{v:,.0f}") for v in summary["images_per_sec_mean"]],
            "lr": [("–" if pd.isna(v) else f"{v:.3g}") for v in summary["lr"]],
        }
    )


def _shown(path: str | Path) -> str:
    """``path`` relative to the project root when inside it: what a reader of a notebook or slide can find."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def load_comparison(
    folder: str | Path,
    committed: str | Path | None = None,
    project: str = DEFAULT_PROJECT,
    entity: str | None = None,
    tag: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(runs, curves, where)`` of a comparison: from W&B when online; otherwise the local run records under
    ``folder``; when there are none, the compact copy committed under ``committed``."""
    records = None
    if resolve_mode() == "online":
        try:
            records, where = (
                read_wandb(project, entity, tag),
                f"W&B project {project}" + (f", tag {tag}" if tag else ""),
            )
        except Exception as err:  # no network, wrong entity...: the local records still answer
            print(f"W&B not reachable ({type(err).__name__}: {str(err)[:120]}); reading the local run records")
    if records is None:
        records = load_records(folder, source="local", tag=tag)
        where = f"local run records under {folder}"
    if not records and committed is not None and (Path(committed) / RUNS_CSV).exists():
        runs, curves, meta = load_compact(committed)
        about = ", ".join(str(x) for x in (meta.get("device"), meta.get("note")) if x)
        return runs, curves, f"the committed summary {_shown(committed)}" + (f" ({about})" if about else "")
    return runs_table(records), curves_table(records), where


# --- the compact, committable copy -------------------------------------------------------------------------
def save_compact(runs: pd.DataFrame, curves: pd.DataFrame, folder: str | Path, meta: dict | None = None) -> Path:
    """Write ``comparison-runs.csv``, ``comparison-curves.csv`` (and ``comparison-meta.json``): a few kB that can
    be committed, so the results notebook shows real numbers without the raw runs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_csv(folder / RUNS_CSV, index=False, float_format="%.6g")
    curves.to_csv(folder / CURVES_CSV, index=False, float_format="%.6g")
    if meta is not None:
        (folder / META_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def load_compact(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(runs, curves, meta)`` as :func:`save_compact` wrote them."""
    folder = Path(folder)
    check(
        (folder / RUNS_CSV).exists(), f"no {RUNS_CSV} in {folder}: run `python -m cifar_lightning.tracking.comparison`"
    )
    meta_path = folder / META_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return pd.read_csv(folder / RUNS_CSV), pd.read_csv(folder / CURVES_CSV), meta


# --- figures ---------------------------------------------------------------------------------------------
def plot_curves(curves: pd.DataFrame, title: str = "validation accuracy per setting") -> Figure:
    """Mean validation-accuracy curve of each setting over its seeds (drawn by
    :func:`~cifar_lightning.plots.plot_metric_curves`), shaded from the lowest to the highest seed."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for setting, runs in curves.groupby("setting", sort=False):
        by_epoch = runs.groupby("epoch")["val_acc"]
        percent = 100 * by_epoch.agg(["mean", "min", "max"])
        epochs = percent.index + 1  # the first epoch is epoch 1 here
        mean = pd.DataFrame({"epoch": epochs, "val_acc": percent["mean"].to_numpy()})
        plot_metric_curves(
            {f"{setting} ({runs['id'].nunique()})": mean},
            "val_acc",
            ax=ax,
            linewidth=2.5 if setting == "baseline" else 1.4,
        )
        if runs["id"].nunique() > 1:
            ax.fill_between(epochs, percent["min"], percent["max"], color=ax.get_lines()[-1].get_color(), alpha=0.15)
    ax.set(ylabel="validation accuracy (%)", title=title)
    ax.legend(fontsize=8, title="setting (runs)", title_fontsize=8, loc="lower right")
    return fig


def plot_summary_table(summary: pd.DataFrame, title: str = "") -> Figure:
    """The formatted summary as a table figure, the baseline's row highlighted."""
    table = format_summary(summary)
    fig = Figure(figsize=(9, 0.45 * (len(table) + 2)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axis("off")
    cells = ax.table(cellText=table.to_numpy(), colLabels=list(table.columns), loc="center", cellLoc="center")
    cells.auto_set_font_size(False)
    cells.set_fontsize(9)
    cells.scale(1, 1.3)
    for (row, _), cell in cells.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
        elif table["setting"].iloc[row - 1] == "baseline":
            cell.set_facecolor("#e8f0fe")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def environment_meta() -> dict:
    """Versions and device for a benchmark's meta file."""
    import lightning
    import torch
    import wandb

    device = device_name()
    if device == "CPU":
        device += f" ({os.cpu_count()} cores)"
    return {
        "device": device,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "wandb": wandb.__version__,
    }


def benchmark_table(path: str | Path, runs: list[str] | None = None) -> pd.DataFrame:
    """A GPU benchmark's table (``benchmarks/gpu_benchmark.py suite <plan>`` writes ``gpu-<plan>.json`` beside its
    ``.md``), one row per run: mean ± std over seeds of test accuracy, fit seconds, compile seconds and the fit's
    seconds besides compiling, training images/s. ``runs`` picks rows by name. A file not written yet raises an error
    whose message is the command that writes it."""
    path = Path(path)
    plan = path.stem.removeprefix("gpu-")
    check(
        path.exists(),
        f"{path.name}: not measured yet: run `python benchmarks/gpu_benchmark.py suite {plan} "
        f"--data-dir <cifar10-jpeg>` on a GPU",
    )
    data = json.loads(path.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    missing = [name for name in runs or [] if name not in rows]
    check(not missing, f"{path} has no run named {', '.join(missing)}; it has {', '.join(rows)}")

    def fmt(value, scale=1.0, digits=1):  # value: [mean, std] over seeds; one seed has std 0: no spread shown
        mean, std = value or (None, None)
        return format_mean_std(mean, std or None, scale, digits)

    table = pd.DataFrame(
        [
            {
                "run": name,
                "config": row["config"] + (f" {row['extra']}" if row["extra"] else ""),
                "GPUs": row["gpus"],
                "seeds": len(row["seeds"]),
                "epochs": row["epochs"],
                "test acc %": fmt(row["test_acc"], 100, 2),
                "fit s": fmt(row["fit_s"]),
                **(
                    {"compile s": fmt(row["compile_s"]), "fit s less compile": fmt(row["fit_less_compile_s"])}
                    if "compile_s" in row
                    else {}
                ),
                "train images/s": fmt(row["images_per_s"], digits=0),
            }
            for name, row in ((n, rows[n]) for n in (runs or list(rows)))
        ]
    )
    table.attrs["card"] = data["versions"].get("card")
    return table.set_index("run")


def _spread(values: list[float]) -> list[float]:
    """``[mean, std]`` of ``values`` (std 0 for a single value), as the benchmarks' JSON files store them."""
    series = pd.Series(values, dtype=float)
    return [float(series.mean()), float(series.std(ddof=1)) if len(series) > 1 else 0.0]


def recipes_table(bench_dir: str | Path, this_run: dict | None = None, ddp: bool = True) -> pd.DataFrame:
    """The recipes in one table: ``this_run`` (a lesson's own fit, if given) and every measured benchmark: the GPU
    recipes (``gpu-recipes.json``), two GPUs with DDP (``gpu-ddp.json``, if ``ddp``) and the CPU track
    (``cpu-track.json``). One row per run: config, machine, epochs, seeds, test accuracy, fit seconds (compiling
    included), compile seconds and training images/s, mean ± std over seeds.

    ``this_run``: ``{"run", "config", "machine", "epochs", "test_acc", "fit_s", "images_per_s"}``, one seed. A file
    not written yet leaves its rows out; ``table.attrs["missing"]`` holds the command that writes it.
    """
    bench_dir = Path(bench_dir)
    rows, missing = [], []
    if this_run is not None:
        rows.append(
            {
                **{k: this_run[k] for k in ("run", "config", "machine", "epochs")},
                "seeds": 1,
                **{k: [this_run[k], 0.0] for k in ("test_acc", "fit_s", "images_per_s")},
            }
        )
    for plan in ("recipes", "ddp") if ddp else ("recipes",):
        path = bench_dir / f"gpu-{plan}.json"
        if not path.exists():
            missing.append(f"{path.name}: not measured yet: `python benchmarks/gpu_benchmark.py suite {plan}` on a GPU")
            continue
        data = json.loads(path.read_text())
        card = data["versions"].get("card", "GPU")
        for row in data["rows"]:
            rows.append(
                {
                    "run": row["name"],
                    "config": row["config"] + (f" {row['extra']}" if row.get("extra") else ""),
                    "machine": f"{row['gpus']} x {card}",
                    "epochs": row["epochs"],
                    "seeds": len(row["seeds"]),
                    **{k: row.get(k) for k in ("test_acc", "fit_s", "compile_s", "images_per_s")},
                }
            )
    path = bench_dir / "cpu-track.json"
    if path.exists():
        data = json.loads(path.read_text())
        runs = data["runs"]
        rows.append(
            {
                "run": "cpu-track",
                "config": "configs/cpu.yaml",
                "machine": f"{data['cores']}-core {data['cpu']} CPU",
                "epochs": runs[0]["epochs"],
                "seeds": len(runs),
                "test_acc": _spread([r["test_acc"] for r in runs]),
                "fit_s": _spread([r["fit_s"] for r in runs]),
                "images_per_s": _spread([r["train_images"] * r["epochs"] / r["fit_s"] for r in runs]),
            }
        )
    else:
        missing.append(f"{path.name}: not measured yet: `python benchmarks/cpu_track.py --data-dir <cifar10-jpeg>`")

    def fmt(value, scale=1.0, digits=1):  # [mean, std]; std 0 (one seed): no spread shown
        mean, std = value or (None, None)
        return format_mean_std(mean, std or None, scale, digits)

    table = pd.DataFrame(
        [
            {
                "run": row["run"],
                "config": row["config"],
                "machine": row["machine"],
                "epochs": row["epochs"],
                "seeds": row["seeds"],
                "test acc %": fmt(row["test_acc"], 100, 2),
                "fit s": fmt(row["fit_s"]),
                "compile s": fmt(row.get("compile_s")),
                "train images/s": fmt(row["images_per_s"], digits=0),
            }
            for row in rows
        ],
        columns=["run", "config", "machine", "epochs", "seeds", "test acc %", "fit s", "compile s", "train images/s"],
    ).set_index("run")
    table.attrs["missing"] = missing
    table.attrs["test_acc"] = {row["run"]: row["test_acc"] for row in rows}  # [mean, std], for sentences
    return table

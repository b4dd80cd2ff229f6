"""What Lightning's batch-size finder tried: the batch size of each trial, whether its steps ran, its peak memory.

    with trace_batch_trials(system) as trials:
        found = Tuner(trainer).scale_batch_size(system, datamodule=dm, mode="binsearch", max_val=1024)
    pd.DataFrame(trials)          # one row per trial: batch_size, steps_started, steps_done, peak_memory_gib
    plot_batch_trials(trials, found, cap=1024)

``scale_batch_size`` stops at the first of: a trial that runs out of memory, ``max_trials`` trials, the cap
``max_val`` (a size at or above it is returned without being run; ``binsearch`` then keeps a ``margin``, 5 % by
default, below it), or the length of the training set. Its answer is a memory limit only when a trial failed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import lightning as L
import matplotlib.pyplot as plt
import torch

from cifar_lightning.errors import check


@contextmanager
def trace_batch_trials(module: L.LightningModule):
    """Record, while the block runs, the batch size of every training step ``module`` starts and finishes.

    Yields a list that fills with one dict per trial (consecutive steps of one batch size): ``batch_size``,
    ``steps_started``, ``steps_done`` (fewer than started: a step failed, e.g. out of memory) and
    ``peak_memory_gib`` (the GPU's peak allocated memory during the trial's steps; NaN on a CPU). The batch-size
    finder removes the trainer's callbacks for its trials, so the record hooks into the module's own
    ``on_train_batch_start``/``on_train_batch_end``, which it wraps for the block only.
    """
    trials: list[dict] = []
    start_hook, end_hook = module.on_train_batch_start, module.on_train_batch_end

    def on_start(batch, batch_idx):
        size = len(batch[1]) if isinstance(batch, (list, tuple)) else len(batch)
        if not trials or trials[-1]["batch_size"] != size:
            trials.append({"batch_size": size, "steps_started": 0, "steps_done": 0, "peak_memory_gib": math.nan})
        trials[-1]["steps_started"] += 1
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
        return start_hook(batch, batch_idx)

    def on_end(outputs, batch, batch_idx):
        trials[-1]["steps_done"] += 1
        if module.device.type == "cuda":
            peak, before = torch.cuda.max_memory_allocated(module.device) / 2**30, trials[-1]["peak_memory_gib"]
            trials[-1]["peak_memory_gib"] = peak if math.isnan(before) else max(peak, before)
        return end_hook(outputs, batch, batch_idx)

    module.on_train_batch_start, module.on_train_batch_end = on_start, on_end
    try:
        yield trials
    finally:
        del module.on_train_batch_start, module.on_train_batch_end  # the class's hooks again


def stop_reason(trials: list[dict], answer: int, cap: int, margin: float = 0.05) -> str:
    """Why a finder run ended with ``answer``, read from its trials: memory, the cap, or the trial budget."""
    check(len(trials) > 0, "no trials recorded: run scale_batch_size inside trace_batch_trials")
    if any(t["steps_done"] < t["steps_started"] for t in trials):
        return "a trial ran out of memory: the answer is the memory limit"
    if answer >= cap or answer == max(1, int(cap * (1 - margin))):
        return f"it reached the cap max_val={cap} before any trial ran out of memory"
    return "it ran out of trials (max_trials) or of training images before any trial ran out of memory"


def plot_batch_trials(trials: list[dict], answer: int, cap: int, ax=None, title: str | None = None):
    """The batch size of each trial (green: its steps ran; red: a step failed), the cap and the answer."""
    check(len(trials) > 0, "no trials recorded: run scale_batch_size inside trace_batch_trials")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    x = range(1, len(trials) + 1)
    ok = [t["steps_done"] == t["steps_started"] for t in trials]
    ax.bar(x, [t["batch_size"] for t in trials], color=["tab:green" if o else "tab:red" for o in ok])
    for i, t in zip(x, trials, strict=True):
        memory = "" if math.isnan(t["peak_memory_gib"]) else f"\n{t['peak_memory_gib']:.1f} GiB"
        ax.annotate(f"{t['batch_size']}{memory}", (i, t["batch_size"]), ha="center", va="bottom", fontsize=7)
    ax.axhline(cap, color="tab:gray", ls="--", lw=1, label=f"cap max_val = {cap}")
    ax.axhline(answer, color="tab:blue", ls=":", lw=1.5, label=f"answer = {answer}")
    ax.set_yscale("log", base=2)
    ax.set_ylim(top=cap * 4)
    ax.set_xticks(list(x))
    ax.set_xlabel("trial")
    ax.set_ylabel("batch size")
    ax.legend(fontsize=7, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return ax

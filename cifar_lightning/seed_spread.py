"""Is a difference between two settings larger than what a change of seed alone does?

    from cifar_lightning.seed_spread import seed_table, compare
    scores = {"flip_crop": [0.61, 0.63, 0.62], "none": [0.58, 0.60, 0.57]}   # one score per seed
    seed_table(scores)                       # mean, std and the seeds' values per setting
    compare(scores, "flip_crop", "none")     # the difference of the means, the noise, and whether it is beyond it

The rule: a difference counts when it is larger than the noise, two standard deviations of the seed-to-seed spread
(the larger of the two settings' sample standard deviations; lesson 10's ``results.versus_baseline`` pools the two
instead, their root mean square, which is never larger: this rule is the stricter one). With
three seeds per setting the standard deviation is itself rough: a difference just past the line is a hint, not proof.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cifar_lightning.errors import check

NOISE_STDS = 2.0  # a difference must exceed this many seed standard deviations


def seed_table(scores: Mapping[str, Sequence[float]], scale: float = 100.0) -> pd.DataFrame:
    """One row per setting: ``mean``, ``std`` (sample std over the seeds, 0 for one seed), ``seeds`` and ``runs``
    (the values), all multiplied by ``scale`` (100: accuracies as percent)."""
    check(len(scores) > 0, "no settings to summarize")
    rows = {}
    for name, values in scores.items():
        v = np.asarray(values, dtype=float) * scale
        check(v.size > 0, f"setting {name!r} has no runs")
        rows[name] = {
            "mean": v.mean(),
            "std": v.std(ddof=1) if v.size > 1 else 0.0,
            "seeds": int(v.size),
            "runs": ", ".join(f"{x:.1f}" for x in v),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "setting"
    return table


def compare(scores: Mapping[str, Sequence[float]], a: str, b: str, scale: float = 100.0) -> dict:
    """``a`` against ``b``: ``difference`` (mean of a minus mean of b), ``noise`` (:data:`NOISE_STDS` times the
    larger seed std of the two), ``beyond_noise`` (``|difference| > noise``; False when a setting has one seed), and
    ``sentence``, the conclusion in words (scaled units: points of percent with the default ``scale``)."""
    check(a in scores and b in scores, f"compare needs both settings, got {a!r} and {b!r} among {list(scores)}")
    table = seed_table({a: scores[a], b: scores[b]}, scale)
    difference = float(table.loc[a, "mean"] - table.loc[b, "mean"])
    seeds = int(table["seeds"].min())
    noise = NOISE_STDS * float(table["std"].max())
    beyond = seeds > 1 and abs(difference) > noise
    if seeds < 2:
        sentence = f"{a} - {b} = {difference:+.2f} points from one seed each: no spread, so no verdict"
    else:
        where = "beyond" if beyond else "within"
        sentence = (
            f"{a} - {b} = {difference:+.2f} points, {where} the seed noise "
            f"({NOISE_STDS:g} x the larger std = {noise:.2f} points, {seeds} seeds each)"
        )
    return {"difference": difference, "noise": noise, "beyond_noise": bool(beyond), "sentence": sentence}

"""Run size and output places for the notebooks: one size switch, the same code path at every size.

Three sizes, chosen by ``$CIFAR_LIGHTNING_SIZE``:

- ``smoke``: seconds per lesson on synthetic data; CI (``notebooks/conftest.py`` sets it). The numbers mean nothing.
- ``laptop``: real CIFAR-10 on a CPU with 2-4 cores, a few minutes per lesson; the default without a GPU.
- ``full``: real CIFAR-10 on one GPU; the default where CUDA is available.

Every notebook's ``parameters`` cell reads its size from here (papermill may still override the values):

    SIZE = lesson.size()                                  # "smoke", "laptop" or "full"
    SOURCE = lesson.data_source()                         # "synthetic" in smoke, else $CIFAR_LIGHTNING_SOURCE
    EPOCHS = lesson.by_size(smoke=1, laptop=2, full=15)   # one value per size
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypeVar

SIZE_ENV = "CIFAR_LIGHTNING_SIZE"
SOURCE_ENV = "CIFAR_LIGHTNING_SOURCE"
SIZES = ("smoke", "laptop", "full")
T = TypeVar("T")


def size() -> str:
    """``$CIFAR_LIGHTNING_SIZE`` if set, else ``full`` where a CUDA GPU is visible and ``laptop`` otherwise."""
    chosen = os.environ.get(SIZE_ENV, "").strip().lower()
    if not chosen:
        import torch  # here, not at the top: reading the size should not cost the import of torch

        return "full" if torch.cuda.is_available() else "laptop"
    if chosen not in SIZES:
        raise ValueError(f"{SIZE_ENV}={chosen!r} is not a run size: use one of {', '.join(SIZES)}")
    return chosen


def smoke() -> bool:
    """True when the notebooks run at their tiny CI size."""
    return size() == "smoke"


def by_size(*, smoke: T, laptop: T, full: T) -> T:
    """The value for the current run size, e.g. ``EPOCHS = lesson.by_size(smoke=1, laptop=2, full=15)``."""
    return {"smoke": smoke, "laptop": laptop, "full": full}[size()]


def data_source() -> str:
    """``synthetic`` in smoke mode; otherwise ``$CIFAR_LIGHTNING_SOURCE`` (e.g. ``folder``) or ``download``."""
    return "synthetic" if smoke() else os.environ.get(SOURCE_ENV, "download")


def project_root() -> Path:
    """The repo root when run from inside it (notebooks run in ``notebooks/``), else the working directory."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "cifar_lightning").is_dir():
            return folder
    return here


def data_dir() -> str:
    """``$PATH_DATASETS`` or ``<root>/data``."""
    return os.environ.get("PATH_DATASETS") or str(project_root() / "data")


def run_dir(name: str) -> Path:
    """Where a lesson's logs and checkpoints go: ``<root>/runs/<name>`` (git-ignored)."""
    path = project_root() / "runs" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def figure_path(name: str) -> Path:
    """Where a lesson saves a figure that the README and slides use.

    Runs at ``full`` size write ``<root>/figures/<name>`` (committed); ``smoke`` and ``laptop`` runs write under
    ``runs/figures``, so that neither CI nor a learner's laptop overwrites the figures of the full runs.
    """
    folder = project_root() / ("figures" if size() == "full" else "runs/figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def key_result(lesson_id: str, name: str, value: float, unit: str = "") -> None:
    """Print a lesson's headline number and keep it in ``runs/key-results/<lesson_id>.json``.

    ``benchmarks/lesson_times.py`` reads these files into its table of lesson times and results.
    """
    print(f"key result of lesson {lesson_id}: {name} = {value:.4g}{' ' + unit if unit else ''}")
    folder = project_root() / "runs" / "key-results"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"lesson": lesson_id, "size": size(), "name": name, "value": float(value), "unit": unit}
    (folder / f"{lesson_id}.json").write_text(json.dumps(record, indent=1) + "\n")

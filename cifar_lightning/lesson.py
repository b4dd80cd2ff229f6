"""Run size and output places for the notebooks: one smoke switch, the same code path.

Every notebook's ``parameters`` cell reads its size from here (papermill may still override it):

    SMOKE = lesson.smoke()                  # True when CIFAR_LIGHTNING_SMOKE=1 (set by notebooks/conftest.py)
    SOURCE = lesson.data_source()           # "synthetic" in smoke mode, else $CIFAR_LIGHTNING_SOURCE or "download"
    MAX_EPOCHS = 1 if SMOKE else 15
"""

from __future__ import annotations

import os
from pathlib import Path

SMOKE_ENV = "CIFAR_LIGHTNING_SMOKE"
SOURCE_ENV = "CIFAR_LIGHTNING_SOURCE"


def smoke() -> bool:
    """True when the notebooks should run at their tiny CI size."""
    return os.environ.get(SMOKE_ENV, "0").strip().lower() in {"1", "true", "yes"}


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

    Real runs write ``<root>/figures/<name>`` (committed); smoke runs write under ``runs/figures`` so that
    CI never overwrites the real figures with synthetic ones.
    """
    folder = project_root() / ("runs/figures" if smoke() else "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name

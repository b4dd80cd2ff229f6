"""Experiment tracking with Weights & Biases that works for everyone: with an account, without one, offline.

    from cifar_lightning.tracking import WorkshopWandbLogger
    trainer = L.Trainer(logger=WorkshopWandbLogger(group="baseline"))

or on the command line (``configs/wandb.yaml`` holds the same thing)::

    python -m cifar_lightning fit --config configs/quick.yaml --config configs/wandb.yaml

The mode is picked so that W&B never prompts, also in a notebook or with stdin closed:

* ``WANDB_MODE`` (or the ``mode`` argument) ``online`` | ``offline`` | ``disabled`` is obeyed;
* otherwise ``online`` when an API key is configured (``WANDB_API_KEY``, ``wandb login``'s ``~/.netrc``
  entry), else ``offline``: the run is written under ``runs/wandb/`` and ``wandb sync`` uploads it later.

Next to W&B's own files every run writes a small JSON *run record* (config, metric history, summary) under
``<save_dir>/records/``: :mod:`cifar_lightning.tracking.results` reads those when W&B's server is out of reach.
"""

from __future__ import annotations

import json
import netrc
import os
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from cifar_lightning.errors import CifarLightningError, check, check_choice

MODES = ("online", "offline", "disabled")
_LEGACY_MODES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts
DEFAULT_PROJECT = "cifar-lightning"
_OPEN: weakref.WeakSet = weakref.WeakSet()  # loggers whose W&B run is open (lesson_logger closes them)


def _key_in_netrc(host: str) -> bool:
    """Whether ``~/.netrc`` (or ``$NETRC``) holds a login for the W&B host (what ``wandb login`` writes)."""
    try:
        return bool(netrc.netrc(os.environ.get("NETRC")).authenticators(urlsplit(host).netloc))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def has_api_key() -> bool:
    """True when a W&B API key is configured: ``$WANDB_API_KEY`` or the ``.netrc`` entry ``wandb login`` writes.

    Reads only; never prompts, never contacts the server. (``wandb.login(prompt=False)`` answers too, but it
    logs the whole process in and asks the server who we are; ``wandb.api.api_key`` is deprecated.)
    """
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth  # wandb's own reader (also ~/_netrc, $NETRC)
    except ImportError:  # other wandb versions keep it elsewhere
        return _key_in_netrc(host)
    try:
        return bool(read_netrc_auth(host=host))
    except Exception:  # a malformed entry: no usable key, the run stays local
        return False


def resolve_mode(mode: str | None = None) -> str:
    """The W&B mode for a new run: ``mode`` or ``$WANDB_MODE`` if given, else online with a key, else offline.

    Raises :class:`~cifar_lightning.errors.CifarLightningError` for an unknown mode, and for ``online``
    without a key (W&B would prompt for one).
    """
    if os.environ.get("WANDB_DISABLED", "").strip().lower() in {"1", "true", "yes"} and not mode:
        return "disabled"
    wanted = (mode or os.environ.get("WANDB_MODE", "")).strip().lower()
    wanted = _LEGACY_MODES.get(wanted, wanted)
    if not wanted:
        return "online" if has_api_key() else "offline"
    check_choice("W&B mode", wanted, MODES)
    check(
        wanted != "online" or has_api_key(),
        "W&B mode is online but no API key is configured: run `wandb login` (or set WANDB_API_KEY), "
        "or set WANDB_MODE=offline to log locally and `wandb sync` later",
    )
    return wanted


def default_save_dir() -> str:
    """``$WANDB_DIR`` if set, else the repo's git-ignored ``runs/`` folder."""
    from cifar_lightning.lesson import project_root

    return os.environ.get("WANDB_DIR") or str(project_root() / "runs")


def _json_safe(value: Any) -> Any:
    """Numbers, strings, lists and dicts as they are; tensors as numbers; anything else as its string."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


class WorkshopWandbLogger(WandbLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.WandbLogger` that never prompts and keeps a local record.

    Args:
        project: the W&B project (default ``cifar-lightning``).
        name: the run's display name (W&B picks one if ``None``).
        group: runs of one setting share a group; W&B's UI then shows their mean and spread.
        tags: free labels, e.g. the comparison a run belongs to.
        save_dir: where W&B's files (``<save_dir>/wandb/``), the run records (``<save_dir>/records/``) and the
            checkpoints go; default ``$WANDB_DIR`` or ``<repo>/runs`` (git-ignored).
        mode: ``online`` | ``offline`` | ``disabled``; default ``$WANDB_MODE``, else online only with an API key.
        log_model: upload checkpoints as W&B artifacts: ``True`` the best and last at the end, ``"all"`` each
            one as it is saved. Off by default: a ResNet-18 checkpoint is ~45 MB per run.
        record: write the local JSON run record.
        **kwargs: passed on to ``wandb.init`` (e.g. ``notes``, ``job_type``, ``entity``).
    """

    def __init__(
        self,
        project: str = DEFAULT_PROJECT,
        name: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        save_dir: str | None = None,
        mode: str | None = None,
        log_model: bool | Literal["all"] = False,
        record: bool = True,
        **kwargs: Any,
    ):
        self._mode_error = None
        try:
            self.mode = resolve_mode(mode)
        except CifarLightningError as err:  # raised when the run starts: config parsers would bury the message
            self.mode, self._mode_error = "disabled", err
        save_dir = save_dir or default_save_dir()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        # `mode` goes straight to wandb.init; Lightning's own `offline=True` would forbid log_model, but W&B keeps
        # offline artifacts and `wandb sync` uploads them. (Lightning 2.6 always passes wandb.init an `anonymous`
        # setting, which recent wandb versions answer with a one-line warning that it has no effect.)
        super().__init__(
            name=name,
            project=project,
            save_dir=save_dir,
            log_model=log_model,
            group=group,
            tags=tags,
            mode=self.mode,
            **kwargs,
        )
        self._run = None  # the W&B run, once Lightning's WandbLogger has started it (on first use)
        self._keep_record = record
        self._record: dict[str, Any] = {
            "project": project,
            "name": name,
            "group": group,
            "tags": list(tags or []),
            "mode": self.mode,
            "config": {},
            "summary": {},
            "history": [],
        }
        self._last_write = 0.0
        if self.mode == "offline" and not mode and not os.environ.get("WANDB_MODE"):
            rank_zero_info(
                f"W&B: no API key configured, logging offline under {save_dir}/wandb "
                "(upload later with `wandb sync <run folder>`)"
            )

    @property
    def experiment(self):
        if self._mode_error is not None:
            raise self._mode_error
        run = super().experiment
        if self._run is None:
            self._run = run
            _OPEN.add(self)
        return run

    def __getstate__(self):
        return {**super().__getstate__(), "_run": None}  # a W&B run does not pickle: a copy gets it back on first use

    @property
    def record_path(self) -> Path | None:
        """Where this run's JSON record is written (known once the W&B run exists)."""
        if self._run is None:
            return None
        return Path(self.save_dir) / "records" / f"{self.version}.json"

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        super().log_hyperparams(params)
        self._record["config"].update(_json_safe(_as_dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        row = {k: v for k, v in ((k, _json_safe(v)) for k, v in metrics.items()) if _is_number(v)}  # no media
        if not row:
            return
        self._record["history"].append({"step": step, **row})
        self._record["summary"].update(row)

    @rank_zero_only
    def save(self) -> None:
        super().save()
        if time.monotonic() - self._last_write > 10:  # Lightning calls save() after every log call
            self.write_record()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        self._record["status"] = status
        self.write_record()

    @rank_zero_only
    def write_record(self) -> Path | None:
        """Write the run record now (also done on ``finalize`` and every 10 s while training)."""
        if not self._keep_record or self._run is None:
            return None
        run, now = self._run, datetime.now(timezone.utc).isoformat(timespec="microseconds")
        self._record.setdefault("created", now)  # results list runs in this order
        self._record.update(
            id=run.id,
            name=run.name,
            wandb_dir=None if self.mode == "disabled" else str(Path(run.dir).parent),
            written=now,
        )
        path = self.record_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._record, indent=1))
        tmp.replace(path)  # atomic: a reader never sees half a file
        self._last_write = time.monotonic()
        return path

    def finish(self) -> None:
        """Write the record and close the W&B run, so that the next logger starts a new one (notebooks, loops)."""
        if self._run is not None:
            self.write_record()
            self._run.finish()
        _OPEN.discard(self)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_dict(params) -> dict:
    return dict(vars(params)) if hasattr(params, "__dict__") and not isinstance(params, dict) else dict(params)


def lesson_logger(lesson: str, name: str | None = None, **kwargs: Any) -> WorkshopWandbLogger:
    """The logger a notebook gives its Trainer: W&B group ``lesson``, files under ``runs/<lesson>/``.

    Closes a W&B run an earlier cell left open, so that every call starts a run of its own (Lightning's
    WandbLogger would otherwise keep logging into the open one).

        trainer = L.Trainer(logger=tracking.lesson_logger("07-training-tricks", name="label-smoothing"), ...)
    """
    import wandb

    from cifar_lightning.lesson import run_dir

    for logger in list(_OPEN):
        logger.finish()
    if wandb.run is not None:  # one opened by hand
        wandb.finish()
    return WorkshopWandbLogger(group=lesson, name=name, save_dir=str(run_dir(lesson)), **kwargs)

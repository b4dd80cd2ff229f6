"""Mistakes in options and config files, told in one line: which file, which key, what it should be.

jsonargparse answers a wrong option with the whole usage (over a hundred lines) above the one line that matters, and a
YAML syntax error without the file's name. :class:`OneLineParser` (the CLI's parser class) prints only that line, with
a suggestion for a misspelt key; :func:`check_config_files` names the config file that is not valid YAML.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningArgumentParser

from cifar_lightning.errors import CifarLightningError

_UNKNOWN = re.compile(r"^(?:Subcommand '\w+' does not accept option|Option) '([^']+)'")  # in a config file
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: --([\w.]+)")  # on the command line


def check_config_files(args: list[str]) -> None:
    """Raise :class:`CifarLightningError` naming the first ``--config`` file of ``args`` that is not valid YAML."""
    for path in config_files(args):
        if not path.is_file():
            continue  # the parser says that the file does not exist
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise CifarLightningError(f"{path} is not valid YAML{where}: {problem}") from None


def config_files(args: list[str]) -> list[Path]:
    """The files given with ``--config``/``-c`` (``--config F`` or ``--config=F``), in order."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            found.append(Path(args[i + 1]))
        elif arg.startswith("--config="):
            found.append(Path(arg.split("=", 1)[1]))
    return found


def file_with_key(files: list[Path], key: str) -> Path | None:
    """The last of ``files`` whose YAML holds the dotted ``key``."""
    for path in reversed(files):
        try:
            node = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return path
    return None


def one_line(message: str, known_keys=(), args: list[str] | None = None) -> str:
    """jsonargparse's (often multi-line) message as one line; an unknown key gets the closest known one, and the config
    file it is in when ``args`` (the parsed arguments) name one."""
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    if not lines:
        return "invalid arguments"
    unknown = _UNKNOWN.search(lines[0]) or _UNRECOGNIZED.search(lines[0])
    if unknown:
        key, dashes = unknown.group(1), "--" if unknown.re is _UNRECOGNIZED else ""
        close = difflib.get_close_matches(key, list(known_keys), n=1, cutoff=0.6)
        where = None if dashes else file_with_key(config_files(args or []), key)
        return (
            f"unknown {'option' if dashes else 'key'} {dashes}{key}"
            + (f" in {where}" if where else "")
            + (f" (did you mean {dashes}{close[0]}?)" if close else "")
        )
    head, rest = lines[0], lines[1:]
    # The specific cause, when jsonargparse lists what it tried (a class it could not import, a wrong type).
    detail = next((line for line in rest if "class_path" in line), rest[0] if rest else "")
    if detail.endswith(":") and detail in rest and rest.index(detail) + 1 < len(rest):
        detail += " " + rest[rest.index(detail) + 1]
    return f"{head} {detail}".strip()


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser, ending a parse error with one ``error:`` line (exit status 2) instead of the usage."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            return super().error(message, ex)  # jsonargparse raises, and may handle it itself
        parser = getattr(ex, "subcommand_parser", None) or self
        exits, parser.exit_on_error = parser.exit_on_error, False  # a failure in here raises instead of exiting
        try:
            keys = parser.get_defaults().keys()
        except Exception:  # suggestions are a courtesy: never fail while reporting a failure
            keys = ()
        finally:
            parser.exit_on_error = exits
        args = getattr(self, "args", None)  # what jsonargparse is parsing
        sys.stderr.write(f"error: {one_line(message, keys, args if isinstance(args, list) else None)}\n")
        self.exit(2)

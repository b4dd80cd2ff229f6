"""Runs the lessons at one size, one after another, and records each one's time and headline number.

    python benchmarks/lesson_times.py --size laptop --data-dir <cifar10-jpeg>             # all lessons, on a CPU
    python benchmarks/lesson_times.py --size laptop --data-dir <cifar10-jpeg> 03 05       # only those lessons
    python benchmarks/lesson_times.py --size full --data-dir <cifar10-jpeg> --in-place    # one GPU; keep the outputs

Each lesson runs with papermill in ``notebooks/`` under ``CIFAR_LIGHTNING_SIZE=<size>``: the same parameters cell CI
uses at ``smoke`` size. Without ``--in-place`` the executed copies go to ``runs/executed/<size>/``; with it the
outputs are stored in the notebooks themselves (how the committed outputs are made) and cleaned of machine noise
(``notebooks/clean_outputs.py``). Each lesson's last cells call ``lesson.key_result``; its number is read back here.

Writes ``benchmarks/results/lesson-times-<size>.{json,md}``: the machine, versions, data, and per lesson the
seconds from papermill's start to its end (kernel start included) and the key result. Rows of lessons not run this
time are kept from the previous file, so one lesson can be re-timed alone (its row then says when it ran).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"
KEY_RESULTS = ROOT / "runs" / "key-results"
LIMITS = {"laptop": "each lesson <= 6 min, the series <= 45 min, on a CPU with 2-4 cores"}


def machine() -> dict:
    import lightning
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }


def lessons(numbers: list[str]) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if not numbers:
        return found
    chosen = [nb for nb in found if nb.name[:2] in numbers]
    missing = sorted(set(numbers) - {nb.name[:2] for nb in chosen})
    if missing:
        sys.exit(f"no lesson numbered {', '.join(missing)} in notebooks/ (there are {found[0].name[:2]}..)")
    return chosen


def run_lesson(notebook: Path, size: str, in_place: bool) -> dict:
    lesson_id = notebook.name[:2]
    (KEY_RESULTS / f"{lesson_id}.json").unlink(missing_ok=True)
    out = notebook if in_place else ROOT / "runs" / "executed" / size / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CIFAR_LIGHTNING_SIZE": size}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend puts the figures into the saved outputs
    env.setdefault("WANDB_MODE", "offline")
    start = time.perf_counter()
    done = subprocess.run(
        ["papermill", "--kernel", "python3", "--cwd", str(NOTEBOOKS), "--no-progress-bar", str(notebook), str(out)],
        env=env,
    )
    seconds = time.perf_counter() - start
    if in_place:
        subprocess.run([sys.executable, str(NOTEBOOKS / "clean_outputs.py"), str(out)], check=True)
    key_file = KEY_RESULTS / f"{lesson_id}.json"
    key = json.loads(key_file.read_text()) if key_file.exists() else None
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    row = {"lesson": lesson_id, "notebook": notebook.name, "seconds": round(seconds, 1), "ok": done.returncode == 0}
    return row | {"key_result": key, "ran": when}


def markdown(report: dict) -> str:
    m = report["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cores']} cores, no GPU"
    rows = sorted(report["rows"].values(), key=lambda r: r["lesson"])
    total = sum(r["seconds"] for r in rows)
    lines = [
        f"# Lesson times at `{report['size']}` size",
        "",
        f"Written by `benchmarks/lesson_times.py`. Machine: {where}; torch {m['torch']}, lightning {m['lightning']}, "
        f"Python {m['python']}. Data: {report['data']}. Seeds: each lesson's own (its parameters cell).",
        "",
        f"Regenerate: `python benchmarks/lesson_times.py --size {report['size']} --data-dir <cifar10-jpeg>`",
        "",
    ]
    if report["size"] in LIMITS:
        lines += [f"Target: {LIMITS[report['size']]}.", ""]
    lines += ["| lesson | minutes | key result | ran |", "| --- | --- | --- | --- |"]
    for r in rows:
        key = r["key_result"]
        shown = f"{key['name']}: {key['value']:.4g}{' ' + key['unit'] if key['unit'] else ''}" if key else "none"
        status = "" if r["ok"] else " (failed)"
        lines.append(f"| {r['notebook']} | {r['seconds'] / 60:.1f}{status} | {shown} | {r['ran']} |")
    lines += [f"| **the series** | **{total / 60:.1f}** | | |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("numbers", nargs="*", help="two-digit lesson numbers; none: every lesson")
    parser.add_argument("--size", choices=["smoke", "laptop", "full"], required=True)
    parser.add_argument("--data-dir", help="a CIFAR-10 folder (<dir>/{train,test}/<class>/*.jpg); none: download")
    parser.add_argument("--in-place", action="store_true", help="store the outputs in the notebooks")
    parser.add_argument("--results-dir", default=str(RESULTS), help="where the table goes")
    args = parser.parse_args()

    chosen = lessons(args.numbers)
    if args.data_dir:
        if not (Path(args.data_dir) / "train").is_dir():
            sys.exit(f"--data-dir {args.data_dir}: no train/ folder there (expected <dir>/train/<class>/*.jpg)")
        os.environ.update(CIFAR_LIGHTNING_SOURCE="folder", PATH_DATASETS=str(Path(args.data_dir).resolve()))
    data = "JPEG copy of CIFAR-10" if args.data_dir else "CIFAR-10 (torchvision download)"
    if args.size == "smoke":
        data = "synthetic images"

    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / f"lesson-times-{args.size}.json"
    old_rows = json.loads(json_path.read_text())["rows"] if json_path.exists() else {}
    report = {"size": args.size, "data": data, "machine": machine(), "rows": old_rows}
    failed = []
    for notebook in chosen:
        row = run_lesson(notebook, args.size, args.in_place)
        print(f"{notebook.name}: {row['seconds']:.0f} s, key result {row['key_result']}", flush=True)
        report["rows"][row["lesson"]] = row
        failed += [] if row["ok"] else [notebook.name]
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        (results / f"lesson-times-{args.size}.md").write_text(markdown(report))
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (papermill's error is above)")


if __name__ == "__main__":
    main()

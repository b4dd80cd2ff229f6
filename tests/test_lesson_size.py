"""The lessons' one size switch, and the benchmark that runs and times the lessons."""

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from cifar_lightning import lesson

ROOT = Path(__file__).resolve().parents[1]


def load_lesson_times():
    spec = importlib.util.spec_from_file_location("lesson_times", ROOT / "benchmarks" / "lesson_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chosen", ["smoke", "laptop", "full", " Laptop "])
def test_size_reads_the_environment(monkeypatch, chosen):
    monkeypatch.setenv(lesson.SIZE_ENV, chosen)
    assert lesson.size() == chosen.strip().lower()
    assert lesson.smoke() == (chosen == "smoke")
    assert lesson.by_size(smoke=1, laptop=2, full=3) == {"smoke": 1, "laptop": 2, "full": 3}[lesson.size()]


def test_size_defaults_to_the_hardware(monkeypatch):
    monkeypatch.delenv(lesson.SIZE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lesson.size() == "laptop"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lesson.size() == "full"


def test_an_unknown_size_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(lesson.SIZE_ENV, "huge")
    with pytest.raises(ValueError, match="CIFAR_LIGHTNING_SIZE='huge' is not a run size: use one of smoke, laptop"):
        lesson.size()


def test_data_source_is_synthetic_only_in_smoke(monkeypatch):
    monkeypatch.setenv(lesson.SOURCE_ENV, "folder")
    monkeypatch.setenv(lesson.SIZE_ENV, "smoke")
    assert lesson.data_source() == "synthetic"
    monkeypatch.setenv(lesson.SIZE_ENV, "laptop")
    assert lesson.data_source() == "folder"


def test_key_result_is_printed_and_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lesson, "project_root", lambda: tmp_path)
    monkeypatch.setenv(lesson.SIZE_ENV, "laptop")
    lesson.key_result("03", "fine-tune minus scratch", 6.123, "points")
    assert "key result of lesson 03: fine-tune minus scratch = 6.123 points" in capsys.readouterr().out
    record = json.loads((tmp_path / "runs" / "key-results" / "03.json").read_text())
    assert record == {
        "lesson": "03",
        "size": "laptop",
        "name": "fine-tune minus scratch",
        "value": 6.123,
        "unit": "points",
    }


def tiny_lesson(path: Path, body: str) -> None:
    """A two-cell notebook shaped like a lesson: a parameters cell, then the lesson's code."""
    notebook = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "from cifar_lightning import lesson\nSCALE = lesson.by_size(smoke=2, laptop=3, full=4)"
    )
    params.metadata["tags"] = ["parameters"]
    notebook.cells = [params, nbformat.v4.new_code_cell(body)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def test_lesson_times_runs_lessons_and_tables_their_key_results(tmp_path, monkeypatch):
    times = load_lesson_times()
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    notebooks.mkdir()
    tiny_lesson(notebooks / "01-first.ipynb", 'lesson.key_result("01", "scaled", 10 * SCALE, "%")')
    tiny_lesson(notebooks / "02-second.ipynb", "raise RuntimeError('broken lesson')")
    monkeypatch.setattr(times, "NOTEBOOKS", notebooks)
    # lesson.key_result writes under the project root, which is the kernel's working directory outside a checkout
    monkeypatch.setattr(times, "KEY_RESULTS", notebooks / "runs" / "key-results")
    monkeypatch.setattr(sys, "argv", ["lesson_times.py", "--size", "smoke", "--results-dir", str(results)])
    with pytest.raises(SystemExit, match="failed: 02-second.ipynb"):
        times.main()
    report = json.loads((results / "lesson-times-smoke.json").read_text())
    first, second = report["rows"]["01"], report["rows"]["02"]
    assert first["ok"] and first["key_result"]["value"] == 20.0 and first["key_result"]["size"] == "smoke"
    assert not second["ok"] and second["key_result"] is None
    table = (results / "lesson-times-smoke.md").read_text()
    assert "| 01-first.ipynb |" in table and "scaled: 20 %" in table and "(failed)" in table
    assert (ROOT / "runs" / "executed" / "smoke" / "01-first.ipynb").exists()  # not written over the lesson


def test_lesson_times_refuses_an_unknown_lesson_number(monkeypatch):
    times = load_lesson_times()
    with pytest.raises(SystemExit, match="no lesson numbered 99"):
        times.lessons(["99"])

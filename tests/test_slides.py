"""The workshop deck: its code matches the package, its build refuses missing figures, and it works in Chromium.

The browser test builds with the real ``figures/`` (or ``$SLIDES_FIGURES``) and drives Debian's chromium through
playwright-core (``npm ci --prefix slides``). Set ``SLIDES_SCREENSHOTS=DIR`` to keep the screenshots it takes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "slides"
TALK = SLIDES / "talk.md"

# Loaded from their files under names of their own: a plain ``import build`` could find PyPI's ``build``.
_spec = importlib.util.spec_from_file_location("slides_codecheck", SLIDES / "codecheck.py")
codecheck = sys.modules.setdefault("slides_codecheck", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(codecheck)
build = codecheck.build

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def test_code_on_the_slides_matches_the_package():
    result = codecheck.check_talk(TALK)
    assert result.problems == []
    # The check really looked: many blocks, calls bound to real signatures, package objects really built.
    assert result.blocks >= 20
    assert {
        "L.Trainer",
        "CIFARSystem",
        "CIFAR10DataModule",
        "build_resnet",
        "tuner.lr_find",
        "tuner.scale_batch_size",
        "trainer.fit",
        "WandbLogger",
        "ModelCheckpoint",
    } <= set(result.bound)
    assert {"CIFARSystem", "CIFAR10DataModule", "build_transform", "build_callbacks", "build_resnet"} <= set(
        result.made
    )
    assert result.commands >= 4


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "from cifar_lightning import CIFARSystem\nCIFARSystem(learning_rate=0.1)",
            "unexpected keyword argument 'learning_rate'",
        ),
        ("import lightning as L\ntrainer = L.Trainer(max_epoch=3)", "unexpected keyword argument 'max_epoch'"),
        (
            "import lightning as L\nfrom lightning.pytorch.tuner import Tuner\ntuner = Tuner(L.Trainer())\n"
            "tuner.lr_find(None, min_learning_rate=1e-5)",
            "min_learning_rate",
        ),
        (
            "from cifar_lightning import CIFAR10DataModule\nCIFAR10DataModule(augment='flipcrop')",
            "unknown augmentation preset",
        ),
        ("from cifar_lightning import build_resnet\nbuild_resnet(depth=50, pretrained=True)", "unknown depth 50"),
        (
            "from cifar_lightning import build_resnet, count_parameters\ncount_parameters(build_resnet(), 2)",
            "too many positional",
        ),
        ("import lightning as L\nL.Trainerr()", "has no attribute 'Trainerr'"),
        ("from cifar_lightning import BatchSizeFinder", "ImportError"),
        ("trainer = L.Trainer(\n", "syntax error"),
    ],
)
def test_code_check_rejects_what_the_package_does_not_have(code, expected):
    problems = codecheck.check_python(code)
    assert any(expected in p for p in problems), problems


def test_cli_lines_are_parsed_by_the_real_cli():
    assert codecheck.cli_commands(
        "pip install -e .\npython -m cifar_lightning fit --config configs/quick.yaml  # go\n"
    ) == [["fit", "--config", "configs/quick.yaml"]]
    assert codecheck.check_cli(["fit", "--config", "configs/quick.yaml", "--trainer.max_epochs", "5"]) == []
    problems = codecheck.check_cli(["fit", "--config", "configs/quick.yaml", "--model.learning_rate", "0.1"])
    assert len(problems) == 1 and "model.learning_rate" in problems[0]


def test_build_names_the_missing_figure(tmp_path, capsys):
    assert build.main(["--figures", str(tmp_path), "--out", str(tmp_path / "deck.html")]) == 1
    err = capsys.readouterr().err.strip()
    first = build.referenced_figures(build.expand_includes(TALK.read_text()))[0]
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and f"figures/{first}" in err
    assert not (tmp_path / "deck.html").exists()


@pytest.mark.parametrize(
    ("talk", "expected"),
    [
        ("# T\n\n![x](https://example.org/x.png)\n", "must be figures/<name>"),
        ("# T\n\n```yaml\nkey: 1\n---\nother: 2\n```\n", "slide break"),
        ("# T\n\n```python\nx = 1\n", "closing ``` is missing"),
        ("# T\n\n<!-- include: cifar_lightning/nothing.py -->\n", "does not exist"),
        ("# T\n\n<!-- include: cifar_lightning/callbacks.py::NoSuchThing -->\n", "no class or function"),
    ],
)
def test_build_refuses_a_broken_talk(tmp_path, capsys, talk, expected):
    (tmp_path / "talk.md").write_text(talk)
    assert (
        build.main(["--talk", str(tmp_path / "talk.md"), "--figures", str(tmp_path), "--out", str(tmp_path / "o.html")])
        == 1
    )
    assert expected in capsys.readouterr().err


def test_includes_are_the_package_source():
    text = build.expand_includes(
        "<!-- include: cifar_lightning/callbacks.py::EpochTimer -->\n"
        "<!-- include: cifar_lightning/system.py::CIFARSystem.training_step -->"
    )
    source = (ROOT / "cifar_lightning" / "callbacks.py").read_text()
    assert text.startswith("```python\nclass EpochTimer(Callback):\n")
    assert "def on_train_epoch_end(self, trainer, pl_module):" in text and "def on_train_epoch_end" in source
    assert "Written here because" not in text  # the docstring stays in the source
    assert "\ndef training_step(self, batch, batch_idx):\n" in text  # a method, dedented
    assert "build_callbacks" not in text


def test_every_lesson_has_its_section():
    titles = [line for line in TALK.read_text().splitlines() if line.startswith("# ")]
    numbers = [t.split()[1] for t in titles if t.split()[1].isdigit()]
    assert numbers == [f"{n:02d}" for n in range(1, 12)]


def test_no_placeholders_and_no_typed_results():
    text = TALK.read_text()
    prose = codecheck.FENCE.sub("", text)  # settings in code (swa_epoch_start=0.8) are not results
    for word in ("todo", "tbd", "placeholder", "lorem", "xxx"):
        assert word not in text.lower(), f"talk.md says {word!r}"
    # Results come from the figures: no accuracy or speed-up typed into a slide or a note.
    typed = re.findall(r"\d+(?:\.\d+)?\s*(?:%|percent|x faster|× faster|img/s|images/s)", prose)
    assert typed == [], typed


def browser_ready() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium"
    if shutil.which("node") is None:
        return "no node: apt-get install nodejs npm"
    if not (SLIDES / "node_modules" / "playwright-core").is_dir():
        return "no slides/node_modules: npm ci --prefix slides"
    return None


def test_deck_works_in_chromium(tmp_path):
    reason = browser_ready()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the deck in a browser, but: {reason}")
        pytest.skip(reason)
    figures = Path(os.environ.get("SLIDES_FIGURES", ROOT / "figures"))
    deck = tmp_path / "index.html"
    built = subprocess.run(
        [sys.executable, str(SLIDES / "build.py"), "--figures", str(figures), "--out", str(deck)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr.strip()
    shots = Path(os.environ.get("SLIDES_SCREENSHOTS", tmp_path / "shots"))
    names = build.referenced_figures(build.expand_includes(TALK.read_text()))
    # Screenshots of a few kinds of slide: the title, a figure, a figure with code, included source, two figures.
    parts = TALK.read_text().split("\n---\n")
    figure_slides = [i + 1 for i, text in enumerate(parts) if "](figures/" in text]
    code_and_figure = [n for n in figure_slides if "```python" in parts[n - 1]]
    included = [i + 1 for i, text in enumerate(parts) if "<!-- include: cifar_lightning/" in text]
    wanted = [1, figure_slides[0], code_and_figure[0], included[-1], figure_slides[-1]]
    run = subprocess.run(
        ["node", str(SLIDES / "check_deck.mjs"), str(deck), str(shots), ",".join(map(str, wanted))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)

    assert report["consoleErrors"] == [] and report["pageErrors"] == []
    assert report["requests"] == [], "the deck must be self-contained"
    assert report["total"] == len(report["slides"]) == TALK.read_text().count("\n---\n") + 1
    for slide in report["slides"]:
        where = f"slide {slide['number']} ({slide['title']!r})"
        assert slide["current"] and slide["width"] > 0 and slide["height"] > 0, f"{where} is not shown"
        assert slide["title"], f"{where} has no heading"
        assert slide["text"] > 0 or slide["images"], f"{where} is empty"
        assert slide["notes"] > 0, f"{where} has no speaker notes"
        assert slide["overflow"] <= 0, f"{where} is {slide['overflow']} px taller than the slide"
        assert slide["highlighted"] == slide["code"], f"{where} has code that was not highlighted"
        assert slide["clippedCode"] == 0, f"{where} has code too long or too wide to show without scrolling"
        for image in slide["images"]:
            assert image["complete"] and image["width"] > 0, f"{where}: figure {image['alt']!r} did not load"
            big_enough = image["shownWidth"] >= 400 or image["shownHeight"] >= 250
            assert big_enough, f"{where}: figure {image['alt']!r} is shown too small"
    assert sum(len(s["images"]) for s in report["slides"]) == len(names)
    first_notes = TALK.read_text().split("\nNote:\n", 1)[1].split("\n")[0]
    assert report["notesWindow"].startswith(first_notes), "the speaker view (S) does not show the notes"
    assert sorted(p.name for p in shots.glob("slide-*.png")) == [f"slide-{n:02d}.png" for n in sorted(set(wanted))]
    assert (shots / "speaker-view.png").stat().st_size > 10_000

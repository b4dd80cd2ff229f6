"""Build the workshop deck: ``slides/talk.md`` -> one self-contained reveal.js file ``slides/build/index.html``.

    npm ci --prefix slides            # once: reveal.js (and playwright-core for the test), pinned in package-lock.json
    python slides/build.py            # figures from figures/, written by the notebooks and benchmarks
    python slides/build.py --figures /some/dir --out /tmp/deck.html
    python slides/build.py --list-figures

Everything is inlined (reveal.js, its plugins and theme, every image as a data URI), so the file opens
offline from disk. A slide that references a figure which is not there stops the build with one line
naming it: the deck never shows a placeholder. Two directives keep code on the slides honest:

    ![caption](figures/NAME.png)               a figure, read from --figures DIR
    <!-- include: configs/full.yaml -->         a repo file, as a code block
    <!-- include: cifar_lightning/callbacks.py::EpochTimer -->   one class or function (Class.method), no docstring
"""

from __future__ import annotations

import argparse
import ast
import base64
import html
import re
import sys
from pathlib import Path

SLIDES = Path(__file__).resolve().parent
ROOT = SLIDES.parent
REVEAL = SLIDES / "node_modules" / "reveal.js" / "dist"

# reveal.js's markdown plugin splits the talk with these (see talk.md).
SEPARATOR, NOTES = r"^---$", r"^Note:"
FIGURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
INCLUDE = re.compile(r"^<!-- include: (\S+?)(?:::([\w.]+))? -->$", re.MULTILINE)
LANGUAGES = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".sh": "bash"}
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".gif": "image/gif"}


class BuildError(Exception):
    """A problem the author fixes in talk.md or by producing a figure; printed as one line."""


def slide_number(text: str, pos: int) -> int:
    """1-based number of the slide holding character ``pos`` (for error messages)."""
    return len(re.findall(SEPARATOR, text[:pos], flags=re.MULTILINE)) + 1


def lines_of(source: str, number: int) -> str:
    """Line ``number`` (1-based) of ``source``, or "" past the end."""
    lines = source.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""


def symbol_source(path: Path, name: str) -> str:
    """Source of the class or function ``name`` (``Class.method`` for a method) in ``path``, without its docstring."""
    source = path.read_text()
    body = ast.parse(source).body
    for part in name.split("."):
        node = next((n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part), None)
        if node is None:
            raise BuildError(f"{path.relative_to(ROOT)} has no class or function {name!r}")
        body = node.body
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    drop = set()
    if ast.get_docstring(node) is not None:
        drop = set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
        if not lines_of(source, node.body[0].end_lineno + 1).strip():
            drop.add(node.body[0].end_lineno + 1)  # and the blank line after it
    lines = [
        line
        for number, line in enumerate(source.splitlines(), start=1)
        if first <= number <= node.end_lineno and number not in drop
    ]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def expand_includes(text: str) -> str:
    """Replace each include directive with a fenced code block of the repo file (or one symbol of it)."""

    def include(match: re.Match) -> str:
        path = ROOT / match.group(1)
        if not path.is_file():
            raise BuildError(
                f"slide {slide_number(text, match.start())} includes {match.group(1)}, which does not exist"
            )
        code = symbol_source(path, match.group(2)) if match.group(2) else path.read_text().rstrip()
        if re.search(f"{SEPARATOR}|{NOTES}", code, flags=re.MULTILINE):
            raise BuildError(f"{match.group(1)} has a line that reveal.js would read as a slide break or notes")
        return f"```{LANGUAGES.get(path.suffix, '')}\n{code}\n```"

    return INCLUDE.sub(include, text)


def referenced_figures(text: str) -> list[str]:
    """File names of the figures the talk shows, in slide order."""
    names = []
    for match in FIGURE.finditer(text):
        target = match.group(2)
        if not target.startswith("figures/") or "/" in target[len("figures/") :]:
            raise BuildError(
                f"slide {slide_number(text, match.start())}: image {target} must be figures/<name> "
                "(a file the notebooks or benchmarks wrote)"
            )
        names.append(target[len("figures/") :])
    return names


def inline_figures(text: str, figures: Path) -> str:
    """Swap every ``figures/NAME`` for a data URI of ``figures/NAME``; a missing file is an error."""

    def inline(match: re.Match) -> str:
        name = match.group(2)[len("figures/") :]
        path = figures / name
        if not path.is_file():
            raise BuildError(
                f"slide {slide_number(text, match.start())} shows figures/{name}, "
                f"which is missing from {figures} (run the lesson that saves it, or drop the slide)"
            )
        mime = MIME.get(path.suffix.lower())
        if mime is None:
            raise BuildError(f"figures/{name}: unsupported image type {path.suffix}")
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:{mime};base64,{data})"

    return FIGURE.sub(inline, text)


def asset(relative: str) -> str:
    path = REVEAL / relative
    if not path.is_file():
        raise BuildError(f"{path} is missing: run `npm ci --prefix slides` first")
    return path.read_text()


def script(code: str) -> str:
    # A literal "</script" would end the inline element early; "<\/script" means the same thing in JS.
    return "<script>\n" + code.replace("</script", "<\\/script") + "\n</script>"


STYLE = """
.reveal { font-size: 30px; }
.reveal h1 { font-size: 2.2em; } .reveal h2 { font-size: 1.45em; } .reveal h3 { font-size: 1.1em; }
.reveal section img { max-height: 480px; max-width: 100%; margin: 0.3em auto; border: 0; box-shadow: none; }
/* a figure sharing its slide with code or a list gets less height, so that the slide never overflows */
.reveal section:has(pre) img, .reveal section:has(ul) img { max-height: 340px; }
.reveal pre { width: 100%; font-size: 0.62em; box-shadow: none; margin: 0.4em 0; }
.reveal pre code { max-height: 520px; padding: 0.6em; line-height: 1.3; }
.reveal ul, .reveal ol { display: block; margin-left: 1em; }
.reveal li { margin: 0.15em 0; }
.reveal p { margin: 0.35em 0; }
.reveal code { font-size: 0.9em; }
.reveal .slide-number { font-size: 16px; }
.reveal section.lesson h1, .reveal section.lesson h2 { color: #792c9e; }
.reveal .small { font-size: 0.7em; color: #555; }
.reveal .columns { display: flex; gap: 1em; align-items: flex-start; }
.reveal .columns > * { flex: 1; min-width: 0; }
"""


def render(markdown: str, title: str) -> str:
    """The whole HTML page: reveal.js, plugins, theme and the talk, all inline."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)}</title>
<style>{asset("reset.css")}</style>
<style>{asset("reveal.css")}</style>
<style>{asset("theme/white.css")}</style>
<style>{asset("plugin/highlight/monokai.css")}</style>
<style>{STYLE}</style>
</head>
<body>
<div class="reveal"><div class="slides">
<section data-markdown data-separator="{SEPARATOR}" data-separator-notes="{NOTES}">
<textarea data-template>
{html.escape(markdown, quote=False)}
</textarea>
</section>
</div></div>
{script(asset("reveal.js"))}
{script(asset("plugin/markdown.js"))}
{script(asset("plugin/highlight.js"))}
{script(asset("plugin/notes.js"))}
{
        script('''Reveal.initialize({
  hash: true, slideNumber: "c/t", width: 1280, height: 720, margin: 0.04,
  transition: "fade", transitionSpeed: "fast",
  plugins: [RevealMarkdown, RevealHighlight, RevealNotes],
});''')
    }
</body>
</html>
"""


def check_fences(text: str) -> None:
    """reveal.js splits slides on ``---`` even inside a code block: refuse that instead of a broken deck."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and re.match(f"{SEPARATOR}|{NOTES}", line):
            raise BuildError(f"line {number} of the talk is inside a code block but reads as a slide break or notes")
    if fenced:
        raise BuildError("the talk ends inside a code block: a closing ``` is missing")


def build(talk: Path, figures: Path, out: Path) -> tuple[int, list[str]]:
    """Write the deck to ``out``; return the slide count and the figures used."""
    text = expand_includes(talk.read_text())
    check_fences(text)
    names = referenced_figures(text)
    page = render(inline_figures(text, figures), title=talk_title(text))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return len(re.findall(SEPARATOR, text, flags=re.MULTILINE)) + 1, names


def talk_title(text: str) -> str:
    heading = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
    return heading.group(1).strip() if heading else "Workshop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--talk", type=Path, default=SLIDES / "talk.md", help="the talk in reveal.js Markdown")
    parser.add_argument(
        "--figures", type=Path, default=ROOT / "figures", help="where the figures are (default: figures/)"
    )
    parser.add_argument("--out", type=Path, default=SLIDES / "build" / "index.html", help="the HTML file to write")
    parser.add_argument("--list-figures", action="store_true", help="print the figures the talk shows and exit")
    args = parser.parse_args(argv)
    try:
        if args.list_figures:
            print("\n".join(referenced_figures(expand_includes(args.talk.read_text()))))
            return 0
        slides, names = build(args.talk, args.figures, args.out)
    except (BuildError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({slides} slides, {len(set(names))} figures, {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

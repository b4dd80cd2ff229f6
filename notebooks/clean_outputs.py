"""Drops machine noise from executed lessons, so that the committed outputs show only what the lesson prints.

    python notebooks/clean_outputs.py notebooks/*.ipynb     (lesson_times.py --in-place calls it after each lesson)

Removed: the warnings of environments without Jupyter widgets (tqdm's "IProgress not found", rich's
'install "ipywidgets"'), and the empty rich panels they leave. Progress bars are reduced to what a notebook shows:
consecutive stream outputs are merged and each line keeps only the text after its last carriage return.
Everything else, errors included, stays.
"""

import re
import sys

import nbformat

NOISE = re.compile(
    r"TqdmWarning: IProgress not found|from \.autonotebook import tqdm as notebook_tqdm|"
    r"install \"ipywidgets\" for Jupyter|^support$|warnings\.warn\('install \"ipywidgets\""
)


def clean_text(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line.strip()))


def collapse_carriage_returns(text: str) -> str:
    """What a terminal (and Jupyter) shows of a progress bar: each line's text after its last ``\\r``."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def merge_streams(outputs: list) -> list:
    merged = []
    for output in outputs:
        if (
            output.output_type == "stream"
            and merged
            and merged[-1].output_type == "stream"
            and merged[-1].name == output.name
        ):
            merged[-1].text += output.text
        else:
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = clean_text(collapse_carriage_returns(output.text))
    return merged


def is_noise(output) -> bool:
    if output.output_type == "stream":
        return not output.text
    if output.output_type == "display_data" and set(output.data) <= {"text/html", "text/plain"}:
        plain = clean_text(output.data.get("text/plain", ""))
        return not plain.strip()  # only noise, or rich's empty panel
    return False


def clean(path: str) -> int:
    nb = nbformat.read(path, as_version=4)
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in merge_streams(cell.outputs) if not is_noise(o)]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return dropped


if __name__ == "__main__":
    for notebook in sys.argv[1:]:
        print(f"{notebook}: {clean(notebook)} outputs merged or dropped")

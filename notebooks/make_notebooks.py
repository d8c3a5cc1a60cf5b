"""Writes notebooks/<name>.ipynb from examples/<name>.py.

The scripts are the source; the notebooks are generated, so the two cannot
drift apart (tests/test_examples.py checks that these files are what this
script writes). A script is split into cells at `# %%` lines (the "percent"
format that VS Code, Spyder and jupytext read); a `# %% [markdown]` cell's
comment lines become Markdown. The notebooks are nbformat 4 JSON written by
hand, so nothing beyond the standard library is needed.

    python notebooks/make_notebooks.py          # write the notebooks
    python notebooks/make_notebooks.py --check  # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["envmap_recovery", "material_recovery", "derivative_images", "pose_recovery", "shape_recovery",
            "psdr_examples"]


def split_cells(source: str) -> list[tuple[str, str]]:
    """[(cell type, text)] of a percent-format script."""
    cells, kind, lines = [], None, []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind is not None and text:
            cells.append((kind, text))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind == "code":
            lines.append(line)
    flush()
    return cells


def code_of(source: str) -> str:
    """The script's code cells joined, as a notebook runs them in order."""
    return "\n\n".join(text for kind, text in split_cells(source) if kind == "code") + "\n"


def notebook(source: str) -> str:
    """The .ipynb text (nbformat 4.5) of a percent-format script."""
    cells = []
    for i, (kind, text) in enumerate(split_cells(source)):
        lines = text.split("\n")
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {},
                "source": [line + "\n" for line in lines[:-1]] + [lines[-1]]}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks (exit 1)")
    args = parser.parse_args(argv)
    stale = []
    for name in EXAMPLES:
        text = notebook((ROOT / "examples" / f"{name}.py").read_text())
        path = ROOT / "notebooks" / f"{name}.ipynb"
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print("stale (run python notebooks/make_notebooks.py):", *(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

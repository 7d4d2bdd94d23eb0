"""Write the tutorial notebooks (``NN_*.ipynb``) from their sources (``NN_*.py``).

The sources are jupytext "percent" files: ``# %%`` starts a code cell and ``# %% [markdown]``
a markdown cell (its lines commented out). Edit the sources, not the notebooks; linters and
editors read them like any Python file. Then::

    python tutorials/_build_notebooks.py               # sources into the notebooks
    python tutorials/_build_notebooks.py --execute 03  # run 03_* and save it with its outputs

Without ``--execute`` a notebook keeps its outputs (and cell ids) when its cells still line
up with the source's (same number and kinds), else it is written without outputs.
``tests/test_tutorials.py`` checks that every notebook holds its source's cells and executes
the notebooks, so neither can rot.
"""

import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).parent


def sources() -> list[Path]:
    """The tutorial sources, in order."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def cells_of(nb) -> list[tuple[str, str]]:
    """``(cell type, source)`` of every cell of a notebook."""
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def build(source: Path, execute: bool = False) -> Path:
    """Write ``source`` as a notebook beside it (run first if ``execute``); returns its path."""
    nb = jupytext.read(source)
    path = source.with_suffix(".ipynb")
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, timeout=1200, resources={"metadata": {"path": str(HERE)}}).execute()
    elif path.exists():
        old = nbformat.read(path, as_version=4)
        if [c.cell_type for c in old.cells] == [c.cell_type for c in nb.cells]:
            # only the sources change: ids, metadata and outputs stay, so the diff is small
            for new_cell, old_cell in zip(nb.cells, old.cells, strict=True):
                old_cell.source = new_cell.source
            nb = old
        else:
            print(f"{path.name}: the cells changed; written without outputs (run --execute)")
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    # python tutorials/_build_notebooks.py [--execute] [03 ...]: only the tutorials whose
    # names start with one of the given prefixes (default: all)
    execute = "--execute" in sys.argv
    prefixes = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    for source in sources():
        if not prefixes or any(source.name.startswith(prefix) for prefix in prefixes):
            print(build(source, execute=execute))

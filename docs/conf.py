"""Sphinx configuration of the scgde documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``. Notebooks are rendered from their committed outputs (they are
executed by ``tests/test_tutorials.py``, not here), so the build needs neither a kernel nor
the network.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import date
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))  # document the working tree, not an installed copy

import torch  # noqa: E402

import scgde  # noqa: E402

# -- Generated sources --------------------------------------------------------------------
# The tutorials (tutorials/*.ipynb) and the benchmark reports (benchmarks/README.md,
# benchmarks/results/*) live outside docs/. They are copied here on every build rather than
# symlinked (symlinks do not work everywhere); the copies are listed in .gitignore.

GENERATED = {
    "tutorials": DOCS / "tutorials",
    "benchmarks": DOCS / "benchmarks",
    "api": DOCS / "generated",  # autosummary's stub pages
}


def _sync(folder: Path, contents: dict[Path, bytes]) -> None:
    """Make ``folder`` hold exactly ``contents``; unchanged files keep their mtime."""
    for dest, data in contents.items():
        if dest.exists() and dest.read_bytes() == data:
            continue  # incremental builds skip unchanged pages
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)  # atomic: concurrent builds never see half a file
    if folder.exists():
        for path in folder.rglob("*"):
            if path.is_file() and path not in contents:
                path.unlink()


_tutorials = ROOT / "tutorials"
_sync(
    GENERATED["tutorials"],
    {
        GENERATED["tutorials"] / nb.name: nb.read_bytes()
        for nb in sorted(_tutorials.glob("*.ipynb"))
        if not nb.name.startswith("_")
    },
)

# The benchmarks README is the page; the reports it links to hang below it in the navigation.
_benchmarks = ROOT / "benchmarks"
_REPORTS_TOCTREE = "\n## Reports\n\n```{toctree}\n:glob:\n:maxdepth: 1\n\nresults/*\n```\n"
_sync(
    GENERATED["benchmarks"],
    {
        GENERATED["benchmarks"] / "index.md": (_benchmarks / "README.md").read_bytes()
        + _REPORTS_TOCTREE.encode()
    }
    | {
        GENERATED["benchmarks"] / "results" / f.name: f.read_bytes()
        for f in sorted((_benchmarks / "results").iterdir())
        if f.is_file()
    },
)

# Stubs of objects removed from api.md would otherwise linger and warn ("not in any toctree").
shutil.rmtree(GENERATED["api"], ignore_errors=True)

# -- Project ------------------------------------------------------------------------------

project = "scgde"
author = "scgde developers"
copyright = f"{date.today().year}, {author}"  # noqa: A001
release = scgde.__version__
version = release

# -- General ------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# intersphinx reads committed inventories (docs/_inventories/*.inv, written from the installed
# packages by docs/_inventories/make_inventories.py), so the build never needs the network.
_INVENTORIES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "pandas": "https://pandas.pydata.org/docs/",
    "anndata": "https://anndata.readthedocs.io/en/stable/",
    "mudata": "https://mudata.readthedocs.io/en/stable/",
    "scanpy": "https://scanpy.readthedocs.io/en/stable/",
    "scvi": "https://docs.scvi-tools.org/en/stable/",
    "torch": "https://pytorch.org/docs/stable/",
    "matplotlib": "https://matplotlib.org/stable/",
    "ot": "https://pythonot.github.io/",
}
# (base URL of the links, inventory file relative to docs/): a local file, never fetched
intersphinx_mapping = {
    name: (url, f"_inventories/{name}.inv") for name, url in _INVENTORIES.items()
}
intersphinx_disabled_reftypes = ["std:*"]  # only Python objects; labels stay local

# Every cross-reference must resolve (internally or through the inventories above).
nitpicky = True

# Names as written in scgde's source, resolved to the objects they stand for. Sphinx leaves a
# class's ``__init__`` annotations unevaluated (``Sequence[np.ndarray]``, ``AnnDataManager``),
# annotations imported under ``TYPE_CHECKING`` cannot be evaluated (``Path``), and numpydoc
# return types are written short (``DataFrame``). A reference whose first dotted part is a key
# here is looked up again as the value + the rest (see ``_expand_source_aliases``); the text
# shown stays as written. This covers docstring types too, so napoleon_type_aliases (which
# would only see docstrings, and show the long name) is not needed.
_SOURCE_ALIASES = {
    "np": "numpy",
    "pd": "pandas",
    "AnnData": "anndata.AnnData",
    "MuData": "mudata.MuData",
    "DataFrame": "pandas.DataFrame",
    "AnnDataManager": "scvi.data.AnnDataManager",
    "Path": "pathlib.Path",
}

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# myst / myst-nb
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # committed outputs; tests/test_tutorials.py executes notebooks
# stderr of the committed runs is logging and library noise (tqdm, lightning); results are
# printed to stdout or shown as figures.
nb_output_stderr = "remove"

# autodoc / autosummary / napoleon
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True  # "Return type" once, not also inline
napoleon_use_param = True

# torch.nn.Module declares instance attributes such as ``training`` as class annotations, so
# autosummary lists them as attributes of every module subclass (they are not caught by the
# template's inherited-members filter). Skip them; they are documented by PyTorch.
_TORCH_MODULE_ANNOTATIONS = frozenset(torch.nn.Module.__annotations__)


def _inherited_members() -> dict[str, list[str]]:
    """For every public class of scgde: the members it inherits from other public classes.

    The class template lists a class's own members and those of scgde's private mixins (e.g.
    :class:`~scgde.model.GDE`'s ``train`` and ``sample``), not those inherited from torch,
    scvi-tools or another documented scgde class, which are documented there.
    """
    import importlib
    import inspect

    public = {}
    for name in ("data", "datasets", "metrics", "model", "module", "nn", "pl", "tl", "train"):
        module = importlib.import_module(f"scgde.{name}")
        for attr, obj in vars(module).items():
            if not attr.startswith("_") and inspect.isclass(obj):
                public.setdefault(obj, f"scgde.{name}.{attr}")

    def documented_elsewhere(owner, cls) -> bool:
        if not owner.__module__.startswith("scgde"):
            return True
        return any(base in public and owner in base.__mro__ for base in cls.__mro__[1:])

    inherited = {}
    for cls, fullname in public.items():
        if cls.__module__.startswith("scgde"):
            owners = {m: next(c for c in cls.__mro__ if m in vars(c)) for m in dir(cls)}
            inherited[fullname] = [m for m, o in owners.items() if documented_elsewhere(o, cls)]
    return inherited


autosummary_context = {"documented_elsewhere": _inherited_members()}


def _skip_torch_module_attributes(app, what, name, obj, skip, options):
    if name in _TORCH_MODULE_ANNOTATIONS and not callable(obj):
        return True
    return None


def _expand_source_aliases(app, env, node, contnode):
    """Rewrite ``np.ndarray`` to ``numpy.ndarray`` (etc., ``_SOURCE_ALIASES``) for intersphinx.

    Runs before intersphinx's own handler, which then resolves the rewritten target.
    """
    if node.get("refdomain") == "py":
        head, dot, rest = node["reftarget"].partition(".")
        if head in _SOURCE_ALIASES:
            node["reftarget"] = _SOURCE_ALIASES[head] + dot + rest
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_torch_module_attributes)
    app.connect("missing-reference", _expand_source_aliases, priority=400)


# -- HTML ---------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "scgde"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

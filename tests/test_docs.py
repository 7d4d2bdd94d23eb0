"""The documentation: the Sphinx site builds without warnings and covers the public API."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"

_MISSING = [name for name in ("sphinx", "myst_nb") if importlib.util.find_spec(name) is None]


_needs_sphinx = pytest.mark.skipif(
    bool(_MISSING), reason=f'{" and ".join(_MISSING)} not installed: pip install -e ".[docs]"'
)
# intersphinx reads the committed inventories in docs/_inventories; the build never downloads.
INVENTORIES = ["python", "numpy", "scipy", "pandas", "anndata", "mudata", "scanpy", "scvi"]
INVENTORIES += ["torch", "matplotlib", "ot"]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """The site, built once with -W (nitpicky: every cross-reference must resolve), offline."""
    out = tmp_path_factory.mktemp("docs") / "html"  # myst-nb writes images next to it
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    # A download would go through this dead proxy and fail, and its warning fail the build.
    dead_proxy = "http://127.0.0.1:9"
    env = os.environ | {"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy, "NO_PROXY": ""}
    env |= {key.lower(): value for key, value in env.items() if key.endswith("_PROXY")}
    result = subprocess.run(
        [*cmd, str(DOCS), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-10000:]}"
    return out


@_needs_sphinx
def test_docs_build_without_warnings(html):
    out = html

    pages = [
        "index.html",
        "installation.html",
        "gde.html",
        "api.html",
        "cli.html",
        "large_data.html",
        "tutorials.html",
        "tutorials/01_patients.html",
        "tutorials/02_clones.html",
        "tutorials/03_perturbations.html",
        "benchmarks/index.html",
        "generated/scgde.model.GDE.html",
        "generated/scgde.tl.group_distances.html",
    ]
    missing = [page for page in pages if not (out / page).is_file()]
    assert not missing, f"pages not built: {missing}"

    gde = (out / "generated/scgde.model.GDE.html").read_text(encoding="utf-8")
    for method in [
        "setup_anndata",
        "setup_mudata",
        "train",
        "get_distribution_embedding",
        "get_group_adata",
        "predict_group_labels",
        "get_latent_representation",
        "sample",
        "save",
        "load",
    ]:
        assert f'id="scgde.model.GDE.{method}"' in gde, method
    # Members inherited from scvi-tools' BaseModelClass are documented upstream, not here.
    assert 'id="scgde.model.GDE.to_device"' not in gde

    # The tutorial is rendered from its committed outputs, figures included.
    tutorial = (out / "tutorials/01_patients.html").read_text(encoding="utf-8")
    assert "identical after reload: True" in tutorial
    assert "<img" in tutorial


def _read_inventory(path: Path) -> dict[str, str]:
    """``{"domain:role name": uri}`` of a Sphinx inventory (version 2)."""
    header, body = path.read_bytes().split(b"compressed using zlib.\n", 1)
    assert header.startswith(b"# Sphinx inventory version 2\n"), path
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        name, role, _priority, uri, _dispname = line.split(" ", 4)
        entries[f"{role} {name}"] = uri
    return entries


def test_inventories_are_committed_and_list_what_the_docs_use():
    expected = {
        "anndata": ["py:class anndata.AnnData", "py:class anndata._core.anndata.AnnData"],
        "scanpy": ["py:function scanpy.pl.embedding"],
        "scvi": ["py:class scvi.data.AnnDataManager", "py:class scvi.train.TrainingPlan"],
        "numpy": ["py:class numpy.ndarray", "py:function numpy.random.default_rng"],
        "pandas": ["py:class pandas.DataFrame", "py:class pandas.core.frame.DataFrame"],
        "torch": ["py:class torch.Tensor", "py:class torch.nn.Module"],
        "matplotlib": ["py:class matplotlib.axes.Axes", "py:class matplotlib.axes._axes.Axes"],
        "mudata": ["py:class mudata.MuData"],
        "ot": ["py:function ot.emd2"],
        "scipy": ["py:function scipy.cluster.hierarchy.linkage"],
        "python": ["py:class collections.abc.Sequence", "py:class os.PathLike"],
    }
    assert sorted(expected) == sorted(INVENTORIES)
    for name in INVENTORIES:
        inventory = _read_inventory(DOCS / "_inventories" / f"{name}.inv")
        missing = [entry for entry in expected[name] if entry not in inventory]
        assert not missing, f"{name}.inv lacks {missing}: run docs/_inventories/make_inventories.py"
    anndata = _read_inventory(DOCS / "_inventories" / "anndata.inv")
    assert anndata["py:class anndata.AnnData"] == "generated/anndata.AnnData.html#anndata.AnnData"


@_needs_sphinx
def test_references_to_other_projects_link_to_their_docs(html):
    """Types and references to anndata, scanpy, numpy, ... become links to their sites."""
    links = {
        # type hints: a class signature's unevaluated "AnnData", a function's evaluated
        # anndata._core.anndata.AnnData (the inventory's alias) and matplotlib's Axes
        "generated/scgde.model.GDE.html": [
            "https://anndata.readthedocs.io/en/stable/generated/anndata.AnnData.html#anndata.AnnData",
            "https://docs.scvi-tools.org/en/stable/api/reference/",
        ],
        "generated/scgde.tl.group_distances.html": [
            "https://anndata.readthedocs.io/en/stable/generated/anndata.AnnData.html",
            "https://pandas.pydata.org/docs/reference/api/pandas.DataFrame.html#pandas.DataFrame",
        ],
        "generated/scgde.pl.group_embedding.html": [
            "https://scanpy.readthedocs.io/en/stable/generated/scanpy.pl.embedding.html#scanpy.pl.embedding",
            "https://matplotlib.org/stable/api/_as_gen/matplotlib.axes.Axes.html#matplotlib.axes.Axes",
        ],
        "generated/scgde.data.GroupSetSampler.html": [  # "np.ndarray" in a class signature
            "https://numpy.org/doc/stable/reference/generated/numpy.ndarray.html#numpy.ndarray",
        ],
        "generated/scgde.metrics.sliced_wasserstein.html": ["https://pythonot.github.io/"],
        "generated/scgde.nn.SetEncoder.html": [
            "https://pytorch.org/docs/stable/tensors.html#torch.Tensor",
        ],
    }
    missing = {}
    for page, urls in links.items():
        text = (html / page).read_text(encoding="utf-8")
        missing[page] = [url for url in urls if f'href="{url}' not in text]
    assert not any(missing.values()), f"no link to: {missing}"


def _documented(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def test_api_reference_lists_every_public_name():
    import scgde

    api = _documented("api.md")
    undocumented = []
    for sub in (name for name in scgde.__all__ if name != "__version__"):
        for name in getattr(scgde, sub).__all__:
            if not re.search(rf"(^|[\s`.]){sub}\.{name}\b", api, flags=re.MULTILINE):
                undocumented.append(f"scgde.{sub}.{name}")
    assert not undocumented, f"add to docs/api.md: {undocumented}"


def test_cli_page_lists_every_option():
    from scgde.cli import _parser

    (subparsers,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli = _documented("cli.md")
    undocumented = []
    for command, parser in subparsers.choices.items():
        assert f"scgde {command}" in cli
        for action in parser._actions:
            names = action.option_strings or [action.dest.upper()]
            if action.dest != "help" and not any(f"`{n}" in cli for n in names):
                undocumented.append(f"scgde {command} {names[0]}")
    assert not undocumented, f"add to docs/cli.md: {undocumented}"

"""The documentation: the Sphinx site builds without warnings and covers the public API."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"

_MISSING = [name for name in ("sphinx", "myst_nb") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(
    bool(_MISSING), reason=f'{" and ".join(_MISSING)} not installed: pip install -e ".[docs]"'
)
def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"  # myst-nb writes notebook images next to it, also in tmp_path
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*cmd, str(DOCS), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-10000:]}"

    pages = [
        "index.html",
        "installation.html",
        "gde.html",
        "api.html",
        "cli.html",
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

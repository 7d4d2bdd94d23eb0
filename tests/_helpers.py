"""Small AnnData fixtures shared by the test modules."""

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

import scgde


def small_demo(n_samples=12, n_cells=40, n_genes=200):
    """A few samples of the real demo data (half HC, half Severe), few cells and genes."""
    adata = scgde.datasets.demo()
    samples = (
        adata.obs.groupby("condition", observed=True)["sample"]
        .apply(lambda s: sorted(s.unique())[: n_samples // 2])
        .explode()
    )
    adata = adata[adata.obs["sample"].isin(samples), :n_genes]
    keep = adata.obs.groupby("sample", observed=True).head(n_cells).index
    adata = adata[keep].copy()
    adata.obs["sample"] = adata.obs["sample"].cat.remove_unused_categories()
    return adata


def fresh_copy(adata):
    """A copy of ``adata`` without scvi-tools registration, as a user would pass it."""
    out = adata.copy()
    out.obs = out.obs.loc[:, [c for c in out.obs.columns if not c.startswith("_scvi")]]
    out.uns = {k: v for k, v in out.uns.items() if not k.startswith("_scvi")}
    return out


def nb_reference(seed=0, n_cells=400, n_genes=150, phi=0.3):
    """NB counts with known gene means m_g (log-uniform on [0.02, 20]) and size factors.

    Returns the AnnData of counts and the true means ``m``, to test simulators' calibration.
    """
    rng = np.random.default_rng(seed)
    m = np.exp(rng.uniform(np.log(0.02), np.log(20), n_genes))
    size = np.exp(rng.normal(0.0, 0.3, n_cells))
    mu = size[:, None] * m
    theta = 1 / phi
    counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float32)
    ref = ad.AnnData(
        sparse.csr_matrix(counts), var=pd.DataFrame(index=[f"Gene{g}" for g in range(n_genes)])
    )
    return ref, m

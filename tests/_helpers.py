"""Small real AnnData fixtures shared by the test modules."""

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

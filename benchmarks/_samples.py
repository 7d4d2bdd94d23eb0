"""Sample-level tables and representations of the Liu 2021 PBMC data (demo or full file),
shared by the patient benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUP, DONOR, CONDITION, BATCH, CELL_TYPE = "sample", "donor", "condition", "batch", "cell_type"


def load(data: str):
    """``"demo"``: the bundled subset; ``"full"``: the 30,534-cell file (scgde[liu2021])."""
    import scgde

    if data == "demo":
        return scgde.datasets.demo()
    return scgde.datasets.liu2021_covid("rna")


def sample_table(adata) -> pd.DataFrame:
    """One row per sample: donor, condition, batch (constant within samples) and cells."""
    obs = adata.obs[[GROUP, DONOR, CONDITION, BATCH]].astype(str)
    table_ = obs.drop_duplicates()
    if table_[GROUP].duplicated().any():
        raise ValueError("donor / condition / batch vary within a sample")
    table_ = table_.set_index(GROUP).sort_index()
    table_["n_cells"] = obs[GROUP].value_counts().reindex(table_.index).to_numpy()
    return table_


def pseudobulk(adata, samples: pd.Index) -> np.ndarray:
    """Mean log1p(counts per 10k) of each sample's cells (raw counts in ``X``)."""
    from scipy import sparse

    x = adata.X
    library = np.asarray(x.sum(1)).ravel()
    norm = sparse.diags(1e4 / np.maximum(library, 1)) @ x
    norm = norm.log1p() if sparse.issparse(norm) else np.log1p(norm)
    labels = adata.obs[GROUP].astype(str).to_numpy()
    return np.stack([np.asarray(norm[labels == s].mean(0)).ravel() for s in samples])


def composition(adata, samples: pd.Index) -> np.ndarray:
    """Fraction of each cell type among each sample's cells."""
    counts = pd.crosstab(adata.obs[GROUP].astype(str), adata.obs[CELL_TYPE].astype(str))
    fractions = counts.div(counts.sum(1), axis=0)
    return fractions.loc[samples].to_numpy()

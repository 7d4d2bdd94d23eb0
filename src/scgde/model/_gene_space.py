"""From a linear representation (e.g. PCA) back to gene space."""

from __future__ import annotations

import numpy as np
from anndata import AnnData


def representation_to_genes(x: np.ndarray, adata: AnnData, loadings: str) -> np.ndarray:
    """Map cells from a linear representation to genes: ``x @ loadings.T + mean(adata.X)``.

    This inverts a centred linear projection such as ``sc.pp.pca`` (``X_pca = (X - mean) @
    PCs`` with orthonormal ``PCs = adata.varm["PCs"]``) up to the variance the representation
    leaves out; the gene means are those of ``adata.X``, the data the projection was computed
    from.

    Parameters
    ----------
    x
        Cells in the representation, ``(n_cells, n_components)``.
    adata
        AnnData with ``varm[loadings]`` of shape ``(n_vars, n_components)``.
    loadings
        Key of ``adata.varm``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_vars)`` float32.

    Raises
    ------
    KeyError
        If ``adata.varm`` has no ``loadings``.
    ValueError
        If its shape does not match the representation, or it is not finite.
    """
    if loadings not in adata.varm:
        raise KeyError(
            f"adata.varm has no {loadings!r} (available: {list(adata.varm)}); pass the key of "
            "the gene loadings of the representation, e.g. 'PCs' after sc.pp.pca."
        )
    weights = np.asarray(adata.varm[loadings], dtype=np.float64)
    if weights.shape != (adata.n_vars, x.shape[1]):
        raise ValueError(
            f"adata.varm[{loadings!r}] has shape {weights.shape}; expected "
            f"({adata.n_vars}, {x.shape[1]}) (genes x components of the representation)."
        )
    if not np.isfinite(weights).all():
        raise ValueError(f"adata.varm[{loadings!r}] contains NaN or infinite values.")
    mean = np.asarray(adata.X.mean(axis=0), dtype=np.float64).reshape(-1)
    return (np.asarray(x, dtype=np.float64) @ weights.T + mean).astype(np.float32)

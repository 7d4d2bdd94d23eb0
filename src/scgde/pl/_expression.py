"""Expression values for plots: dense rows, count detection, library-size normalisation."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._constants import ENCODER_TARGET_SUM


def matrix(adata: AnnData, layer: str | None = None):
    """``adata.X`` or ``adata.layers[layer]`` (clear error when missing)."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"adata.layers has no {layer!r}; available: {list(adata.layers)}.")
    return adata.layers[layer]


def dense_rows(x, rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> np.ndarray:
    """Selected rows and columns of a dense or sparse matrix as float64."""
    if rows is not None:
        x = x[rows]
    if columns is not None:
        x = x[:, columns]
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("The expression values contain NaN or infinite values.")
    return x


def is_counts(x: np.ndarray) -> bool:
    """Whether all values are non-negative integers."""
    return bool((x >= 0).all() and np.array_equal(x, np.round(x)))


def normalize_total(x: np.ndarray, target_sum: float = ENCODER_TARGET_SUM) -> np.ndarray:
    """Counts scaled to ``target_sum`` per cell (cells without counts stay zero)."""
    totals = x.sum(axis=1, keepdims=True)
    return x * (target_sum / np.where(totals > 0, totals, 1.0))


def subsample(n: int, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_n`` of ``range(n)``, sorted, without replacement."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, max_n, replace=False))

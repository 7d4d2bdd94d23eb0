"""Per-feature statistics of a data matrix, read in chunks."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._utils import row_blocks


def column_statistics(x, n_values: int = 1_000_000) -> dict[str, np.ndarray]:
    """Per-column ``mean``, ``std``, ``min`` and ``max`` of a dense or sparse matrix (in
    memory or backed by an h5ad file).

    Rows are read in blocks of about ``n_values`` entries (``scgde._utils.row_blocks``);
    sums and sums of squares are accumulated in float64.
    """
    n_obs, n_vars = x.shape
    total, total_sq = np.zeros(n_vars), np.zeros(n_vars)
    low, high = np.full(n_vars, np.inf), np.full(n_vars, -np.inf)
    for block in row_blocks(x, n_values):
        if sparse.issparse(block):
            total += np.asarray(block.sum(0, dtype=np.float64)).reshape(-1)
            total_sq += np.asarray(block.multiply(block).sum(0, dtype=np.float64)).reshape(-1)
            block_min = block.min(axis=0).toarray().reshape(-1)
            block_max = block.max(axis=0).toarray().reshape(-1)
        else:
            block = np.asarray(block, dtype=np.float64)
            total += block.sum(0)
            total_sq += np.square(block).sum(0)
            block_min, block_max = block.min(0), block.max(0)
        low, high = np.minimum(low, block_min), np.maximum(high, block_max)
    mean = total / max(n_obs, 1)
    std = np.sqrt(np.maximum(total_sq / max(n_obs, 1) - mean**2, 0.0))
    return {"mean": mean, "std": std, "min": low, "max": high}

"""Reading the counts and annotations of a large ``.h5ad`` file with h5py, in blocks."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy import sparse

try:
    from anndata.io import read_elem
except ImportError:  # anndata < 0.11
    from anndata.experimental import read_elem

_DENSE_BLOCK_BYTES = 1 << 28  # rows of a dense X are converted to CSR 256 MiB at a time
_CHECK_BLOCK = 1 << 24  # values checked for integrality at a time


def _dense_to_csr(dataset: h5py.Dataset) -> sparse.csr_matrix:
    """A 2-d HDF5 dataset as CSR float32, read a block of rows at a time (low peak memory)."""
    n_rows, n_cols = dataset.shape
    step = max(1, _DENSE_BLOCK_BYTES // max(1, n_cols * dataset.dtype.itemsize))
    blocks = [
        sparse.csr_matrix(np.asarray(dataset[start : start + step], dtype=np.float32))
        for start in range(0, n_rows, step)
    ]
    if not blocks:
        return sparse.csr_matrix((n_rows, n_cols), dtype=np.float32)
    return sparse.vstack(blocks, format="csr", dtype=np.float32)


def _matrix_to_csr(elem: h5py.Dataset | h5py.Group) -> sparse.csr_matrix:
    if isinstance(elem, h5py.Dataset):
        return _dense_to_csr(elem)
    matrix = read_elem(elem)  # csr_matrix / csc_matrix group
    if not sparse.issparse(matrix):
        raise ValueError(f"Unsupported matrix encoding {dict(elem.attrs)}.")
    matrix = sparse.csr_matrix(matrix)
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float32)
    return matrix


def _read_source(path: Path) -> tuple[sparse.csr_matrix, pd.DataFrame, pd.DataFrame, str]:
    """Counts (CSR float32), obs, var and where the counts were found, without loading X
    when the counts are in ``layers["counts"]`` or ``raw.X``."""
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"Could not read {path} as an h5ad (HDF5) file: {exc}") from exc
    with fh:
        if "obs" not in fh or "var" not in fh:
            raise ValueError(f"{path} is not an h5ad file: it has no 'obs' and 'var'.")
        obs = read_elem(fh["obs"])
        var = read_elem(fh["var"])
        if "layers" in fh and "counts" in fh["layers"]:
            where, elem = "layers['counts']", fh["layers"]["counts"]
        elif "raw" in fh and "X" in fh["raw"]:
            where, elem = "raw.X", fh["raw"]["X"]
            var = read_elem(fh["raw"]["var"])
        elif "X" in fh:
            where, elem = "X", fh["X"]
        else:
            raise ValueError(f"{path} holds no expression matrix (no X, raw.X or counts layer).")
        counts = _matrix_to_csr(elem)
    if counts.shape != (len(obs), len(var)):
        raise ValueError(
            f"The matrix {where} of {path} has shape {counts.shape}, but obs has {len(obs)} "
            f"rows and var {len(var)}."
        )
    counts.sum_duplicates()
    counts.sort_indices()
    counts.eliminate_zeros()
    return counts, obs, var, where


def _are_counts(matrix: sparse.csr_matrix) -> bool:
    """Whether all stored values are finite non-negative integers."""
    data = matrix.data
    for start in range(0, data.size, _CHECK_BLOCK):
        block = data[start : start + _CHECK_BLOCK]
        if not (np.all(np.isfinite(block)) and np.all(block >= 0)):
            return False
        if np.any(block != np.round(block)):
            return False
    return True

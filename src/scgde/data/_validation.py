"""Checks on the values of a data matrix, done on all data in blocks of rows (in memory or
backed by an h5ad file, which is never loaded whole)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

from .._utils import row_blocks

_CHUNK = 1_000_000  # values checked at a time


def _stored_values(matrix) -> Iterator[np.ndarray]:
    """The stored values, block by block: the non-zeros of sparse rows, every entry of dense
    ones."""
    for block in row_blocks(matrix, _CHUNK):
        yield block.data if sparse.issparse(block) else np.asarray(block).reshape(-1)


def _real_numbers(values: np.ndarray) -> bool:
    """Whether the dtype holds real numbers (not objects, strings or complex numbers)."""
    return np.issubdtype(values.dtype, np.number) and not np.issubdtype(
        values.dtype, np.complexfloating
    )


def check_values(matrix, name: str, require_counts: bool, likelihood: str) -> None:
    """Raise a clear ``ValueError`` for NaN/inf, and for negative or non-integer counts.

    Parameters
    ----------
    matrix
        Dense array or scipy sparse matrix.
    name
        How to call the data in messages (e.g. ``"adata.layers['counts']"``).
    require_counts
        Whether values must be non-negative integers (count likelihoods).
    likelihood
        Likelihood name, for the message.
    """
    for chunk in _stored_values(matrix):
        if not _real_numbers(chunk):
            raise ValueError(f"{name} has dtype {chunk.dtype}; scgde needs real numbers.")
        is_float = np.issubdtype(chunk.dtype, np.floating)
        if is_float and not np.isfinite(chunk).all():
            raise ValueError(
                f"{name} contains NaN or infinite values. Remove or impute them before training."
            )
        if not require_counts:
            continue
        if (chunk < 0).any():
            raise ValueError(
                f"{name} contains negative values, but likelihood={likelihood!r} models counts. "
                "Pass raw counts (e.g. `layer='counts'`), or use likelihood='gaussian' for "
                "continuous data."
            )
        if is_float and (chunk != np.round(chunk)).any():
            example = chunk[chunk != np.round(chunk)][0]
            raise ValueError(
                f"{name} contains non-integer values (e.g. {example:.4g}), but "
                f"likelihood={likelihood!r} models counts. Pass raw counts (e.g. "
                "`layer='counts'`), or use likelihood='gaussian' for log-normalised data."
            )


def looks_like_counts(matrix) -> bool:
    """Whether every stored value is a finite non-negative integer (checked in chunks)."""
    for chunk in _stored_values(matrix):
        if not _real_numbers(chunk):
            return False
        if not np.isfinite(chunk).all() or (chunk < 0).any() or (chunk != np.round(chunk)).any():
            return False
    return True

"""Checks on the values of a data matrix, done on all data in chunks."""

from __future__ import annotations

import numpy as np
from scipy import sparse

_CHUNK = 1_000_000  # values checked at a time


def _stored_values(matrix) -> np.ndarray:
    """All stored values: the non-zeros of a sparse matrix, every entry of a dense one."""
    if sparse.issparse(matrix):
        return matrix.data
    return np.asarray(matrix).reshape(-1)


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
    values = _stored_values(matrix)
    if not _real_numbers(values):
        raise ValueError(f"{name} has dtype {values.dtype}; scgde needs real numbers.")
    is_float = np.issubdtype(values.dtype, np.floating)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
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
    values = _stored_values(matrix)
    if not _real_numbers(values):
        return False
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        if not np.isfinite(chunk).all() or (chunk < 0).any() or (chunk != np.round(chunk)).any():
            return False
    return True

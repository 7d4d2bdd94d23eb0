"""Checks on the values of a data matrix, done on all data in blocks of rows (in memory or
backed by an h5ad file, which is never loaded whole)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

from .._utils import row_blocks

_CHUNK = 1_000_000  # values read at a time
_PIECE = 2**18  # values compared at a time


def _stored_values(matrix) -> Iterator[np.ndarray]:
    """The stored values, block by block: the non-zeros of sparse rows, every entry of dense
    ones. A matrix in memory gives its value array whole (no copy)."""
    if sparse.issparse(matrix) and matrix.format in ("csr", "csc", "coo"):
        yield matrix.data[: matrix.nnz]
    elif isinstance(matrix, np.ndarray) and (
        matrix.flags.c_contiguous or matrix.flags.f_contiguous
    ):
        yield matrix.ravel(order="K")
    else:
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
        low, high, integer = _value_summary(chunk, require_counts)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(
                f"{name} contains NaN or infinite values. Remove or impute them before training."
            )
        if not require_counts:
            continue
        if low < 0:
            raise ValueError(
                f"{name} contains negative values, but likelihood={likelihood!r} models counts. "
                "Pass raw counts (e.g. `layer='counts'`), or use likelihood='gaussian' for "
                "continuous data."
            )
        if not integer:
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
        low, high, integer = _value_summary(chunk, True)
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and integer):
            return False
    return True


def _value_summary(values: np.ndarray, check_integer: bool) -> tuple[float, float, bool]:
    """Smallest and largest value (NaN if there is one) and, if ``check_integer``, whether
    every value is an integer. Computed in pieces of ``_PIECE`` values with reused buffers,
    which stay in the CPU cache: about 6× faster than comparisons of the whole array."""
    if values.size == 0:
        return 0.0, 0.0, True
    integer = check_integer and np.issubdtype(values.dtype, np.floating)
    rounded = np.empty(min(values.size, _PIECE) if integer else 0, values.dtype)
    differs = np.empty(rounded.size, bool)
    low, high, is_integer = np.inf, -np.inf, True
    for start in range(0, values.size, _PIECE):
        piece = values[start : start + _PIECE]
        piece_low, piece_high = float(piece.min()), float(piece.max())
        if np.isnan(piece_low):  # min is NaN if a value is NaN
            return np.nan, np.nan, False
        low, high = min(low, piece_low), max(high, piece_high)
        if integer and is_integer:
            n = piece.size
            np.rint(piece, out=rounded[:n])
            is_integer = not np.not_equal(rounded[:n], piece, out=differs[:n]).any()
    return low, high, is_integer

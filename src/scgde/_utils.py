"""Argument checks and matrix helpers shared by the whole package."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
from anndata import AnnData
from scipy import sparse

from ._constants import ENCODER_TARGET_SUM


def check_int(value, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` of at least ``minimum``.

    Parameters
    ----------
    value
        The argument to check.
    name
        The argument's name, for the error message.
    minimum
        Smallest allowed value.
    allow_none
        Accept ``None`` (and return it).

    Raises
    ------
    TypeError
        If ``value`` is not an integer (booleans and floats with integer values included).
    ValueError
        If ``value`` is below ``minimum``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer{' or None' if allow_none else ''}, got {value!r} "
            f"({type(value).__name__})."
        )
    if value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"`{name}` must be {what}, got {value!r}.")
    return int(value)


def check_key_added(key_added: str, name: str = "key_added", reserved: tuple = ()) -> str:
    """``key_added`` if AnnData can store and write it as a key of ``uns``/``obsm``.

    Raises
    ------
    ValueError
        If it is not a non-empty string, is one of the ``reserved`` keys (written by the same
        call), or contains ``"/"`` (``write_h5ad`` cannot store such a key: it is the path
        separator of HDF5 and zarr).
    """
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`{name}` must be a non-empty string, got {key_added!r}.")
    if key_added in reserved:
        raise ValueError(f"`{name}` {key_added!r} is reserved for scgde's settings; use another.")
    if "/" in key_added:
        raise ValueError(
            f"`{name}` {key_added!r} contains '/', which AnnData cannot write to .h5ad or "
            "zarr (it separates groups there); use e.g. '_' instead."
        )
    return key_added


def distinct_names(values, name: str, empty_hint: str) -> list[str]:
    """``values`` as a list of strings; a ``ValueError`` if there are none (with
    ``empty_hint``) or one is repeated."""
    names = [str(v) for v in values]
    if not names:
        raise ValueError(f"`{name}` is empty; {empty_hint}")
    repeated = sorted({v for v in names if names.count(v) > 1})
    if repeated:
        raise ValueError(f"`{name}` lists {repeated} more than once.")
    return names


def layer_matrix(adata: AnnData, layer: str | None = None, what: str = "adata"):
    """``adata.X`` or ``adata.layers[layer]`` (not copied).

    Raises
    ------
    ValueError
        If ``layer`` is ``None`` and ``adata.X`` is empty.
    KeyError
        If ``layer`` is not a layer of ``adata``; ``what`` names the object in the message.
    """
    if layer is None:
        if adata.X is None:
            raise ValueError(f"{what}.X is empty; pass `layer`, the layer that holds the data.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"{what}.layers has no {layer!r}; available: {list(adata.layers)}.")
    return adata.layers[layer]


def row_blocks(x, n_values: int = 1_000_000) -> Iterator:
    """Consecutive blocks of rows of ``x`` holding about ``n_values`` entries each, read by
    slicing, so that a matrix backed by an h5ad file (an h5py dataset, anndata's backed sparse
    matrix) or a dask array (``anndata.experimental.read_lazy``) is never loaded whole; dask
    blocks are computed."""
    rows = max(1, n_values // max(1, x.shape[1] if len(x.shape) > 1 else 1))
    for start in range(0, x.shape[0], rows):
        yield computed(x[start : start + rows])


def is_dask(x) -> bool:
    """Whether ``x`` is a dask array (values computed on demand)."""
    return type(x).__module__.startswith("dask.")


def in_memory(x) -> bool:
    """Whether ``x`` is a matrix held in memory (a NumPy array or SciPy sparse matrix), not
    one backed by a file or computed on demand."""
    return isinstance(x, np.ndarray) or sparse.issparse(x)


def computed(x):
    """The values of a dask array (or block of one); any other array unchanged."""
    return x.compute() if is_dask(x) else x


def to_dense(x) -> np.ndarray:
    """A dense or sparse matrix as a float64 ndarray."""
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    return np.asarray(x, dtype=np.float64)


def size_factors(totals, target_sum: float = ENCODER_TARGET_SUM) -> np.ndarray:
    """Per-cell factors that scale counts with these ``totals`` to ``target_sum`` (cells
    without counts get 1); float64."""
    totals = np.asarray(totals, dtype=np.float64).reshape(-1)
    return target_sum / np.where(totals > 0, totals, 1.0)


def normalize_total(x, target_sum: float = ENCODER_TARGET_SUM) -> np.ndarray:
    """Counts (dense or sparse) scaled to ``target_sum`` per cell, dense float64, as
    ``sc.pp.normalize_total`` does (cells without counts stay zero)."""
    x = to_dense(x)
    return x * size_factors(x.sum(axis=1), target_sum)[:, None]


def log_normalize(x, target_sum: float = ENCODER_TARGET_SUM) -> np.ndarray:
    """``log1p`` of counts per ``target_sum`` (10^4: what the set encoder reads), dense."""
    return np.log1p(normalize_total(x, target_sum))


def dense_rows(x, rows=None, columns=None, check_finite: bool = False) -> np.ndarray:
    """Selected rows (then columns) of a dense or sparse matrix as a float64 ndarray.

    ``check_finite``: raise a ``ValueError`` if a value is NaN or infinite.
    """
    if rows is not None:
        x = x[rows]
    if columns is not None:
        x = x[:, columns]
    x = to_dense(x)
    if check_finite and not np.isfinite(x).all():
        raise ValueError("The expression values contain NaN or infinite values.")
    return x


def subsample(rows: np.ndarray, max_n: int | None, seed) -> np.ndarray:
    """At most ``max_n`` of ``rows``, without replacement and sorted.

    ``seed``: a seed (a fresh generator: two calls with the same seed and the same number of
    rows keep the same positions) or a ``numpy.random.Generator``.
    """
    rows = np.asarray(rows)
    if max_n is None or len(rows) <= max_n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, max_n, replace=False))

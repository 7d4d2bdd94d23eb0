"""Input checks shared by the metrics, and the AnnData helper :func:`points`."""

from __future__ import annotations

import numpy as np
from scipy import sparse

# A covariance is accepted as symmetric when max|S - S^T| <= _SYM_RTOL * max|S|, and as positive
# semi-definite when its smallest eigenvalue is >= -_PSD_RTOL * (its largest |eigenvalue|). Both
# are far above round-off (~1e-16 * d) and far below any genuine violation.
_SYM_RTOL = 1e-6
_PSD_RTOL = 1e-8


def _to_float_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 ndarray; sparse matrices are densified."""
    if sparse.issparse(value):
        value = value.toarray()
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")


def as_points(x, name: str = "x") -> np.ndarray:
    """Validate a point set and return it as a float64 array of shape ``(n, d)``.

    A 1-d array of length ``n`` is read as ``n`` points in one dimension.

    Raises
    ------
    ValueError
        If the set is not 1-d or 2-d, is empty, has zero features, or has NaN/inf values.
    """
    array = _to_float_array(x, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n_points, n_dims), got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one point.")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has zero dimensions.")
    _check_finite(array, name)
    return array


def as_point_pair(x, y, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two point sets living in the same space."""
    x = as_points(x, names[0])
    y = as_points(y, names[1])
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of dimensions, got "
            f"{x.shape[1]} and {y.shape[1]}."
        )
    return x, y


def as_mean(mean, name: str = "mean") -> np.ndarray:
    """Validate a mean vector; a scalar is a mean in one dimension."""
    array = np.atleast_1d(_to_float_array(mean, name))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty vector, got shape {array.shape}.")
    _check_finite(array, name)
    return array


def as_covariances(cov, name: str = "cov") -> np.ndarray:
    """Validate one covariance ``(d, d)`` or a stack ``(..., d, d)``; symmetrise it.

    A scalar is a variance in one dimension. Checks: square, finite, symmetric and positive
    semi-definite up to round-off (see ``_SYM_RTOL`` and ``_PSD_RTOL``).
    """
    array = _to_float_array(cov, name)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    if array.ndim < 2 or array.shape[-1] != array.shape[-2] or array.shape[-1] == 0:
        raise ValueError(f"{name} must be square matrices of shape (..., d, d), got {array.shape}.")
    _check_finite(array, name)
    transposed = np.swapaxes(array, -1, -2)
    scale = np.abs(array).max(axis=(-1, -2))
    asymmetry = np.abs(array - transposed).max(axis=(-1, -2))
    if np.any(asymmetry > _SYM_RTOL * scale):
        raise ValueError(f"{name} is not symmetric (max |S - S^T| = {asymmetry.max():.3g}).")
    array = 0.5 * (array + transposed)
    eigenvalues = np.linalg.eigvalsh(array)
    largest = np.abs(eigenvalues).max(axis=-1)
    smallest = eigenvalues.min(axis=-1)
    if np.any(smallest < -_PSD_RTOL * largest):
        raise ValueError(
            f"{name} is not positive semi-definite (smallest eigenvalue {smallest.min():.3g})."
        )
    return array


def as_weights(weights, k: int, name: str = "weights") -> np.ndarray:
    """Validate mixture weights: ``k`` finite non-negative values summing to 1 (to 1e-6).

    They are returned renormalised to sum to 1 exactly (up to round-off).
    """
    array = np.atleast_1d(_to_float_array(weights, name))
    if array.ndim != 1 or array.size != k:
        raise ValueError(f"{name} must have shape ({k},), got {array.shape}.")
    _check_finite(array, name)
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative.")
    total = array.sum()
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got {total:.8g}.")
    return array / total


def points(adata, use_rep: str | None = "X_pca", mask=None) -> np.ndarray:
    """Extract a point set from an AnnData object.

    Parameters
    ----------
    adata
        :class:`~anndata.AnnData` object.
    use_rep
        ``"X"`` or ``None`` for ``adata.X``; otherwise a key of ``adata.obsm`` (e.g. ``"X_pca"``).
    mask
        Optional selection of cells: a boolean array of length ``adata.n_obs`` or an array of
        integer positions. ``None`` keeps all cells.

    Returns
    -------
    numpy.ndarray
        Dense float64 array of shape ``(n_selected_cells, n_dims)``, validated like every
        metric input (non-empty, finite).

    Raises
    ------
    ValueError
        If ``use_rep`` is not found, the mask has the wrong length or type, or the selected
        points are empty or contain NaN/inf.
    """
    if use_rep is None or use_rep == "X":
        matrix, name = adata.X, "adata.X"
        if matrix is None:
            raise ValueError("adata.X is None; pass use_rep=<an obsm key>.")
    elif use_rep in adata.obsm:
        matrix, name = adata.obsm[use_rep], f"adata.obsm[{use_rep!r}]"
    else:
        raise ValueError(
            f"use_rep={use_rep!r} is neither 'X' nor a key of adata.obsm "
            f"(available: {sorted(adata.obsm.keys())})."
        )
    if hasattr(matrix, "to_numpy"):  # a DataFrame in obsm
        matrix = matrix.to_numpy()
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            if mask.shape != (adata.n_obs,):
                raise ValueError(
                    f"A boolean mask must have shape ({adata.n_obs},), got {mask.shape}."
                )
        elif not np.issubdtype(mask.dtype, np.integer) or mask.ndim != 1:
            raise ValueError("mask must be a boolean array or a 1-d array of integer positions.")
        matrix = matrix[mask]
    return as_points(matrix, name)

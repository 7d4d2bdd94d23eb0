"""Distances between point sets, or between a point set and a known distribution.

All functions take numpy arrays (points as ``(n, d)``; a 1-d array is ``n`` points in one
dimension) and return Python floats. Use :func:`points` to take a point set from an AnnData
object, e.g. ``points(adata, use_rep="X_pca", mask=adata.obs["donor"] == "A")``.

Gaussian closed forms
    :func:`gaussian_w2`, :func:`bures_squared`, :func:`gaussian_fit_error`,
    :func:`gaussian_geodesic` (McCann interpolation),
    :func:`gaussian_w2_matrix`, :func:`gmm_w2_squared`, :func:`sqrtm_psd`.
Sample-based
    :func:`energy_distance`, :func:`mmd` (with :func:`median_bandwidth`),
    :func:`sliced_wasserstein`, :func:`sinkhorn_divergence`.
Information
    :func:`mutual_information` (KSG estimator) between paired samples.
"""

from ._gaussian import (
    bures_squared,
    gaussian_fit_error,
    gaussian_geodesic,
    gaussian_w2,
    gaussian_w2_matrix,
    gmm_w2_squared,
    sqrtm_psd,
)
from ._information import mutual_information
from ._kernel import energy_distance, median_bandwidth, mmd
from ._transport import sinkhorn_divergence, sliced_wasserstein
from ._validation import points

__all__ = [
    "bures_squared",
    "energy_distance",
    "gaussian_fit_error",
    "gaussian_geodesic",
    "gaussian_w2",
    "gaussian_w2_matrix",
    "gmm_w2_squared",
    "median_bandwidth",
    "mmd",
    "mutual_information",
    "points",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "sqrtm_psd",
]

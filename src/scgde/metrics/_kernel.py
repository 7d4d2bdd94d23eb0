"""Pairwise-distance statistics between point sets: energy distance and MMD, computed in blocks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import pdist

from ._validation import as_point_pair

# Pairwise values held in memory at once: 2**22 float64 = 32 MiB per temporary block.
DEFAULT_BLOCK_ELEMENTS = 2**22
# Points used for the median heuristic; the pooled sample is subsampled above this size.
MEDIAN_MAX_POINTS = 1000


def _centre(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the pooled mean from both sets.

    All statistics here depend only on differences of points, so this changes nothing
    mathematically, but it keeps ``|a|^2 + |b|^2 - 2 a.b`` accurate for data far from the origin.
    """
    centre = (x.sum(axis=0) + y.sum(axis=0)) / (x.shape[0] + y.shape[0])
    return x - centre, y - centre


def _blocked_pairwise_sum(
    a: np.ndarray,
    b: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray],
    block_elements: int,
    same: bool = False,
) -> float:
    """``sum_{i,j} transform(|a_i - b_j|^2)`` without holding the full ``(n, m)`` matrix.

    ``transform`` receives a block of squared distances (which it may overwrite) and returns
    the transformed block. Rows of ``a`` are processed ``max(1, block_elements // m)`` at a time.
    ``same=True`` declares ``b is a``: the diagonal is then set to exactly 0, rather than the
    round-off of ``|a|^2 + |a|^2 - 2 a.a``, which a square root would amplify to
    ``sqrt(eps) * |a|``.
    """
    if block_elements < 1:
        raise ValueError(f"block_elements must be positive, got {block_elements}.")
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    rows = max(1, block_elements // b.shape[0])
    total = 0.0
    for start in range(0, a.shape[0], rows):
        stop = start + rows
        block = a[start:stop] @ b.T
        block *= -2.0
        block += a_sq[start:stop, None]
        block += b_sq[None, :]
        np.maximum(block, 0.0, out=block)  # round-off can make near-zero distances negative
        if same:
            rows_here = block.shape[0]
            block[np.arange(rows_here), np.arange(start, start + rows_here)] = 0.0
        total += float(transform(block).sum())
    return total


def energy_distance(x, y, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> float:
    r"""Squared energy distance between two point sets (V-statistic).

    .. math::

        \mathcal{E}^2 = \frac{2}{nm}\sum_{i,j}\lVert x_i - y_j\rVert
        - \frac{1}{n^2}\sum_{i,i'}\lVert x_i - x_{i'}\rVert
        - \frac{1}{m^2}\sum_{j,j'}\lVert y_j - y_{j'}\rVert,

    i.e. :math:`2E\lVert X-Y\rVert - E\lVert X-X'\rVert - E\lVert Y-Y'\rVert` evaluated on the
    empirical distributions. The within-set sums include the zero diagonal (V-statistic), so the
    value is the exact energy distance between the two empirical measures: it is >= 0 and is 0
    iff the two sets are equal as multisets. As an estimator of the population value it is biased
    upwards by :math:`E\lVert X-X'\rVert / n + E\lVert Y-Y'\rVert / m`.

    Distances are Euclidean and computed in blocks of at most ``block_elements`` pairs, so memory
    stays bounded (about ``3 * 8 * block_elements`` bytes) even for 10^4 x 10^4 points.

    Parameters
    ----------
    x
        Points, shape ``(n, d)`` (a 1-d array is ``n`` points in one dimension).
    y
        Points, shape ``(m, d)``.
    block_elements
        Maximum number of pairwise distances held in memory at once.

    Returns
    -------
    float
        The squared energy distance (>= 0; round-off is clipped).
    """
    x, y = as_point_pair(x, y)
    if block_elements < 1:
        raise ValueError(f"block_elements must be positive, got {block_elements}.")
    sizes = np.array([x.shape[0], y.shape[0]])
    return float(energy_matrix(np.concatenate([x, y]), sizes, block_elements)[0, 1])


def energy_matrix(
    points: np.ndarray, sizes: np.ndarray, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> np.ndarray:
    """Squared energy distances (V-statistics) between consecutive blocks of ``points``.

    Block ``g`` is the next ``sizes[g]`` rows. Each pairwise distance is computed once, in row
    blocks of at most ``block_elements`` distances, and summed per pair of groups; the result
    is exactly symmetric with a zero diagonal. :func:`energy_distance` is its two-set case.
    """
    points = points - points.mean(axis=0)  # distances are unchanged; round-off is smaller
    n = points.shape[0]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_of_row = np.repeat(np.arange(len(sizes)), sizes)
    squared = np.einsum("ij,ij->i", points, points)
    rows = max(1, block_elements // n)
    sums = np.zeros((len(sizes), len(sizes)))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = points[start:stop] @ points.T
        block *= -2.0
        block += squared[start:stop, None]
        block += squared[None, :]
        np.maximum(block, 0.0, out=block)
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0  # exact self-distances
        np.sqrt(block, out=block)
        per_group = np.add.reduceat(block, starts, axis=1)  # (rows, groups)
        np.add.at(sums, group_of_row[start:stop], per_group)
    means = sums / np.outer(sizes, sizes)
    within = np.diag(means).copy()
    energy = 2.0 * means - within[:, None] - within[None, :]
    energy = 0.5 * (energy + energy.T)  # exactly symmetric (addition commutes)
    np.maximum(energy, 0.0, out=energy)
    np.fill_diagonal(energy, 0.0)
    return energy


def median_bandwidth(x, y, max_points: int = MEDIAN_MAX_POINTS, seed: int = 0) -> float:
    """Median heuristic bandwidth: the median Euclidean distance within the pooled sample.

    The pooled sample is ``x`` stacked on ``y``. When it has more than ``max_points`` points, a
    subsample of ``max_points`` of them is drawn without replacement with
    ``numpy.random.default_rng(seed)``, so the result is deterministic. The median is taken over
    all distinct pairs ``i < j`` (the zero self-distances are excluded). If that median is 0
    (mostly duplicated points), the mean of the positive distances is used instead, and 1.0 if
    all points coincide.

    Parameters
    ----------
    x, y
        Point sets of shapes ``(n, d)`` and ``(m, d)``.
    max_points
        Size above which the pooled sample is subsampled.
    seed
        Seed of the subsampling.

    Returns
    -------
    float
        The bandwidth (> 0).
    """
    x, y = as_point_pair(x, y)
    pooled = np.concatenate([x, y])
    if pooled.shape[0] > max_points:
        keep = np.random.default_rng(seed).choice(pooled.shape[0], max_points, replace=False)
        pooled = pooled[keep]
    if pooled.shape[0] < 2:
        return 1.0
    distances = pdist(pooled)
    median = float(np.median(distances))
    if median > 0:
        return median
    positive = distances[distances > 0]
    return float(positive.mean()) if positive.size else 1.0


def mmd(
    x,
    y,
    bandwidth: float | None = None,
    unbiased: bool = True,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> float:
    r"""Squared maximum mean discrepancy with a Gaussian (RBF) kernel.

    The kernel is :math:`k(a, b) = \exp(-\lVert a-b\rVert^2 / (2h^2))` with bandwidth
    :math:`h`. The unbiased estimate (U-statistic, default) is

    .. math::

        \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i\neq i'} k(x_i, x_{i'})
        + \frac{1}{m(m-1)}\sum_{j\neq j'} k(y_j, y_{j'})
        - \frac{2}{nm}\sum_{i,j} k(x_i, y_j),

    whose expectation is the population :math:`\mathrm{MMD}^2`; it can be slightly negative when
    the distributions are equal. The biased estimate (V-statistic, ``unbiased=False``) keeps the
    diagonal terms, divides by :math:`n^2` and :math:`m^2`, and is the exact (>= 0) squared MMD
    between the two empirical measures.

    Parameters
    ----------
    x
        Points, shape ``(n, d)`` (a 1-d array is ``n`` points in one dimension).
    y
        Points, shape ``(m, d)``.
    bandwidth
        Kernel bandwidth :math:`h` > 0. ``None``: the median heuristic of
        :func:`median_bandwidth` (median pairwise Euclidean distance of the pooled sample,
        subsampled to 1000 points with seed 0 when larger).
    unbiased
        U-statistic (default, needs ``n, m >= 2``) or V-statistic.
    block_elements
        Maximum number of pairwise kernel values held in memory at once.

    Returns
    -------
    float
        The estimate of :math:`\mathrm{MMD}^2`.
    """
    x, y = as_point_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError("The unbiased MMD needs at least 2 points in each set.")
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y)
    bandwidth = float(bandwidth)
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}.")
    scale = -0.5 / bandwidth**2

    def kernel(block: np.ndarray) -> np.ndarray:
        block *= scale
        return np.exp(block, out=block)

    x, y = _centre(x, y)
    sum_xy = _blocked_pairwise_sum(x, y, kernel, block_elements)
    sum_xx = _blocked_pairwise_sum(x, x, kernel, block_elements, same=True)
    sum_yy = _blocked_pairwise_sum(y, y, kernel, block_elements, same=True)
    if unbiased:  # drop the diagonal, where k(a, a) = 1 exactly (zero distance, see `same`)
        return (sum_xx - n) / (n * (n - 1)) + (sum_yy - m) / (m * (m - 1)) - 2 * sum_xy / (n * m)
    return max(sum_xx / n**2 + sum_yy / m**2 - 2 * sum_xy / (n * m), 0.0)

"""Mutual information between paired samples: the Kraskov–Stögbauer–Grassberger estimator."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from ._validation import as_points


def mutual_information(x, y, k: int = 3) -> float:
    r"""Mutual information :math:`I(X; Y)` in nats from paired samples (KSG estimator 1).

    Kraskov, Stögbauer & Grassberger (2004), estimator (8): with :math:`\epsilon_i` the
    max-norm distance from point :math:`i` to its ``k``-th neighbour in the joint space and
    :math:`n_{x,i}`, :math:`n_{y,i}` the numbers of other points strictly closer than
    :math:`\epsilon_i` in each marginal space,

    .. math::

        \hat I = \psi(k) + \psi(N) - \langle \psi(n_x + 1) + \psi(n_y + 1) \rangle.

    Used to relate two embeddings of the same groups, e.g. early and late embeddings of clones.
    The estimate can be slightly negative when the true value is near 0. Repeated points
    (discrete data) make distances tie; add a tiny jitter to such data first.

    Parameters
    ----------
    x, y
        Paired samples, shapes ``(n, d_x)`` and ``(n, d_y)`` (a 1-d array is one dimension);
        row ``i`` of ``x`` goes with row ``i`` of ``y``.
    k
        Neighbours (``k = 3`` as in the GDE paper's lineage analysis); ``1 <= k < n``.

    Returns
    -------
    float
        The estimate in nats.

    Raises
    ------
    ValueError
        If the numbers of rows differ, ``k`` is out of range, or the data are not finite.
    """
    x, y = as_points(x, "x"), as_points(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of rows, got {n} and {y.shape[0]}.")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < n:
        raise ValueError(f"k must be an integer with 1 <= k < n = {n}, got {k!r}.")
    joint = np.hstack([x, y])
    distances, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    radius = np.nextafter(distances[:, -1], 0)  # strictly closer than the k-th neighbour
    n_x = cKDTree(x).query_ball_point(x, r=radius, p=np.inf, return_length=True) - 1
    n_y = cKDTree(y).query_ball_point(y, r=radius, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))

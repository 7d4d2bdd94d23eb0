"""Sets of Poisson counts with known rates (the paper's sufficiency experiment)."""

from __future__ import annotations

import anndata
import numpy as np

from .._utils import check_int
from ._arguments import Seed, interval
from ._synthetic import _make_adata


def poisson_sets(
    n_sets: int,
    n_points: int,
    rate_range: tuple[float, float] = (1.0, 10.0),
    dim: int = 1,
    seed: Seed = 0,
) -> tuple[anndata.AnnData, dict[str, np.ndarray]]:
    r"""Sets of counts from random Poisson distributions (the GDE paper's sufficiency benchmark).

    For each set :math:`i`, independently:

    - rates :math:`\lambda_{id} \sim \mathrm{Uniform}(a, b)` i.i.d. over the ``dim`` coordinates,
      ``(a, b) = rate_range``;
    - points :math:`x_{ijd} \sim \mathrm{Poisson}(\lambda_{id})`, independent over points
      :math:`j` and coordinates :math:`d`.

    The set sum :math:`\sum_j x_{ijd}` is a sufficient statistic for :math:`\lambda_{id}`
    (``n_points=10`` in the benchmark).

    Parameters
    ----------
    n_sets
        Number of sets, > 0.
    n_points
        Number of points per set, > 0.
    rate_range
        ``(low, high)`` of the uniform prior on the rates, ``0 <= low <= high``.
    dim
        Number of independent Poisson coordinates per point, > 0.
    seed
        As in :func:`gaussian_sets`. Draw order: rates, then counts.

    Returns
    -------
    adata
        As in :func:`gaussian_sets`; ``X`` holds non-negative integer counts stored as float32
        (exact up to 2**24).
    params
        ``"rates"``: ``(n_sets, dim)`` float64.

    Raises
    ------
    TypeError
        If a size is not an integer or a number is not real.
    ValueError
        If a size is not positive or ``rate_range`` is not a finite pair with
        ``0 <= low <= high``.

    Examples
    --------
    >>> from scgde.datasets import poisson_sets
    >>> adata, params = poisson_sets(1000, 10, seed=0)
    >>> adata.shape, params["rates"].shape
    ((10000, 1), (1000, 1))
    """
    n_sets = check_int(n_sets, "n_sets")
    n_points = check_int(n_points, "n_points")
    rate_range = interval("rate_range", rate_range, low_min=0.0)
    dim = check_int(dim, "dim")
    rng = np.random.default_rng(seed)

    rates = rng.uniform(rate_range[0], rate_range[1], size=(n_sets, dim))
    points = rng.poisson(rates[:, None, :], size=(n_sets, n_points, dim))
    params = {"rates": rates}
    settings = {"n_sets": n_sets, "n_points": n_points, "rate_range": rate_range, "dim": dim}
    return _make_adata(points, params, "poisson", settings, seed), params

"""Seeded generators for the synthetic benchmark families of the GDE paper.

Every generator returns ``(adata, params)``: an :class:`~anndata.AnnData` with one row per point
and the true parameters of the distributions the points were drawn from. The families are

- :func:`gaussian_sets`: one multivariate normal per set (the paper's "Normal" family);
- :func:`gaussian_mixture_sets`: one Gaussian mixture per set (the evaluation GMMs);
- :func:`mixed_gaussian_sets`: sets that mix points of a few Gaussian source sets (the GMM
  training sets);
- :func:`poisson_sets`: one Poisson distribution per set (the sufficiency benchmark).

Common layout of the returned AnnData:

- ``X``: dense ``float32`` array (points x ``dim``); row ``i * n_points + j`` is point ``j`` of
  set ``i``, so the sets are contiguous blocks of ``n_points`` rows.
- ``obs["set"]``: categorical, categories ``"set_0000"``, ``"set_0001"``, ... in set order
  (zero-padded to at least four digits).
- ``obs_names``: ``"0"``, ``"1"``, ...; ``var_names``: ``"dim_0"``, ``"dim_1"``, ...
- ``uns["params"]``: a copy of the returned parameter dict (numpy arrays only, so it survives
  ``write_h5ad`` / ``read_h5ad``).
- ``uns["synthetic"]``: the family name and generator settings (and the seed when it is an
  integer), for provenance.

Parameters are ``float64`` (indices ``int64``); only ``X`` is ``float32``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import anndata
import numpy as np
import pandas as pd
from scipy.stats import invwishart

from .._utils import check_int
from ._arguments import Seed, finite_real, interval

__all__ = ["gaussian_mixture_sets", "gaussian_sets", "mixed_gaussian_sets"]


# ------------------------------------------------------------------------------ validation
def _wishart_df(df: object, dim: int) -> float:
    df = finite_real("df", df)
    if df <= dim + 1:
        raise ValueError(
            f"df must be > dim + 1 = {dim + 1} so that the inverse Wishart mean "
            f"I / (df - dim - 1) exists, got df={df}."
        )
    return df


def _dirichlet_alpha(alpha: float | Sequence[float], k: int, name: str) -> np.ndarray:
    arr = np.asarray(alpha, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(k, float(arr))
    if arr.shape != (k,):
        raise ValueError(
            f"alpha must be a scalar or have length {name}={k}, got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}.")
    return arr


# ------------------------------------------------------------------------------ sampling helpers
def _inverse_wishart(rng: np.random.Generator, df: float, dim: int, size: int) -> np.ndarray:
    """``size`` draws of invWishart(df, I_dim), shape ``(size, dim, dim)``, exactly symmetric."""
    covs = invwishart.rvs(df=df, scale=np.eye(dim), size=size, random_state=rng)
    covs = np.asarray(covs, dtype=np.float64).reshape(size, dim, dim)  # scipy squeezes dim / size 1
    return 0.5 * (covs + covs.swapaxes(-1, -2))


def _draw_gaussian_sets(
    rng: np.random.Generator,
    n_sets: int,
    n_points: int,
    dim: int,
    mean_range: tuple[float, float],
    df: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, covariances and points (``(n_sets, n_points, dim)``, float64) of the Normal family.

    Draw order (part of the reproducibility contract): means, covariances, standard normals.
    """
    means = rng.uniform(mean_range[0], mean_range[1], size=(n_sets, dim))
    covs = _inverse_wishart(rng, df, dim, n_sets)
    chol = np.linalg.cholesky(covs)
    eps = rng.standard_normal((n_sets, n_points, dim))
    points = means[:, None, :] + eps @ chol.swapaxes(-1, -2)
    return means, covs, points


def _draw_components(rng: np.random.Generator, weights: np.ndarray, n_points: int) -> np.ndarray:
    """Per point, a component index drawn from Categorical(weights[set]); ``(n_sets, n_points)``."""
    cum = np.cumsum(weights, axis=1)
    cum[:, -1] = np.inf  # guard against round-off: the cumulative sum may end just below 1
    u = rng.random((weights.shape[0], n_points))
    return (u[:, :, None] >= cum[:, None, :]).sum(axis=2)


def _distinct_choices(rng: np.random.Generator, n_rows: int, n_pool: int, k: int) -> np.ndarray:
    """Per row, ``k`` distinct indices in ``range(n_pool)`` drawn uniformly without replacement.

    Sequential sampling: at step ``j`` draw ``r`` uniform in ``range(n_pool - j)`` and map it to the
    ``r``-th index not chosen yet (walk over the chosen indices in increasing order, shifting ``r``
    past each one). Every ordered k-subset is equally likely. Cost O(n_rows * k^2).
    """
    chosen = np.empty((n_rows, k), dtype=np.int64)
    for j in range(k):
        r = rng.integers(0, n_pool - j, size=n_rows)
        for c in np.sort(chosen[:, :j], axis=1).T:
            r += r >= c
        chosen[:, j] = r
    return chosen


def _make_adata(
    points: np.ndarray,
    params: dict[str, np.ndarray],
    family: str,
    settings: dict[str, object],
    seed: Seed,
    extra_obs: dict[str, np.ndarray] | None = None,
) -> anndata.AnnData:
    n_sets, n_points, dim = points.shape
    width = max(4, len(str(n_sets - 1)))
    categories = [f"set_{i:0{width}d}" for i in range(n_sets)]
    codes = np.repeat(np.arange(n_sets, dtype=np.int32), n_points)
    obs = pd.DataFrame(
        {"set": pd.Categorical.from_codes(codes, categories=categories)},
        index=pd.Index(np.arange(n_sets * n_points).astype(str)),
    )
    for key, value in (extra_obs or {}).items():
        obs[key] = np.asarray(value).reshape(-1)
    var = pd.DataFrame(index=pd.Index([f"dim_{j}" for j in range(dim)]))
    uns_settings: dict[str, object] = {"family": family}
    for key, value in settings.items():
        uns_settings[key] = np.asarray(value) if isinstance(value, tuple | list) else value
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        uns_settings["seed"] = int(seed)
    adata = anndata.AnnData(
        X=points.reshape(n_sets * n_points, dim).astype(np.float32),
        obs=obs,
        var=var,
        uns={"params": {k: v.copy() for k, v in params.items()}, "synthetic": uns_settings},
    )
    return adata


# ------------------------------------------------------------------------------ public API
def gaussian_sets(
    n_sets: int,
    n_points: int,
    dim: int = 5,
    mean_range: tuple[float, float] = (0.0, 5.0),
    df: float = 40,
    seed: Seed = 0,
) -> tuple[anndata.AnnData, dict[str, np.ndarray]]:
    r"""Sets of points from random multivariate normals (the GDE paper's "Normal" family).

    For each set :math:`i = 0, \dots, n_{sets} - 1`, independently:

    - mean :math:`\mu_i \sim \mathrm{Uniform}(a, b)^{dim}` (i.i.d. coordinates), with
      ``(a, b) = mean_range``;
    - covariance :math:`\Sigma_i \sim \mathcal{W}^{-1}(\nu, I_{dim})`, the inverse Wishart with
      ``df`` :math:`= \nu` degrees of freedom and identity scale
      (:data:`scipy.stats.invwishart`), so :math:`E[\Sigma_i] = I / (\nu - dim - 1)`
      (``I / 34`` for the defaults ``df=40, dim=5``);
    - points :math:`x_{ij} \sim \mathcal{N}(\mu_i, \Sigma_i)` i.i.d., :math:`j < n_{points}`.

    Parameters
    ----------
    n_sets
        Number of sets (distributions), > 0.
    n_points
        Number of points per set, > 0.
    dim
        Dimension of the points, > 0.
    mean_range
        ``(low, high)`` of the uniform prior on each mean coordinate; ``low <= high``.
    df
        Inverse Wishart degrees of freedom; must exceed ``dim + 1`` (finite mean).
    seed
        Anything :func:`numpy.random.default_rng` accepts (an int, a
        :class:`~numpy.random.SeedSequence` or a :class:`~numpy.random.Generator`, which is then
        used and advanced in place). The same integer seed gives identical output. Draw order:
        all means, then all covariances, then all points.

    Returns
    -------
    adata
        ``n_sets * n_points`` rows, ``X`` float32 of shape ``(n_sets * n_points, dim)``,
        ``obs["set"]`` categorical (``"set_0000"``, ...), ``uns["params"]`` a copy of
        ``params`` and ``uns["synthetic"]`` the settings (see the module docstring).
    params
        ``"means"``: ``(n_sets, dim)``; ``"covs"``: ``(n_sets, dim, dim)``, symmetric positive
        definite; both float64.

    Raises
    ------
    TypeError
        If a size is not an integer or a number is not real.
    ValueError
        If a size is not positive, ``mean_range`` is not a finite pair with ``low <= high``, or
        ``df <= dim + 1``.

    Examples
    --------
    >>> from scgde.datasets import gaussian_sets
    >>> adata, params = gaussian_sets(100, 64, seed=0)
    >>> adata.shape, params["means"].shape, params["covs"].shape
    ((6400, 5), (100, 5), (100, 5, 5))
    """
    n_sets = check_int(n_sets, "n_sets")
    n_points = check_int(n_points, "n_points")
    dim = check_int(dim, "dim")
    mean_range = interval("mean_range", mean_range)
    df = _wishart_df(df, dim)
    rng = np.random.default_rng(seed)

    means, covs, points = _draw_gaussian_sets(rng, n_sets, n_points, dim, mean_range, df)
    params = {"means": means, "covs": covs}
    settings = {
        "n_sets": n_sets,
        "n_points": n_points,
        "dim": dim,
        "mean_range": mean_range,
        "df": df,
    }
    return _make_adata(points, params, "gaussian", settings, seed), params


def gaussian_mixture_sets(
    n_sets: int,
    n_points: int,
    n_components: int = 3,
    dim: int = 5,
    mean_range: tuple[float, float] = (0.0, 5.0),
    df: float = 10,
    alpha: float | Sequence[float] = 1.0,
    seed: Seed = 0,
) -> tuple[anndata.AnnData, dict[str, np.ndarray]]:
    r"""Sets of points from random Gaussian mixtures (the GDE paper's evaluation GMMs).

    For each set :math:`i`, independently, with :math:`K` = ``n_components``:

    - component means :math:`\mu_{ik} \sim \mathrm{Uniform}(a, b)^{dim}`, ``(a, b) = mean_range``;
    - component covariances :math:`\Sigma_{ik} \sim \mathcal{W}^{-1}(\nu, I_{dim})` with
      ``df`` :math:`= \nu`, so :math:`E[\Sigma_{ik}] = I / (\nu - dim - 1)` (``I / 4`` for the
      defaults ``df=10, dim=5``);
    - weights :math:`w_i \sim \mathrm{Dirichlet}(\alpha_1, \dots, \alpha_K)` (``alpha`` a scalar
      means :math:`\alpha \cdot \mathbf{1}`; ``alpha=1`` is uniform on the simplex);
    - for each point :math:`j`: a component :math:`z_{ij} \sim \mathrm{Categorical}(w_i)`, then
      :math:`x_{ij} \sim \mathcal{N}(\mu_{i z_{ij}}, \Sigma_{i z_{ij}})`.

    Parameters
    ----------
    n_sets
        Number of sets, > 0.
    n_points
        Number of points per set, > 0.
    n_components
        Number of mixture components per set, > 0.
    dim
        Dimension of the points, > 0.
    mean_range
        ``(low, high)`` of the uniform prior on each mean coordinate; ``low <= high``.
    df
        Inverse Wishart degrees of freedom; must exceed ``dim + 1``.
    alpha
        Dirichlet concentration: a positive scalar or a sequence of ``n_components`` positive
        values.
    seed
        As in :func:`gaussian_sets`. Draw order: means (``n_sets * K`` vectors, set-major), then
        covariances (same order), weights, component uniforms, standard normals.

    Returns
    -------
    adata
        As in :func:`gaussian_sets`, plus ``obs["component"]`` (int64): the index ``k`` of the
        component each point was drawn from.
    params
        ``"weights"``: ``(n_sets, K)``, rows sum to 1; ``"means"``: ``(n_sets, K, dim)``;
        ``"covs"``: ``(n_sets, K, dim, dim)``; all float64.

    Raises
    ------
    TypeError
        If a size is not an integer or a number is not real.
    ValueError
        If a size is not positive, ``mean_range`` is invalid, ``df <= dim + 1`` or ``alpha`` is
        not positive / of the wrong length.

    Examples
    --------
    >>> from scgde.datasets import gaussian_mixture_sets
    >>> adata, params = gaussian_mixture_sets(100, 64, n_components=3, seed=0)
    >>> params["weights"].shape, params["means"].shape, params["covs"].shape
    ((100, 3), (100, 3, 5), (100, 3, 5, 5))
    """
    n_sets = check_int(n_sets, "n_sets")
    n_points = check_int(n_points, "n_points")
    k = check_int(n_components, "n_components")
    dim = check_int(dim, "dim")
    mean_range = interval("mean_range", mean_range)
    df = _wishart_df(df, dim)
    alpha_vec = _dirichlet_alpha(alpha, k, "n_components")
    rng = np.random.default_rng(seed)

    means = rng.uniform(mean_range[0], mean_range[1], size=(n_sets, k, dim))
    covs = _inverse_wishart(rng, df, dim, n_sets * k).reshape(n_sets, k, dim, dim)
    weights = rng.dirichlet(alpha_vec, size=n_sets)
    z = _draw_components(rng, weights, n_points)
    eps = rng.standard_normal((n_sets, n_points, dim))
    chol = np.linalg.cholesky(covs)
    points = np.empty_like(eps)
    for c in range(k):  # K small matmuls instead of gathering a (n_sets, n_points, dim, dim) array
        xc = means[:, c, None, :] + eps @ chol[:, c].swapaxes(-1, -2)
        np.copyto(points, xc, where=(z == c)[:, :, None])

    params = {"weights": weights, "means": means, "covs": covs}
    settings = {
        "n_sets": n_sets,
        "n_points": n_points,
        "n_components": k,
        "dim": dim,
        "mean_range": mean_range,
        "df": df,
        "alpha": alpha_vec,
    }
    adata = _make_adata(points, params, "gaussian_mixture", settings, seed, {"component": z})
    return adata, params


def mixed_gaussian_sets(
    n_sets: int,
    n_points: int,
    n_sources: int = 3,
    alpha: float | Sequence[float] = 1.0,
    n_pool: int | None = None,
    pool_n_points: int | None = None,
    dim: int = 5,
    mean_range: tuple[float, float] = (0.0, 5.0),
    df: float = 40,
    resample: bool = True,
    seed: Seed = 0,
) -> tuple[anndata.AnnData, dict[str, np.ndarray]]:
    r"""Sets that mix a few Gaussian source sets (the GDE paper's GMM *training* sets).

    1. A pool of ``n_pool`` Gaussian source sets of ``pool_n_points`` points each is drawn
       exactly as by :func:`gaussian_sets` (means ~ Uniform(``mean_range``)^dim, covariances ~
       invWishart(``df``, I), points ~ N(mean, cov)). For an integer ``seed`` the pool is
       identical to ``gaussian_sets(n_pool, pool_n_points, dim=dim, mean_range=mean_range,
       df=df, seed=seed)``.
    2. Each output set :math:`i` picks :math:`k` = ``n_sources`` *distinct* pool sets uniformly at
       random (without replacement; ``sources[i]`` in draw order) and weights
       :math:`w_i \sim \mathrm{Dirichlet}(\alpha_1, \dots, \alpha_k)`.
    3. Each point picks a source :math:`z_{ij} \sim \mathrm{Categorical}(w_i)`, then

       - ``resample=True`` (default, the paper's description: "each point picks a source set,
         then a random point of it"): a point of that source set chosen uniformly at random
         *with replacement* (so a point can appear more than once and be shared between sets);
       - ``resample=False``: a fresh draw from that source's Gaussian
         :math:`\mathcal{N}(\mu_{s}, \Sigma_{s})`, so the set is an exact i.i.d. sample of the
         Gaussian mixture in ``params``.

    With ``resample=True`` the points follow the mixture of the *empirical* distributions of the
    chosen source sets; the returned Gaussian mixture is the distribution those were drawn from.

    Parameters
    ----------
    n_sets
        Number of output (mixed) sets, > 0.
    n_points
        Number of points per output set, > 0.
    n_sources
        Number of distinct source sets mixed into each output set; ``1 <= n_sources <= n_pool``.
    alpha
        Dirichlet concentration of the mixing weights: a positive scalar or ``n_sources``
        positive values.
    n_pool
        Number of Gaussian source sets in the pool; default ``n_sets``.
    pool_n_points
        Number of points per source set; default ``n_points``. Only used for sampling when
        ``resample=True`` (the pool points are drawn either way, so the pool stays reproducible).
    dim, mean_range, df
        As in :func:`gaussian_sets` (``df > dim + 1``; default 40).
    resample
        Resample points of the source sets (``True``) or draw fresh points from the source
        Gaussians (``False``); see above.
    seed
        As in :func:`gaussian_sets`. Draw order: the pool (as :func:`gaussian_sets`), sources,
        weights, component uniforms, then point indices (``resample=True``) or standard normals.

    Returns
    -------
    adata
        As in :func:`gaussian_sets`, plus ``obs["component"]`` (int64, index ``k`` into the set's
        sources), ``obs["source"]`` (int64, pool index of the source set) and, when
        ``resample=True``, ``obs["source_point"]`` (int64, index of the resampled point within
        its source set: the point is row ``source * pool_n_points + source_point`` of the pool).
    params
        ``"weights"``: ``(n_sets, n_sources)`` float64, rows sum to 1; ``"means"``:
        ``(n_sets, n_sources, dim)`` and ``"covs"``: ``(n_sets, n_sources, dim, dim)``, the
        chosen sources' Gaussian parameters; ``"sources"``: ``(n_sets, n_sources)`` int64 pool
        indices (distinct within a row).

    Raises
    ------
    TypeError
        If a size is not an integer or a number is not real.
    ValueError
        If a size is not positive, ``n_sources > n_pool``, ``mean_range`` is invalid,
        ``df <= dim + 1`` or ``alpha`` is not positive / of the wrong length.

    Examples
    --------
    >>> from scgde.datasets import mixed_gaussian_sets
    >>> adata, params = mixed_gaussian_sets(100, 64, n_sources=3, seed=0)
    >>> params["sources"].shape, params["covs"].shape
    ((100, 3), (100, 3, 5, 5))
    """
    n_sets = check_int(n_sets, "n_sets")
    n_points = check_int(n_points, "n_points")
    k = check_int(n_sources, "n_sources")
    n_pool = n_sets if n_pool is None else check_int(n_pool, "n_pool")
    if pool_n_points is None:
        pool_n_points = n_points
    pool_n_points = check_int(pool_n_points, "pool_n_points")
    dim = check_int(dim, "dim")
    mean_range = interval("mean_range", mean_range)
    df = _wishart_df(df, dim)
    alpha_vec = _dirichlet_alpha(alpha, k, "n_sources")
    if k > n_pool:
        raise ValueError(f"n_sources={k} distinct sources cannot be drawn from n_pool={n_pool}.")
    resample = bool(resample)
    rng = np.random.default_rng(seed)

    pool_means, pool_covs, pool_points = _draw_gaussian_sets(
        rng, n_pool, pool_n_points, dim, mean_range, df
    )
    sources = _distinct_choices(rng, n_sets, n_pool, k)
    weights = rng.dirichlet(alpha_vec, size=n_sets)
    z = _draw_components(rng, weights, n_points)
    src = np.take_along_axis(sources, z, axis=1)  # (n_sets, n_points) pool index per point
    extra_obs: dict[str, np.ndarray] = {"component": z, "source": src}
    means, covs = pool_means[sources], pool_covs[sources]
    if resample:
        idx = rng.integers(0, pool_n_points, size=(n_sets, n_points))
        points = pool_points[src, idx]
        extra_obs["source_point"] = idx
    else:
        eps = rng.standard_normal((n_sets, n_points, dim))
        chol = np.linalg.cholesky(covs)
        points = np.empty_like(eps)
        for c in range(k):
            xc = means[:, c, None, :] + eps @ chol[:, c].swapaxes(-1, -2)
            np.copyto(points, xc, where=(z == c)[:, :, None])

    params = {"weights": weights, "means": means, "covs": covs, "sources": sources}
    settings = {
        "n_sets": n_sets,
        "n_points": n_points,
        "n_sources": k,
        "alpha": alpha_vec,
        "n_pool": n_pool,
        "pool_n_points": pool_n_points,
        "dim": dim,
        "mean_range": mean_range,
        "df": df,
        "resample": resample,
    }
    adata = _make_adata(points, params, "mixed_gaussian", settings, seed, extra_obs)
    return adata, params

"""Tests of scgde.datasets' synthetic benchmark generators.

All tests use fixed seeds, so they are deterministic; the tolerances are nevertheless derived
from the sampling distribution of each statistic (stated in the comments), so that a correct
generator passes with any seed except with negligible probability (typically < 1e-3 in total),
and the fixed seed only makes the outcome reproducible.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scgde.datasets import gaussian_mixture_sets, gaussian_sets, mixed_gaussian_sets, poisson_sets

FAMILIES = {
    "gaussian": gaussian_sets,
    "gaussian_mixture": gaussian_mixture_sets,
    "mixed_gaussian": mixed_gaussian_sets,
    "mixed_gaussian_fresh": lambda *a, **k: mixed_gaussian_sets(*a, resample=False, **k),
    "poisson": poisson_sets,
}


def _per_set(adata, n_sets, n_points):
    """X as a (n_sets, n_points, dim) float64 array (sets are contiguous row blocks)."""
    return np.asarray(adata.X, dtype=np.float64).reshape(n_sets, n_points, -1)


def _chi2_checks(stat, dof, n_tests):
    """Check statistics that are each chi2(dof) under the model, independently.

    - max: Bonferroni, P(any stat > isf(1e-4 / n_tests)) <= 1e-4;
    - sum: exactly chi2(dof * n_tests); two-sided 1e-4 interval. The sum catches a wrong scale
      (e.g. a wrong covariance) that no single set would reveal.
    """
    stat = np.asarray(stat)
    assert stat.max() < stats.chi2.isf(1e-4 / n_tests, dof)
    total = stat.sum()
    assert stats.chi2.ppf(1e-4, dof * n_tests) < total < stats.chi2.isf(1e-4, dof * n_tests)


def _mahalanobis(diff, cov):
    """diff^T cov^-1 diff over the leading axes."""
    sol = np.linalg.solve(cov, diff[..., None])[..., 0]
    return np.einsum("...i,...i->...", diff, sol)


# ------------------------------------------------------------------------------ layout
PARAM_SHAPES = {
    "gaussian": {"means": (7, 5), "covs": (7, 5, 5)},
    "gaussian_mixture": {"weights": (7, 3), "means": (7, 3, 5), "covs": (7, 3, 5, 5)},
    "mixed_gaussian": {
        "weights": (7, 3),
        "means": (7, 3, 5),
        "covs": (7, 3, 5, 5),
        "sources": (7, 3),
    },
    "poisson": {"rates": (7, 1)},
}
PARAM_SHAPES["mixed_gaussian_fresh"] = PARAM_SHAPES["mixed_gaussian"]


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_and_set_categories(family):
    adata, params = FAMILIES[family](7, 11, seed=0)
    dim = 1 if family == "poisson" else 5
    assert adata.shape == (77, dim)
    assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
    assert isinstance(adata.obs["set"].dtype, pd.CategoricalDtype)
    expected = [f"set_{i:04d}" for i in range(7)]
    assert list(adata.obs["set"].cat.categories) == expected
    # contiguous blocks of n_points rows, in set order
    assert list(adata.obs["set"]) == [name for name in expected for _ in range(11)]
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert {k: v.shape for k, v in params.items()} == PARAM_SHAPES[family]
    for key, value in params.items():
        expected_kind = "i" if key == "sources" else "f"
        assert value.dtype.kind == expected_kind, key
        np.testing.assert_array_equal(adata.uns["params"][key], value)
    assert adata.uns["synthetic"]["seed"] == 0


def test_set_names_widen_past_9999():
    adata, _ = poisson_sets(10_001, 1, seed=0)
    cats = adata.obs["set"].cat.categories
    assert cats[0] == "set_00000" and cats[-1] == "set_10000"


def test_dimension_one_and_single_set():
    adata, params = gaussian_sets(1, 3, dim=1, df=4, seed=0)
    assert adata.shape == (3, 1) and params["covs"].shape == (1, 1, 1)
    adata, params = gaussian_mixture_sets(2, 3, n_components=1, dim=1, df=3.5, seed=0)
    np.testing.assert_allclose(params["weights"], 1.0, rtol=0, atol=1e-12)
    assert (adata.obs["component"] == 0).all()


# ------------------------------------------------------------------------------ seeding
@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_identical_different_seed_different(family):
    fn = FAMILIES[family]
    a1, p1 = fn(20, 8, seed=123)
    a2, p2 = fn(20, 8, seed=123)
    a3, p3 = fn(20, 8, seed=124)
    np.testing.assert_array_equal(a1.X, a2.X)
    pd.testing.assert_frame_equal(a1.obs, a2.obs)
    for key in p1:
        np.testing.assert_array_equal(p1[key], p2[key])
    assert not np.array_equal(a1.X, a3.X)
    first_float = next(k for k in p1 if p1[k].dtype.kind == "f")
    assert not np.array_equal(p1[first_float], p3[first_float])


def test_generator_seed_is_used_and_advanced():
    rng = np.random.default_rng(5)
    a1, _ = gaussian_sets(4, 3, seed=rng)
    a2, _ = gaussian_sets(4, 3, seed=rng)  # the generator moved on
    a_int, _ = gaussian_sets(4, 3, seed=5)
    np.testing.assert_array_equal(a1.X, a_int.X)
    assert not np.array_equal(a1.X, a2.X)
    assert "seed" not in a1.uns["synthetic"]  # only integer seeds are recorded


# ------------------------------------------------------------------------------ Normal family
def test_gaussian_set_means_match_true_means():
    n_sets, n, dim = 400, 50, 5
    adata, params = gaussian_sets(n_sets, n, dim=dim, seed=1)
    x = _per_set(adata, n_sets, n)
    # For i.i.d. N(mu, Sigma) points, n (xbar - mu)^T Sigma^-1 (xbar - mu) ~ chi2(dim) exactly
    # (the CLT bound with the true covariance, exact for Gaussians). float32 storage perturbs
    # xbar by ~1e-6, negligible next to its standard deviation sqrt(Sigma_ii / n) ~ 0.02.
    stat = n * _mahalanobis(x.mean(axis=1) - params["means"], params["covs"])
    _chi2_checks(stat, dim, n_sets)


def test_gaussian_set_covariances_match_true_covariances():
    n_sets, n, dim = 400, 50, 5
    adata, params = gaussian_sets(n_sets, n, dim=dim, seed=2)
    x = _per_set(adata, n_sets, n)
    centred = x - x.mean(axis=1, keepdims=True)
    # Whiten each set with its true Cholesky factor L: W = L^-1 S L^-T ~ Wishart(n-1, I)/(n-1),
    # whose entries have mean delta_ij and variance (1 + delta_ij)/(n-1). Averaged over the
    # independent sets, each entry has standard error sqrt(2 / ((n-1) n_sets)) at most (~0.010
    # here); 5 SE per entry (15 distinct entries) fails with probability < 1e-5. This catches a
    # transposed factor (L^T L instead of L L^T).
    chol = np.linalg.cholesky(params["covs"])
    white = np.linalg.solve(chol[:, None], centred[..., None])[..., 0]
    w_mean = np.einsum("spi,spj->ij", white, white) / ((n - 1) * n_sets)
    se = np.sqrt(2.0 / ((n - 1) * n_sets))
    np.testing.assert_allclose(w_mean, np.eye(dim), atol=5 * se, rtol=0)


def test_means_follow_uniform_prior():
    n_sets, lo, hi = 2000, -1.0, 3.0
    _, params = gaussian_sets(n_sets, 1, mean_range=(lo, hi), seed=3)
    means = params["means"]
    assert means.min() >= lo and means.max() < hi
    # Uniform(lo, hi): mean (lo+hi)/2, sd (hi-lo)/sqrt(12). Per coordinate average over n_sets
    # sets: SE = (hi-lo)/sqrt(12 n_sets) ~ 0.026; 5 SE per coordinate.
    se = (hi - lo) / np.sqrt(12 * n_sets)
    np.testing.assert_allclose(means.mean(axis=0), (lo + hi) / 2, atol=5 * se, rtol=0)


@pytest.mark.parametrize(
    ("family", "df", "dim"),
    [("gaussian", 40, 5), ("gaussian_mixture", 10, 5), ("gaussian", 12, 2)],
)
def test_inverse_wishart_mean(family, df, dim):
    n_draws = 6000
    if family == "gaussian":
        _, params = gaussian_sets(n_draws, 1, dim=dim, df=df, seed=4)
        covs = params["covs"]
    else:
        _, params = gaussian_mixture_sets(n_draws // 3, 1, n_components=3, dim=dim, df=df, seed=4)
        covs = params["covs"].reshape(-1, dim, dim)
    assert covs.shape[0] == n_draws
    # invWishart(nu, I_p): E = I / (nu - p - 1); for nu > p + 3 the entries have variance
    #   diagonal:     2 / ((nu-p-1)^2 (nu-p-3)),
    #   off-diagonal: 1 / ((nu-p) (nu-p-1) (nu-p-3)).
    # The average of n_draws independent draws has SE sqrt(var / n_draws) per entry (CLT; the
    # variance is finite for all cases here). 5 SE per entry, <= 15 distinct entries.
    nu, p = float(df), dim
    var_diag = 2.0 / ((nu - p - 1) ** 2 * (nu - p - 3))
    var_off = 1.0 / ((nu - p) * (nu - p - 1) * (nu - p - 3))
    se = np.sqrt(np.where(np.eye(dim, dtype=bool), var_diag, var_off) / n_draws)
    err = np.abs(covs.mean(axis=0) - np.eye(dim) / (nu - p - 1))
    assert np.all(err < 5 * se), err / se


@pytest.mark.parametrize("family", ["gaussian", "gaussian_mixture", "mixed_gaussian"])
def test_covariances_symmetric_positive_definite(family):
    _, params = FAMILIES[family](300, 1, seed=5)
    covs = params["covs"].reshape(-1, 5, 5)
    np.testing.assert_array_equal(covs, covs.swapaxes(-1, -2))
    assert np.linalg.eigvalsh(covs).min() > 0


# ------------------------------------------------------------------------------ mixtures
def _check_component_fractions(z, weights):
    """Component counts per set ~ Multinomial(n, w): each count ~ Binomial(n, w_k)."""
    n_sets, n = z.shape
    k = weights.shape[1]
    counts = (z[:, :, None] == np.arange(k)).sum(axis=1)
    assert counts.sum() == n_sets * n
    # Exact binomial tails for every (set, component), Bonferroni over 2 * n_sets * k one-sided
    # tests at total level 1e-4; exact, so valid even for tiny weights where a normal
    # approximation would not be.
    lower = stats.binom.cdf(counts, n, weights)
    upper = stats.binom.sf(counts - 1, n, weights)
    assert min(lower.min(), upper.min()) > 1e-4 / (2 * counts.size)
    # Pooled over sets the counts of component k are a sum of independent binomials, with
    # variance sum_i n w_ik (1 - w_ik); CLT z-score, 5 sd per component.
    z_pooled = (counts - n * weights).sum(axis=0) / np.sqrt((n * weights * (1 - weights)).sum(0))
    assert np.all(np.abs(z_pooled) < 5), z_pooled


def _check_component_means(x, z, means, covs):
    """Conditional on the component labels the points of component k are i.i.d. N(mu_k, S_k)."""
    n_sets, _, dim = x.shape
    k = means.shape[1]
    onehot = (z[:, :, None] == np.arange(k)).astype(np.float64)  # (n_sets, n, k)
    counts = onehot.sum(axis=1)
    sums = np.einsum("snk,snd->skd", onehot, x)
    present = counts > 0
    xbar = sums[present] / counts[present][:, None]
    # c (xbar_k - mu_k)^T Sigma_k^-1 (xbar_k - mu_k) ~ chi2(dim) exactly, independently.
    stat = counts[present] * _mahalanobis(xbar - means[present], covs[present])
    _chi2_checks(stat, dim, int(present.sum()))


@pytest.mark.parametrize("family", ["gaussian_mixture", "mixed_gaussian_fresh"])
def test_mixture_weights_and_components(family):
    n_sets, n = 300, 200
    adata, params = FAMILIES[family](n_sets, n, seed=6)
    weights = params["weights"]
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    z = adata.obs["component"].to_numpy().reshape(n_sets, n)
    assert z.min() >= 0 and z.max() < weights.shape[1]
    _check_component_fractions(z, weights)
    _check_component_means(_per_set(adata, n_sets, n), z, params["means"], params["covs"])


@pytest.mark.parametrize("family", ["gaussian_mixture", "mixed_gaussian_fresh"])
def test_mixture_set_means_match_mixture_mean(family):
    n_sets, n, dim = 300, 200, 5
    adata, params = FAMILIES[family](n_sets, n, seed=7)
    w, mu, cov = params["weights"], params["means"], params["covs"]
    m = np.einsum("sk,skd->sd", w, mu)
    second = np.einsum("sk,skij->sij", w, cov + mu[..., :, None] * mu[..., None, :])
    c = second - m[:, :, None] * m[:, None, :]  # mixture covariance
    x = _per_set(adata, n_sets, n)
    t = n * _mahalanobis(x.mean(axis=1) - m, c)
    # E[t] = tr(C^-1 Cov(sqrt(n) xbar)) = dim exactly for i.i.d. points; by the CLT t is close to
    # chi2(dim) (variance 2 dim) for n = 200. Mean over sets: SE ~ sqrt(2 dim / n_sets) ~ 0.18;
    # 6 SE allows for the finite-n excess kurtosis of mixtures. Bonferroni bound on the max with
    # a 1.5x margin for CLT tail error.
    assert abs(t.mean() - dim) < 6 * np.sqrt(2 * dim / n_sets), t.mean()
    assert t.max() < 1.5 * stats.chi2.isf(1e-4 / n_sets, dim)


def test_dirichlet_weights_prior():
    n_sets, alpha = 4000, np.array([0.5, 1.0, 2.5])
    _, params = gaussian_mixture_sets(n_sets, 1, n_components=3, alpha=alpha, seed=8)
    # Dirichlet(alpha): E[w_k] = a_k / a0, Var[w_k] = a_k (a0 - a_k) / (a0^2 (a0 + 1)).
    # Average of n_sets draws: 5 SE per component (CLT, bounded variables).
    a0 = alpha.sum()
    se = np.sqrt(alpha * (a0 - alpha) / (a0**2 * (a0 + 1)) / n_sets)
    np.testing.assert_array_less(np.abs(params["weights"].mean(axis=0) - alpha / a0), 5 * se)


def test_mixed_sets_resample_points_of_the_pool():
    n_sets, n, n_pool, pool_n = 50, 40, 30, 20
    adata, params = mixed_gaussian_sets(
        n_sets, n, n_sources=4, n_pool=n_pool, pool_n_points=pool_n, seed=9
    )
    # The pool is exactly gaussian_sets with the same (integer) seed.
    pool, pool_params = gaussian_sets(n_pool, pool_n, seed=9)
    sources = params["sources"]
    assert sources.min() >= 0 and sources.max() < n_pool
    assert all(len(set(row)) == 4 for row in sources)  # distinct within a set
    np.testing.assert_array_equal(params["means"], pool_params["means"][sources])
    np.testing.assert_array_equal(params["covs"], pool_params["covs"][sources])
    z = adata.obs["component"].to_numpy().reshape(n_sets, n)
    src = adata.obs["source"].to_numpy().reshape(n_sets, n)
    np.testing.assert_array_equal(src, np.take_along_axis(sources, z, axis=1))
    point = adata.obs["source_point"].to_numpy()
    assert point.min() >= 0 and point.max() < pool_n
    # every point is a point of its source set
    np.testing.assert_array_equal(adata.X, pool.X[src.reshape(-1) * pool_n + point])
    _check_component_fractions(z, params["weights"])


def test_mixed_sets_sources_uniform_without_replacement():
    n_sets, n_pool, k = 3000, 10, 3
    _, params = mixed_gaussian_sets(n_sets, 1, n_sources=k, n_pool=n_pool, seed=10)
    sources = params["sources"]
    assert np.all(np.sort(sources, axis=1)[:, 1:] != np.sort(sources, axis=1)[:, :-1])
    # Uniform k-subsets: each pool index is used by a set with probability k / n_pool, so its
    # usage count ~ Binomial(n_sets, 0.3) (mean 900, sd ~25); each position's value is uniform
    # on the pool: count ~ Binomial(n_sets, 0.1) (mean 300, sd ~16). 5 sd (normal approx.,
    # n p >= 300) for each of the 10 + 30 counts.
    usage = np.bincount(sources.reshape(-1), minlength=n_pool)
    p = k / n_pool
    assert np.all(np.abs(usage - n_sets * p) < 5 * np.sqrt(n_sets * p * (1 - p))), usage
    for j in range(k):
        pos = np.bincount(sources[:, j], minlength=n_pool)
        q = 1 / n_pool
        assert np.all(np.abs(pos - n_sets * q) < 5 * np.sqrt(n_sets * q * (1 - q))), (j, pos)
    # n_sources == n_pool: every set uses every source once
    _, params = mixed_gaussian_sets(20, 5, n_sources=4, n_pool=4, seed=0)
    all_four = np.tile(np.arange(4), (20, 1))
    np.testing.assert_array_equal(np.sort(params["sources"], axis=1), all_four)


# ------------------------------------------------------------------------------ Poisson
@pytest.mark.parametrize("dim", [1, 2])
def test_poisson_sets(dim):
    n_sets, n, lo, hi = 2000, 10, 0.5, 8.0
    adata, params = poisson_sets(n_sets, n, rate_range=(lo, hi), dim=dim, seed=11)
    x = adata.X
    assert x.dtype == np.float32 and np.all(x >= 0) and np.array_equal(x, np.round(x))
    rates = params["rates"]
    assert rates.shape == (n_sets, dim) and rates.min() >= lo and rates.max() < hi
    counts = _per_set(adata, n_sets, n).sum(axis=1)  # (n_sets, dim)
    # Per set and coordinate the sum of the n counts is exactly Poisson(n lambda): exact tails,
    # Bonferroni over the 2 * n_sets * dim one-sided tests at total level 1e-4 (with n = 10 and
    # lambda ~ 1 the normal approximation is too rough in the far tail).
    lower = stats.poisson.cdf(counts, n * rates)
    upper = stats.poisson.sf(counts - 1, n * rates)
    assert min(lower.min(), upper.min()) > 1e-4 / (2 * counts.size)
    # Poisson CLT: z = (xbar - lambda) / sqrt(lambda / n) has mean 0 and variance 1 exactly, and
    # E[z^4] = 3 + 1 / (n lambda) <= 3.2, so Var[z^2] <= 2.2. Averages over the n_sets * dim
    # independent z: 5 SE each.
    zs = (counts / n - rates) / np.sqrt(rates / n)
    assert abs(zs.mean()) < 5 / np.sqrt(zs.size)
    assert abs((zs**2).mean() - 1) < 5 * np.sqrt(2.2 / zs.size)
    # Uniform prior on the rates: mean (lo+hi)/2, SE (hi-lo)/sqrt(12 n_sets dim); 5 SE.
    assert abs(rates.mean() - (lo + hi) / 2) < 5 * (hi - lo) / np.sqrt(12 * rates.size)


# ------------------------------------------------------------------------------ h5ad round trip
@pytest.mark.parametrize("family", FAMILIES)
def test_params_round_trip_h5ad(family, tmp_path):
    adata, params = FAMILIES[family](6, 4, seed=12)
    path = tmp_path / f"{family}.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert set(back.uns["params"]) == set(params)
    for key, value in params.items():
        got = back.uns["params"][key]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    np.testing.assert_array_equal(back.X, adata.X)
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    assert back.uns["synthetic"]["family"] == adata.uns["synthetic"]["family"]
    assert back.uns["synthetic"]["seed"] == 12


def test_returned_params_independent_of_uns():
    adata, params = gaussian_sets(3, 2, seed=0)
    params["means"][:] = -1.0
    assert not np.any(adata.uns["params"]["means"] == -1.0)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: gaussian_sets(0, 5), ValueError, "n_sets"),
        (lambda: gaussian_sets(5, -1), ValueError, "n_points"),
        (lambda: gaussian_sets(5, 5, dim=0), ValueError, "dim"),
        (lambda: gaussian_sets(2.5, 5), TypeError, "n_sets"),
        (lambda: gaussian_sets(True, 5), TypeError, "n_sets"),
        (lambda: gaussian_sets(5, 5, df=6), ValueError, "df"),
        (lambda: gaussian_sets(5, 5, dim=2, df=3), ValueError, "df"),
        (lambda: gaussian_sets(5, 5, df=np.inf), ValueError, "df"),
        (lambda: gaussian_sets(5, 5, mean_range=(5, 0)), ValueError, "mean_range"),
        (lambda: gaussian_sets(5, 5, mean_range=(0, np.nan)), ValueError, "mean_range"),
        (lambda: gaussian_sets(5, 5, mean_range=(0, 1, 2)), ValueError, "mean_range"),
        (lambda: gaussian_mixture_sets(5, 5, n_components=0), ValueError, "n_components"),
        (lambda: gaussian_mixture_sets(5, 5, df=6), ValueError, "df"),
        (lambda: gaussian_mixture_sets(5, 5, alpha=0.0), ValueError, "alpha"),
        (lambda: gaussian_mixture_sets(5, 5, alpha=[1.0, 2.0]), ValueError, "alpha"),
        (lambda: mixed_gaussian_sets(5, 5, n_sources=6), ValueError, "n_pool"),
        (lambda: mixed_gaussian_sets(5, 5, n_pool=0), ValueError, "n_pool"),
        (lambda: mixed_gaussian_sets(5, 5, pool_n_points=0), ValueError, "pool_n_points"),
        (lambda: mixed_gaussian_sets(5, 5, alpha=-1), ValueError, "alpha"),
        (lambda: poisson_sets(5, 0), ValueError, "n_points"),
        (lambda: poisson_sets(5, 5, rate_range=(-1, 2)), ValueError, "rate_range"),
        (lambda: poisson_sets(5, 5, rate_range=(3, 2)), ValueError, "rate_range"),
        (lambda: poisson_sets(5, 5, dim=0), ValueError, "dim"),
    ],
)
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()

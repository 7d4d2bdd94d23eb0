"""Tests of scgde.metrics against closed forms, POT and scipy.

Tolerances are derived in the comments next to each check: either round-off bounds for exact
identities, or a number of standard errors (computed from the math, not fitted) for estimators.
All randomness uses fixed seeds, so the statistical checks are deterministic.
"""

import tracemalloc
import warnings

import anndata as ad
import numpy as np
import ot
import pytest
import scipy.linalg
from scipy import integrate, sparse, stats
from scipy.spatial.distance import cdist, pdist
from scipy.special import erf

from scgde import metrics
from scgde.metrics import (
    bures_squared,
    energy_distance,
    gaussian_fit_error,
    gaussian_geodesic,
    gaussian_w2,
    gaussian_w2_matrix,
    gmm_w2_squared,
    median_bandwidth,
    mmd,
    mutual_information,
    points,
    sinkhorn_divergence,
    sliced_wasserstein,
    sqrtm_psd,
)
from scgde.metrics._transport import _debiased_sinkhorn

EPS = np.finfo(np.float64).eps


def random_spd(rng, d, min_eig=0.5, max_eig=3.0):
    """Random SPD matrix with eigenvalues in [min_eig, max_eig] and a random eigenbasis."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * rng.uniform(min_eig, max_eig, d)) @ q.T


# --------------------------------------------------------------------------------------------
# Gaussian closed forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m1", "s1", "m2", "s2"), [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 3.0, 2.0), (-1.5, 0.3, 2.0, 5.0)]
)
def test_gaussian_w2_1d_closed_form(m1, s1, m2, s2):
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2. The Bures term is
    # s1^2 + s2^2 - 2 s1 s2 computed from square roots with a few ulps of error each, so the
    # absolute error is a few eps * (s1^2 + s2^2); 100 eps leaves ample room.
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    value = gaussian_w2(m1, s1**2, m2, s2**2)
    assert value == pytest.approx(expected, rel=1e-12, abs=100 * EPS * (s1**2 + s2**2))
    assert gaussian_w2(m1, s1**2, m2, s2**2, squared=False) == pytest.approx(
        np.sqrt(expected), rel=1e-6, abs=1e-7
    )


def test_bures_commuting_closed_form():
    # For commuting S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T:
    # Bures^2 = ||S1^(1/2) - S2^(1/2)||_F^2 = sum (sqrt(a) - sqrt(b))^2. The computed value is a
    # difference of traces of size tr S1 + tr S2, so its round-off is ~ d * eps * (tr S1 + tr S2);
    # the tolerance 1e-12 * (tr S1 + tr S2) is ~ 1000x that for d = 5.
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 4, 5), rng.uniform(0.1, 4, 5)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    atol = 1e-12 * (a.sum() + b.sum())
    assert bures_squared(np.diag(a), np.diag(b)) == pytest.approx(expected, abs=atol)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    assert np.allclose(sqrtm_psd(s1) @ sqrtm_psd(s2), sqrtm_psd(s2) @ sqrtm_psd(s1))
    assert bures_squared(s1, s2) == pytest.approx(expected, abs=atol)
    frobenius = np.sum((sqrtm_psd(s1) - sqrtm_psd(s2)) ** 2)
    assert bures_squared(s1, s2) == pytest.approx(frobenius, abs=atol)


def test_bures_rank_deficient():
    # Singular covariances are allowed (eigenvalues clipped at 0):
    # Bures^2(diag(1, 0), diag(0, 1)) = (1 - 0)^2 + (0 - 1)^2 = 2 by the commuting formula, and
    # W2^2 between a point mass at 0 and N(0, 4) is 4.
    assert bures_squared(np.diag([1.0, 0.0]), np.diag([0.0, 1.0])) == pytest.approx(2.0, abs=1e-12)
    assert gaussian_w2(0.0, 0.0, 0.0, 4.0) == pytest.approx(4.0, abs=1e-12)
    # A rank-1 matrix whose computed eigenvalues are slightly negative: no NaN, Bures^2(S, S) ~ 0
    # up to round-off sqrt-amplified at the zero eigenvalues (~ sqrt(eps) * ||S||).
    v = np.array([1.0, 1e-3, 2.0])
    s = np.outer(v, v)
    assert np.linalg.eigvalsh(s).min() < 1e-12
    value = bures_squared(s, s)
    assert np.isfinite(value)
    assert value == pytest.approx(0.0, abs=1e-6 * np.trace(s))


def test_gaussian_w2_self_symmetry_and_reference():
    rng = np.random.default_rng(1)
    d = 6
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    scale = np.trace(s1) + np.trace(s2)
    # Self distance is 0; the cancellation 2 tr S - 2 tr (S^2)^(1/2) leaves round-off of order
    # d * eps * ||S||^2 / lambda_min(S) <= 1e-13 here, so 1e-10 * scale is generous.
    assert gaussian_w2(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-10 * scale)
    # Symmetry: tr (S2^1/2 S1 S2^1/2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2 (same eigenvalues as S1 S2);
    # only round-off differs.
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(gaussian_w2(m2, s2, m1, s1), abs=1e-10)
    # Reference with the *other* ordering of the square roots, via scipy's Schur-based sqrtm.
    root1 = scipy.linalg.sqrtm(s1).real
    cross = scipy.linalg.sqrtm(root1 @ s2 @ root1).real
    reference = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross)
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-9)
    # And POT's implementation (returns W2, not squared).
    pot_w2 = ot.gaussian.bures_wasserstein_distance(m1, m2, s1, s2)
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(float(pot_w2) ** 2, rel=1e-9)


def test_gaussian_w2_translation():
    rng = np.random.default_rng(2)
    d = 4
    m1, m2, shift = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    base = gaussian_w2(m1, s1, m2, s2)
    # The Bures term does not involve the means, so these are exact identities up to round-off
    # in ||m1 - m2||^2 (a few eps times its size).
    # Shifting both Gaussians leaves W2 unchanged.
    assert gaussian_w2(m1 + shift, s1, m2 + shift, s2) == pytest.approx(base, rel=1e-12)
    # Shifting one mean: ||m1 + c - m2||^2 = ||m1 - m2||^2 + 2 (m1 - m2).c + ||c||^2.
    expected = base + 2 * (m1 - m2) @ shift + shift @ shift
    assert gaussian_w2(m1 + shift, s1, m2, s2) == pytest.approx(expected, rel=1e-12)
    # With equal means, shifting one of them adds exactly ||shift||^2.
    same = gaussian_w2(m1, s1, m1, s2)
    assert gaussian_w2(m1 + shift, s1, m1, s2) - same == pytest.approx(shift @ shift, rel=1e-12)


def test_gaussian_geodesic_endpoints_and_constant_speed():
    """McCann interpolation: exact endpoints, and W2(N_0, N_t) = t W2(N_0, N_1) (a geodesic)."""
    rng = np.random.default_rng(11)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = random_spd(rng, 4), random_spd(rng, 4)
    mean0, cov0 = gaussian_geodesic(m1, s1, m2, s2, 0.0)
    mean1, cov1 = gaussian_geodesic(m1, s1, m2, s2, 1.0)
    # round-off of a few 4x4 products and eigendecompositions of O(1) matrices
    np.testing.assert_allclose(mean0, m1, atol=1e-12)
    np.testing.assert_allclose(cov0, s1, atol=1e-10)
    np.testing.assert_allclose(mean1, m2, atol=1e-12)
    np.testing.assert_allclose(cov1, s2, atol=1e-9)
    total = gaussian_w2(m1, s1, m2, s2, squared=False)
    for t in (0.2, 0.5, 0.9):
        mean_t, cov_t = gaussian_geodesic(m1, s1, m2, s2, t)
        assert gaussian_w2(m1, s1, mean_t, cov_t, squared=False) == pytest.approx(
            t * total, rel=1e-7
        )
        assert gaussian_w2(mean_t, cov_t, m2, s2, squared=False) == pytest.approx(
            (1 - t) * total, rel=1e-7
        )


def test_gaussian_geodesic_commuting_covariances():
    """Diagonal covariances: standard deviations interpolate linearly."""
    sd1, sd2 = np.array([1.0, 2.0]), np.array([3.0, 0.5])
    mean, cov = gaussian_geodesic([0, 0], np.diag(sd1**2), [2, -4], np.diag(sd2**2), 0.25)
    np.testing.assert_allclose(mean, [0.5, -1.0], atol=1e-12)
    np.testing.assert_allclose(cov, np.diag((0.75 * sd1 + 0.25 * sd2) ** 2), atol=1e-12)


def test_gaussian_geodesic_errors():
    with pytest.raises(ValueError, match="t must be in"):
        gaussian_geodesic([0, 0], np.eye(2), [1, 1], np.eye(2), 1.5)
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_geodesic([0, 0], np.diag([1.0, 0.0]), [1, 1], np.eye(2), 0.5)
    with pytest.raises(ValueError):
        gaussian_geodesic([0, 0, 0], np.eye(3), [1, 1], np.eye(2), 0.5)


def test_sqrtm_psd():
    rng = np.random.default_rng(3)
    s = random_spd(rng, 5)
    root = sqrtm_psd(s)
    # Backward error of an eigendecomposition-based square root is ~ d * eps * ||S||.
    assert np.allclose(root @ root, s, atol=1e-12 * np.abs(s).max())
    assert np.allclose(root, root.T)
    stack = np.stack([s, 2 * s])
    assert np.allclose(sqrtm_psd(stack)[1], np.sqrt(2) * root)


def test_gaussian_fit_error_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 3))
    mean, cov = rng.standard_normal(3), random_spd(rng, 3)
    # Plain norm of the mean difference plus squared Bures to the ddof=1 sample covariance.
    expected = np.linalg.norm(mean - x.mean(0)) + bures_squared(cov, np.cov(x.T))
    assert gaussian_fit_error(x, mean, cov) == pytest.approx(expected, rel=1e-12)
    expected0 = np.linalg.norm(mean - x.mean(0)) + bures_squared(cov, np.cov(x.T, ddof=0))
    assert gaussian_fit_error(x, mean, cov, ddof=0) == pytest.approx(expected0, rel=1e-12)


def test_gaussian_fit_error_true_gaussian_is_small():
    rng = np.random.default_rng(5)
    n, d = 20_000, 3
    mean, cov = rng.standard_normal(d), random_spd(rng, d)
    x = rng.multivariate_normal(mean, cov, size=n)
    # Mean term: E||xbar - m||^2 = tr(S) / n, so by Chebyshev ||xbar - m|| <= 5 sqrt(tr S / n)
    # with probability >= 1 - 1/25.
    mean_tol = 5 * np.sqrt(np.trace(cov) / n)
    # Covariance term: Bures(S, Shat) = min_U ||S^1/2 - Shat^1/2 U||_F <= ||S^1/2 - Shat^1/2||_F
    # <= ||S - Shat||_F / sqrt(lambda_min(S)) (Bhatia, Matrix Analysis, Thm X.3.8), and for
    # Gaussian data E||Shat - S||_F^2 = sum_ij (S_ij^2 + S_ii S_jj) / (n - 1)
    # = (||S||_F^2 + tr(S)^2) / (n - 1). Markov: Bures^2 <= 20 x that bound w.p. >= 1 - 1/20.
    lam_min = np.linalg.eigvalsh(cov).min()
    bures_tol = 20 * (np.sum(cov**2) + np.trace(cov) ** 2) / ((n - 1) * lam_min)
    error = gaussian_fit_error(x, mean, cov)
    assert error <= mean_tol + bures_tol
    # Not vacuous: a Gaussian with the mean off by 0.5 in one coordinate scores >= 0.5 - mean_tol.
    assert mean_tol + bures_tol < 0.2
    assert gaussian_fit_error(x, mean + np.array([0.5, 0, 0]), cov) > 0.5 - mean_tol


# --------------------------------------------------------------------------------------------
# Gaussian mixtures
# --------------------------------------------------------------------------------------------

HAS_GMM_OT = hasattr(getattr(ot, "gmm", None), "gmm_ot_loss")


def random_gmm(rng, k, d):
    weights = rng.uniform(0.2, 1.0, k)
    return (
        weights / weights.sum(),
        3 * rng.standard_normal((k, d)),
        np.stack([random_spd(rng, d) for _ in range(k)]),
    )


@pytest.mark.parametrize("method", ["auto", "emd"] + (["pot"] if HAS_GMM_OT else []))
def test_gmm_single_component_equals_gaussian_w2(method):
    rng = np.random.default_rng(6)
    m1, m2 = rng.standard_normal(3), rng.standard_normal(3)
    s1, s2 = random_spd(rng, 3), random_spd(rng, 3)
    # With one component per mixture the only coupling is the product, cost = W2^2; the two
    # sqrtm implementations agree to round-off (relative ~1e-14).
    value = gmm_w2_squared([1.0], m1[None], s1[None], [1.0], m2[None], s2[None], method=method)
    assert value == pytest.approx(gaussian_w2(m1, s1, m2, s2), rel=1e-10)


@pytest.mark.skipif(not HAS_GMM_OT, reason="installed POT has no ot.gmm.gmm_ot_loss")
def test_gmm_pot_matches_emd_on_cost_matrix():
    rng = np.random.default_rng(7)
    w1, m1, c1 = random_gmm(rng, 3, 4)
    w2, m2, c2 = random_gmm(rng, 5, 4)
    cost = gaussian_w2_matrix(m1, c1, m2, c2)
    # Cost matrices from POT and from our eigenvalue-clipped implementation agree to round-off.
    pot_cost = ot.gmm.dist_bures_squared(m1, m2, c1, c2)
    assert np.allclose(cost, pot_cost, rtol=1e-10, atol=1e-10 * cost.max())
    # The LP value is 1-Lipschitz in the sup-norm of the cost (the plan has mass 1), so the two
    # values differ by at most max |cost - pot_cost| (plus LP solver round-off).
    own = float(ot.emd2(w1, w2, cost))
    pot = float(ot.gmm.gmm_ot_loss(m1, m2, c1, c2, w1, w2))
    assert pot == pytest.approx(own, abs=np.abs(cost - pot_cost).max() + 1e-10 * cost.max())
    assert gmm_w2_squared(w1, m1, c1, w2, m2, c2, method="pot") == pytest.approx(pot, rel=1e-12)
    assert gmm_w2_squared(w1, m1, c1, w2, m2, c2, method="emd") == pytest.approx(own, rel=1e-12)


def test_gmm_permutation_and_identity():
    rng = np.random.default_rng(8)
    w1, m1, c1 = random_gmm(rng, 4, 3)
    w2, m2, c2 = random_gmm(rng, 3, 3)
    base = gmm_w2_squared(w1, m1, c1, w2, m2, c2)
    # Relabelling components permutes rows/columns of the cost matrix; the LP optimum is the
    # same number (only the summation order changes: round-off ~ eps * value).
    p1, p2 = rng.permutation(4), rng.permutation(3)
    permuted = gmm_w2_squared(w1[p1], m1[p1], c1[p1], w2[p2], m2[p2], c2[p2])
    assert permuted == pytest.approx(base, rel=1e-10)
    # Symmetry and identity.
    assert gmm_w2_squared(w2, m2, c2, w1, m1, c1) == pytest.approx(base, rel=1e-10)
    assert gmm_w2_squared(w1, m1, c1, w1, m1, c1) == pytest.approx(0.0, abs=1e-9)


def test_gmm_rank_deficient_falls_back():
    # POT's sqrtm takes sqrt of eigenvalues without clipping; a singular covariance whose
    # computed eigenvalues are slightly negative would give NaN there. "auto" must stay finite
    # and agree with the emd method.
    v = np.array([1.0, 1e-3, 2.0])
    singular = np.outer(v, v)[None]
    weights, means = np.array([1.0]), np.zeros((1, 3))
    other = np.eye(3)[None]
    auto = gmm_w2_squared(weights, means, singular, weights, means + 1, other)
    emd = gmm_w2_squared(weights, means, singular, weights, means + 1, other, method="emd")
    assert np.isfinite(auto)
    assert auto == pytest.approx(emd, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Energy distance
# --------------------------------------------------------------------------------------------


def energy_brute_force(x, y):
    return 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()


def test_energy_distance_identities():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) + 0.5
    # Identical samples: the within-set sums have exact zero diagonals, but the cross sum computes
    # |a|^2 + |a|^2 - 2 a.a, which carries round-off <= (d + 2) eps 2|a|^2 (dot-product error
    # bound), i.e. distances up to sqrt(2 (d + 2) eps) |a| for the n coincident pairs out of n^2;
    # the cross term is doubled.
    centred_norm = np.linalg.norm(x - x.mean(0), axis=1).max()
    bound = 2 / len(x) * np.sqrt(2 * (x.shape[1] + 2) * EPS) * centred_norm
    assert 0 <= energy_distance(x, x) <= bound
    # Reference: scipy's direct distances. Our |a|^2+|b|^2-2ab formula on centred data has
    # absolute error ~ eps * |a|^2 per squared distance; relative 1e-10 is far above that.
    assert energy_distance(x, y) == pytest.approx(energy_brute_force(x, y), rel=1e-10)
    # Block size only changes the summation order.
    assert energy_distance(x, y, block_elements=7) == pytest.approx(
        energy_distance(x, y), rel=1e-12
    )
    assert energy_distance(y, x) == pytest.approx(energy_distance(x, y), rel=1e-12)


def test_energy_distance_point_masses():
    # n copies of a vs m copies of b: within-set distances are 0, so E^2 = 2 |a - b|.
    # Coincident points get squared distances of round-off size eps * |a|^2 (clipped at 0), hence
    # distances up to sqrt(eps) * |a| ~ 1e-8 |a|; rel 1e-7 covers that.
    a, b = np.array([1.0, -2.0, 0.5]), np.array([4.0, 2.0, 0.5])
    x, y = np.tile(a, (7, 1)), np.tile(b, (11, 1))
    assert energy_distance(x, y) == pytest.approx(2 * np.linalg.norm(a - b), rel=1e-7)
    assert energy_distance([3.0], [-1.0]) == pytest.approx(8.0, rel=1e-12)


def _folded_normal_mean(t):
    """E|t + Z| for Z ~ N(0, 1): sqrt(2/pi) exp(-t^2/2) + t erf(t / sqrt 2)."""
    return np.sqrt(2 / np.pi) * np.exp(-(t**2) / 2) + t * erf(t / np.sqrt(2))


@pytest.mark.parametrize("delta", [1.0, 2.0])
def test_energy_distance_consistency_1d_gaussians(delta):
    n, m = 5000, 4000
    rng = np.random.default_rng(10)
    x = rng.standard_normal(n)
    y = rng.standard_normal(m) + delta
    # Population value for X ~ N(0,1), Y ~ N(delta,1): X - Y ~ N(-delta, 2), so E|X - Y| is a
    # folded-normal mean, sqrt(2) E|delta/sqrt(2) + Z| = (2/sqrt(pi)) exp(-delta^2/4)
    # + delta erf(delta/2); and E|X - X'| = E|Y - Y'| = 2/sqrt(pi).
    e_xy = 2 / np.sqrt(np.pi) * np.exp(-(delta**2) / 4) + delta * erf(delta / 2)
    population = 2 * e_xy - 4 / np.sqrt(np.pi)
    # The V-statistic includes the zero diagonal: E[mean_ii' |x_i - x_i'|] = (1 - 1/n) E|X-X'|,
    # so its expectation is population + (2/sqrt(pi)) (1/n + 1/m). Subtract that bias.
    bias = 2 / np.sqrt(np.pi) * (1 / n + 1 / m)

    # Standard error from the Hajek projection: with g(t) = E|t + Z|, the influence of one x is
    # 2 E|x - Y| - 2 E|x - X'| = 2 g(x - delta) - 2 g(x), and of one y is 2 g(y) - 2 g(y - delta),
    # so Var ~ Var_X[2g(X - delta) - 2g(X)] / n + Var_Y[2g(Y) - 2g(Y - delta)] / m (by quadrature).
    # The remaining degenerate (second-order) part has sd ~ sqrt(2 E|X - Y|^2) / n
    # <= sqrt(2 (2 + delta^2)) / n < 8 / n for delta <= 2.
    def variance(fun, loc):
        pdf = stats.norm(loc).pdf
        mean = integrate.quad(lambda t: fun(t) * pdf(t), -np.inf, np.inf)[0]
        return integrate.quad(lambda t: (fun(t) - mean) ** 2 * pdf(t), -np.inf, np.inf)[0]

    def influence_x(t):
        return 2 * _folded_normal_mean(t - delta) - 2 * _folded_normal_mean(t)

    def influence_y(t):
        return 2 * _folded_normal_mean(t) - 2 * _folded_normal_mean(t - delta)

    se = np.sqrt(variance(influence_x, 0.0) / n + variance(influence_y, delta) / m)
    tolerance = 5 * se + 8 / min(n, m)
    estimate = energy_distance(x, y)
    assert abs(estimate - bias - population) < tolerance
    assert tolerance < 0.25 * population  # the check is not vacuous


def test_energy_distance_blocks_bound_memory():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((600, 2)), rng.standard_normal((500, 2))
    # A tiny block size only changes the summation order (round-off relative to the terms ~1).
    assert energy_distance(x, y, block_elements=1000) == pytest.approx(
        energy_brute_force(x, y), rel=1e-9
    )
    # Memory: the full 3000 x 3000 distance matrix would take 72 MB; with 2**16-element blocks
    # the peak is a few blocks (0.5 MiB each) plus centred copies of the inputs (48 KiB each).
    x, y = rng.standard_normal((3000, 2)), rng.standard_normal((3000, 2))
    tracemalloc.start()
    try:
        energy_distance(x, y, block_elements=2**16)
        mmd(x, y, bandwidth=1.0, block_elements=2**16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 8 * 2**16 + 4 * x.nbytes


# --------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------


def mmd_brute_force(x, y, h, unbiased):
    def k(a, b):
        return np.exp(-cdist(a, b, "sqeuclidean") / (2 * h**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if unbiased:
        return (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def test_mmd_matches_brute_force():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((60, 3)), rng.standard_normal((45, 3)) + 0.3
    for unbiased in (True, False):
        # Same sums, different summation order / distance formula: round-off only.
        assert mmd(x, y, bandwidth=1.3, unbiased=unbiased) == pytest.approx(
            mmd_brute_force(x, y, 1.3, unbiased), rel=1e-9, abs=1e-14
        )
    assert mmd(x, y, bandwidth=1.3, block_elements=5) == pytest.approx(
        mmd(x, y, bandwidth=1.3), rel=1e-12
    )
    # Default bandwidth: median pairwise distance of the pooled sample (small: no subsampling).
    h = np.median(pdist(np.concatenate([x, y])))
    assert median_bandwidth(x, y) == pytest.approx(h, rel=1e-12)
    assert mmd(x, y) == pytest.approx(mmd_brute_force(x, y, h, True), rel=1e-9)


def test_median_bandwidth_subsampling_is_deterministic():
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((900, 2)), rng.standard_normal((700, 2))
    h1, h2 = median_bandwidth(x, y), median_bandwidth(x, y)
    assert h1 == h2
    # The median of N(0, 2I_2)-distributed differences' norms is sqrt(2 * 2 ln 2) ~ 1.665 (the
    # norm of N(0, 2 I_2) is Rayleigh with scale sqrt 2); the subsample median is close.
    assert h1 == pytest.approx(np.sqrt(4 * np.log(2)), rel=0.05)
    assert median_bandwidth(np.zeros((3, 2)), np.zeros((2, 2))) == 1.0


def test_mmd_same_distribution_is_zero_within_standard_errors():
    n, m, d, h = 500, 400, 2, 1.0
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    # Under P = Q the unbiased estimate equals A_xx + A_yy - 2 A_xy for the doubly-centred kernel
    # k~ (the linear Hajek terms cancel), whose U-statistics are uncorrelated with
    # Var = E[k~^2] (2/(n(n-1)) + 2/(m(m-1)) + 4/(nm)), and E[k~^2] <= E[k(X,X')^2]
    # = E exp(-|X-X'|^2 / h^2) = (1 + 4/h^2)^(-d/2) for X - X' ~ N(0, 2I).
    second_moment = (1 + 4 / h**2) ** (-d / 2)
    sd = np.sqrt(second_moment * (2 / (n * (n - 1)) + 2 / (m * (m - 1)) + 4 / (n * m)))
    value = mmd(x, y, bandwidth=h)
    assert abs(value) < 5 * sd  # Chebyshev: probability <= 1/25 for a random seed
    # Invariance to a simultaneous translation (only round-off of the centring changes).
    shift = np.array([100.0, -40.0])
    assert mmd(x + shift, y + shift, bandwidth=h) == pytest.approx(value, abs=1e-12)
    assert mmd(x + shift, y + shift) == pytest.approx(mmd(x, y), abs=1e-12)


def test_mmd_shifted_1d_gaussians_population_value():
    n, m, h = 1000, 1000, 1.0
    rng = np.random.default_rng(15)
    x = rng.standard_normal(n)
    values = []
    for delta in (0.5, 1.0, 2.0):
        y = rng.standard_normal(m) + delta
        # Population MMD^2 for N(0,1) vs N(delta,1): E k(X, Y) with X - Y ~ N(-delta, 2) is
        # (h^2/(h^2+2))^(1/2) exp(-delta^2 / (2(h^2+2))), and E k(X,X') the same with delta = 0,
        # so MMD^2 = 2 (h^2/(h^2+2))^(1/2) (1 - exp(-delta^2/(2(h^2+2)))).
        c = np.sqrt(h**2 / (h**2 + 2))
        population = 2 * c * (1 - np.exp(-(delta**2) / (2 * (h**2 + 2))))
        # First-order (Hajek) variance: 4 Var_P(w)/n + 4 Var_Q(w)/m for the witness
        # w(t) = E k(t, X) - E k(t, Y) = c1 (exp(-t^2/(2(h^2+1))) - exp(-(t-delta)^2/(2(h^2+1))))
        # with c1 = sqrt(h^2/(h^2+1)); plus a degenerate part with sd <= 2 sqrt(8) / n (|k~| <= 2).
        c1 = np.sqrt(h**2 / (h**2 + 1))

        def witness(t, delta=delta, c1=c1):
            s = 2 * (h**2 + 1)
            return c1 * (np.exp(-(t**2) / s) - np.exp(-((t - delta) ** 2) / s))

        var = 0.0
        for loc, size in ((0.0, n), (delta, m)):
            pdf = stats.norm(loc).pdf
            mean = integrate.quad(lambda t, pdf=pdf: witness(t) * pdf(t), -np.inf, np.inf)[0]
            second = integrate.quad(
                lambda t, pdf=pdf, mean=mean: (witness(t) - mean) ** 2 * pdf(t), -np.inf, np.inf
            )[0]
            var += 4 * second / size
        tolerance = 5 * np.sqrt(var) + 5 * 2 * np.sqrt(8) / n
        value = mmd(x, y, bandwidth=h)
        assert abs(value - population) < tolerance
        values.append(value)
    # Positive and increasing with the shift (population 0.066, 0.23, 0.62 for h = 1).
    assert 0 < values[0] < values[1] < values[2]


# --------------------------------------------------------------------------------------------
# Sliced Wasserstein
# --------------------------------------------------------------------------------------------


def test_sliced_1d_equals_exact_w2():
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal(50), 2 * rng.standard_normal(50) + 1
    # In 1-d the only unit directions are +1 and -1, and both give W2 = sqrt(mean of squared
    # sorted differences); identical arithmetic up to the sign, so round-off only.
    exact = np.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    for seed in range(4):
        assert sliced_wasserstein(x, y, n_projections=1, seed=seed) == pytest.approx(exact, 1e-12)
    assert sliced_wasserstein(x, y, projections=[[-1.0]]) == pytest.approx(exact, rel=1e-12)


def test_sliced_unequal_sizes_match_exact_ot():
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal(37), rng.standard_normal(23) + 0.7
    # Exact 1-d OT via the LP solver (W2^2) and scipy (W1); the quantile formula is exact, so
    # only round-off separates them.
    w2_squared = ot.emd2(ot.unif(37), ot.unif(23), (x[:, None] - y[None, :]) ** 2)
    assert sliced_wasserstein(x, y, projections=[[1.0]]) ** 2 == pytest.approx(w2_squared, 1e-10)
    w1 = stats.wasserstein_distance(x, y)
    assert sliced_wasserstein(x, y, projections=[[1.0]], p=1) == pytest.approx(w1, rel=1e-10)


def test_sliced_matches_pot_with_same_projections():
    rng = np.random.default_rng(18)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((55, 3)) + 1
    theta = rng.standard_normal((30, 3))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    pot = ot.sliced_wasserstein_distance(x, y, projections=theta.T, p=2)
    assert sliced_wasserstein(x, y, projections=theta) == pytest.approx(float(pot), rel=1e-9)


def test_sliced_gaussians_shift():
    d, n, n_proj = 5, 2000, 400
    mu = np.array([2.0, -1.0, 0.5, 0.0, 1.0])
    rng = np.random.default_rng(19)
    theta = rng.standard_normal((n_proj, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    x = rng.standard_normal((n, d))
    # Derivation: theta.X ~ N(0, 1) and theta.Y ~ N(theta.mu, 1), so W2^2 of the projections is
    # (theta.mu)^2, and E_theta (theta.mu)^2 = |mu|^2 E theta_1^2 = |mu|^2 / d.
    # (1) Coupled samples y = x + mu: sorting commutes with the shift, so each projected W2^2 is
    #     exactly (theta.mu)^2 and SW2^2 is the Monte-Carlo mean of (theta.mu)^2.
    coupled = sliced_wasserstein(x, x + mu, projections=theta)
    mc_mean = np.mean((theta @ mu) ** 2)
    assert coupled**2 == pytest.approx(mc_mean, rel=1e-10)
    # Var (theta_1^2) = 3/(d(d+2)) - 1/d^2 = 2(d-1)/(d^2(d+2)), so the Monte-Carlo sd of the mean
    # is |mu|^2 sqrt(2(d-1)/(d^2(d+2) L)); 5 sd.
    sd = mu @ mu * np.sqrt(2 * (d - 1) / (d**2 * (d + 2) * n_proj))
    assert abs(mc_mean - mu @ mu / d) < 5 * sd
    # (2) Independent y ~ N(mu, I): for fixed directions SW2 is a metric, and translating both
    #     arguments preserves it, so |SW2(x, y) - SW2(x, x + mu)| <= SW2(x + mu, y)
    #     = SW2(x, y - mu), the sliced distance between two samples of N(0, I), which is
    #     O(sqrt(log log n / n)).
    y = rng.standard_normal((n, d)) + mu
    independent = sliced_wasserstein(x, y, projections=theta)
    sampling = sliced_wasserstein(x, y - mu, projections=theta)
    assert abs(independent - coupled) <= sampling + 1e-12
    assert sampling < 0.1 * np.sqrt(mu @ mu / d)  # not vacuous
    # Default random directions, seeded: deterministic, and the same two bounds apply to them
    # (|a^2 - b^2| = |a - b| (a + b) for the Monte-Carlo part).
    value = sliced_wasserstein(x, y, n_projections=n_proj, seed=0)
    assert value == sliced_wasserstein(x, y, n_projections=n_proj, seed=0)
    assert value != sliced_wasserstein(x, y, n_projections=n_proj, seed=1)
    coupled0 = sliced_wasserstein(x, x + mu, n_projections=n_proj, seed=0)
    sampling0 = sliced_wasserstein(x, y - mu, n_projections=n_proj, seed=0)
    assert abs(value - coupled0) <= sampling0 + 1e-12
    assert abs(coupled0**2 - mu @ mu / d) < 5 * sd
    assert abs(value**2 - mu @ mu / d) < 5 * sd + sampling0 * (value + coupled0)


# --------------------------------------------------------------------------------------------
# Sinkhorn divergence
# --------------------------------------------------------------------------------------------


def test_sinkhorn_point_masses_exact_for_all_epsilon():
    # Between n copies of a and m copies of b every coupling costs |a-b|^2 and the entropic term
    # is minimised (0) by the product coupling; the self terms have zero cost. So S = |a-b|^2
    # for every epsilon, including tiny ones where exp(-C/eps) underflows (log domain needed).
    a, b = np.array([0.0, 0.0]), np.array([3.0, 4.0])
    x, y = np.tile(a, (4, 1)), np.tile(b, (6, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow / invalid value
        for epsilon in (1e-4, 1e-2, 1.0, 10.0):
            assert sinkhorn_divergence(x, y, epsilon=epsilon) == pytest.approx(25.0, rel=1e-9)


def test_sinkhorn_nonnegative_zero_and_symmetric():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((30, 2))
    for seed in range(2):
        y = np.random.default_rng(100 + seed).standard_normal((25, 2)) * 1.2 + 0.2
        for epsilon in (0.1, 1.0):
            # The public value is clipped at 0; check the raw difference (Feydy et al. 2019,
            # Thm 1: S_eps >= 0 for the Gaussian-kernel cost |a-b|^2). At marginal error
            # <= 1e-9 the value is accurate to ~1e-9 * max cost, far below 1e-7.
            raw = _debiased_sinkhorn(x, y, epsilon, "entropic", 100_000, 1e-9)
            assert raw >= -1e-7
            assert sinkhorn_divergence(x, y, epsilon=epsilon) == pytest.approx(raw, abs=1e-4)
    # Symmetry: OT_eps(x, y) = OT_eps(y, x) (transposed problem); both solved to 1e-9.
    value = sinkhorn_divergence(x, y, epsilon=1.0, tol=1e-9)
    assert sinkhorn_divergence(y, x, epsilon=1.0, tol=1e-9) == pytest.approx(value, abs=1e-7)
    # Identical sets: the cross term (POT) and the self terms (symmetric updates) solve the same
    # strictly convex problem to marginal error < 1e-9, so S ~ 0 up to ~1e-9 * max cost.
    raw = _debiased_sinkhorn(x, x, 1.0, "entropic", 100_000, 1e-9)
    assert raw == pytest.approx(0.0, abs=1e-7)
    # Translation invariance (the cost matrices only see differences; round-off of the shift).
    shifted = sinkhorn_divergence(x + 10, y + 10, epsilon=1.0, tol=1e-9)
    assert shifted == pytest.approx(value, rel=1e-7)


def test_sinkhorn_approaches_w2_as_epsilon_vanishes():
    rng = np.random.default_rng(21)
    n, m = 8, 10
    x = 0.3 * rng.standard_normal((n, 2))
    y = 0.3 * rng.standard_normal((m, 2)) + np.array([3.0, 0.0])
    w2_squared = ot.emd2(ot.unif(n), ot.unif(m), ot.dist(x, y))
    # With OT_eps = <P, C> + eps KL(P | a x b): 0 <= OT_eps(x, y) - W2^2 <= eps KL(P0 | a x b)
    # <= eps log min(n, m) (P0 an optimal plan; KL(P|a x b) = H(a) + H(b) - H(P) <= min(H(a),
    # H(b))), and 0 <= OT_eps(x, x) <= eps log n (identity plan). Hence
    # -eps/2 (log n + log m) <= S_eps - W2^2 <= eps log min(n, m); 1e-6 covers the Sinkhorn
    # marginal tolerance 1e-9 times the cost scale (~10).
    for epsilon in (1.0, 0.1, 0.01):
        value = sinkhorn_divergence(x, y, epsilon=epsilon, tol=1e-9)
        assert -epsilon / 2 * np.log(n * m) - 1e-6 <= value - w2_squared
        assert value - w2_squared <= epsilon * np.log(min(n, m)) + 1e-6


def test_sinkhorn_sharp_matches_pot():
    rng = np.random.default_rng(22)
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((20, 2)) + 1
    # Same three problems (POT also uses <P, C> only); both solved to marginal error 1e-9.
    pot = ot.bregman.empirical_sinkhorn_divergence(x, y, 1.0)
    assert sinkhorn_divergence(x, y, epsilon=1.0, loss="sharp", tol=1e-9) == pytest.approx(
        float(pot), rel=1e-6
    )


# --------------------------------------------------------------------------------------------
# AnnData helper and input validation
# --------------------------------------------------------------------------------------------


def test_points_from_anndata():
    rng = np.random.default_rng(23)
    adata = ad.AnnData(X=sparse.csr_matrix(rng.poisson(1.0, (10, 4)).astype(np.float32)))
    adata.obsm["X_pca"] = rng.standard_normal((10, 3))
    mask = np.arange(10) % 2 == 0
    assert np.array_equal(points(adata), adata.obsm["X_pca"])
    assert np.array_equal(points(adata, mask=mask), adata.obsm["X_pca"][mask])
    assert np.array_equal(points(adata, mask=np.array([1, 3])), adata.obsm["X_pca"][[1, 3]])
    dense = points(adata, use_rep="X", mask=mask)
    assert dense.dtype == np.float64
    assert np.array_equal(dense, adata.X.toarray()[mask])
    with pytest.raises(ValueError, match="obsm"):
        points(adata, use_rep="X_umap")
    with pytest.raises(ValueError, match="shape"):
        points(adata, mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        points(adata, mask=np.zeros(10, dtype=bool))
    # Usable directly in a metric.
    assert energy_distance(points(adata, mask=mask), points(adata, mask=~mask)) >= 0


SAMPLE_METRICS = [energy_distance, mmd, sliced_wasserstein, sinkhorn_divergence]


@pytest.mark.parametrize("metric", SAMPLE_METRICS)
def test_sample_metrics_validate_inputs(metric):
    good = np.zeros((3, 2)) + np.arange(3)[:, None]
    with pytest.raises(ValueError, match="same number of dimensions"):
        metric(good, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metric(good, np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        metric(good, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="shape"):
        metric(good, np.zeros((2, 2, 2)))


def test_gaussian_validation():
    eye = np.eye(2)
    with pytest.raises(ValueError, match="Dimensions do not match"):
        gaussian_w2(np.zeros(3), eye, np.zeros(2), eye)
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_w2(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), eye)
    with pytest.raises(ValueError, match="positive semi-definite"):
        bures_squared(np.diag([1.0, -0.1]), eye)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_w2(np.array([0.0, np.nan]), eye, np.zeros(2), eye)
    with pytest.raises(ValueError, match="square"):
        bures_squared(np.ones((2, 3)), eye)
    with pytest.raises(ValueError, match="more than ddof"):
        gaussian_fit_error(np.zeros((1, 2)), np.zeros(2), eye)
    with pytest.raises(ValueError, match="sum to 1"):
        gmm_w2_squared([0.5], np.zeros((1, 2)), eye[None], [1.0], np.zeros((1, 2)), eye[None])
    with pytest.raises(ValueError, match="covs1"):
        gmm_w2_squared([1.0], np.zeros((1, 2)), eye, [1.0], np.zeros((1, 2)), eye[None])
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(np.zeros((3, 1)), np.ones((3, 1)), bandwidth=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        mmd(np.zeros((1, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_divergence(np.zeros((3, 1)), np.ones((3, 1)), epsilon=-1.0)


def test_public_api():
    assert set(metrics.__all__) == {
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
    }


# --------------------------------------------------------------------------------------------
# Mutual information (KSG)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.9])
def test_mutual_information_of_correlated_gaussians(rho):
    """I = -log(1 - rho^2) / 2 for a bivariate Gaussian.

    Tolerance: the sampling sd of a mutual-information estimate from N points is about
    sqrt(Var[i(X, Y)] / N) with i the pointwise information, and Var[i] = rho^2 for a bivariate
    Gaussian; the nearest-neighbour step adds noise of the same order, so a floor of 0.1 on
    the variance covers rho -> 0 (KSG 2004 report sd ~ 0.01 at N ~ 1,000 there). 5 sd.
    """
    n = 2000
    rng = np.random.default_rng(42)
    x = rng.normal(size=n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)
    truth = -0.5 * np.log(1 - rho**2)
    assert mutual_information(x, y) == pytest.approx(truth, abs=5 * np.sqrt(max(rho**2, 0.1) / n))


def test_mutual_information_multivariate():
    """Two independent coordinates with rho^2 = 1/2 each: I = log 2; Var[i] = 1."""
    n = 2000
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 2))
    y = x + rng.normal(size=(n, 2))
    assert mutual_information(x, y, k=3) == pytest.approx(np.log(2), abs=5 * np.sqrt(1.0 / n))


def test_mutual_information_symmetric_and_order_free():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    y = x[:, :1] ** 2 + 0.3 * rng.normal(size=(300, 1))
    value = mutual_information(x, y)
    assert mutual_information(y, x) == value
    order = rng.permutation(300)
    assert mutual_information(x[order], y[order]) == pytest.approx(value, abs=1e-12)
    # a strong non-linear dependence is detected: far above the independent case's noise
    assert value > 0.3


def test_mutual_information_errors():
    with pytest.raises(ValueError, match="same number of rows"):
        mutual_information(np.zeros((5, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="k must be"):
        mutual_information(np.arange(5.0), np.arange(5.0), k=5)
    with pytest.raises(ValueError, match="k must be"):
        mutual_information(np.arange(5.0), np.arange(5.0), k=0)

"""Closed-form distances between Gaussians and between Gaussian mixtures."""

from __future__ import annotations

from typing import Literal

import numpy as np
import ot

from ._validation import as_covariances, as_mean, as_points, as_weights


def sqrtm_psd(cov) -> np.ndarray:
    """Square root of symmetric positive semi-definite matrices.

    Uses the symmetric eigendecomposition ``S = V diag(l) V^T`` and returns
    ``V diag(sqrt(max(l, 0))) V^T``: eigenvalues that round-off made slightly negative are
    clipped to zero, so rank-deficient matrices are fine.

    Parameters
    ----------
    cov
        Array of shape ``(..., d, d)``; only its symmetric part ``(S + S^T) / 2`` is used.

    Returns
    -------
    numpy.ndarray
        Symmetric PSD array of the same shape whose square is ``S`` (up to round-off).
    """
    cov = np.asarray(cov, dtype=np.float64)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * roots[..., None, :]) @ np.swapaxes(eigenvectors, -1, -2)


# POT has the Bures distance (ot.gaussian.bures_distance), but its matrix square root takes
# sqrt of the eigenvalues without clipping: the round-off negative eigenvalues of a
# rank-deficient covariance (a set with fewer points than dimensions) give NaN, then a
# LinAlgError. These functions clip them (tests/test_metrics.py::test_bures_rank_deficient).
def _trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    """``tr (S2^{1/2} S1 S2^{1/2})^{1/2}`` for broadcastable stacks of validated covariances."""
    root2 = sqrtm_psd(cov2)
    product = root2 @ cov1 @ root2
    product = 0.5 * (product + np.swapaxes(product, -1, -2))
    eigenvalues = np.linalg.eigvalsh(product)
    return np.sqrt(np.clip(eigenvalues, 0.0, None)).sum(axis=-1)


def _bures_squared(cov1: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    """Squared Bures distance for broadcastable stacks of validated covariances."""
    traces = np.trace(cov1, axis1=-2, axis2=-1) + np.trace(cov2, axis1=-2, axis2=-1)
    # Clip the round-off of the cancellation tr S1 + tr S2 - 2 tr(...) when S1 ~ S2.
    return np.maximum(traces - 2.0 * _trace_sqrt_product(cov1, cov2), 0.0)


def _check_same_dim(*arrays_and_names) -> int:
    dims = {name: array.shape[-1] for array, name in arrays_and_names}
    if len(set(dims.values())) != 1:
        raise ValueError(f"Dimensions do not match: {dims}.")
    return next(iter(dims.values()))


def bures_squared(cov1, cov2) -> float:
    r"""Squared Bures distance between two covariance matrices.

    .. math::

        \mathcal{B}^2(\Sigma_1, \Sigma_2) = \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
        - 2 \operatorname{tr}\big(\Sigma_2^{1/2}\Sigma_1\Sigma_2^{1/2}\big)^{1/2}.

    Matrix square roots come from symmetric eigendecompositions with tiny negative eigenvalues
    clipped to zero (see :func:`sqrtm_psd`), and the result is clipped at 0.

    Parameters
    ----------
    cov1, cov2
        Symmetric positive semi-definite matrices of shape ``(d, d)`` (a scalar is a variance).

    Returns
    -------
    float
        The squared Bures distance (>= 0).

    Raises
    ------
    ValueError
        If a matrix is not square, symmetric, PSD or finite, or the dimensions differ.
    """
    cov1 = as_covariances(cov1, "cov1")
    cov2 = as_covariances(cov2, "cov2")
    if cov1.ndim != 2 or cov2.ndim != 2:
        raise ValueError("bures_squared expects single (d, d) matrices.")
    _check_same_dim((cov1, "cov1"), (cov2, "cov2"))
    return float(_bures_squared(cov1, cov2))


def gaussian_w2(mean1, cov1, mean2, cov2, squared: bool = True) -> float:
    r"""2-Wasserstein distance between two Gaussian distributions.

    .. math::

        W_2^2\big(\mathcal{N}(m_1, \Sigma_1), \mathcal{N}(m_2, \Sigma_2)\big)
        = \lVert m_1 - m_2 \rVert_2^2 + \mathcal{B}^2(\Sigma_1, \Sigma_2),

    with :math:`\mathcal{B}^2` the squared Bures distance (:func:`bures_squared`).

    Parameters
    ----------
    mean1, mean2
        Means, shape ``(d,)`` (a scalar is a mean in one dimension).
    cov1, cov2
        Covariances, shape ``(d, d)`` (a scalar is a variance), symmetric PSD.
    squared
        Return :math:`W_2^2` (default) or :math:`W_2`.

    Returns
    -------
    float
        :math:`W_2^2` if ``squared`` else :math:`W_2`.

    Raises
    ------
    ValueError
        On mismatched dimensions or invalid means/covariances.
    """
    mean1, mean2 = as_mean(mean1, "mean1"), as_mean(mean2, "mean2")
    cov1, cov2 = as_covariances(cov1, "cov1"), as_covariances(cov2, "cov2")
    if cov1.ndim != 2 or cov2.ndim != 2:
        raise ValueError("gaussian_w2 expects single (d, d) covariances.")
    _check_same_dim((mean1, "mean1"), (cov1, "cov1"), (mean2, "mean2"), (cov2, "cov2"))
    value = float(np.sum((mean1 - mean2) ** 2) + _bures_squared(cov1, cov2))
    return value if squared else float(np.sqrt(value))


def gaussian_geodesic(mean1, cov1, mean2, cov2, t) -> tuple[np.ndarray, np.ndarray]:
    r"""Point at time ``t`` on the 2-Wasserstein geodesic between two Gaussians.

    McCann's displacement interpolation: with the optimal transport map
    :math:`T(x) = m_2 + A (x - m_1)`,
    :math:`A = \Sigma_1^{-1/2} (\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2} \Sigma_1^{-1/2}`,
    the interpolant is :math:`((1 - t)\,\mathrm{id} + t\,T)_\# \mathcal{N}(m_1, \Sigma_1)
    = \mathcal{N}(m_t, C_t \Sigma_1 C_t)` with :math:`m_t = (1 - t) m_1 + t m_2` and
    :math:`C_t = (1 - t) I + t A`. It moves at constant speed:
    :math:`W_2(\mathcal{N}_0, \mathcal{N}_t) = t\, W_2(\mathcal{N}_0, \mathcal{N}_1)`.

    Parameters
    ----------
    mean1, cov1
        Start, at ``t = 0``; ``cov1`` must be positive definite.
    mean2, cov2
        End, at ``t = 1``; ``cov2`` symmetric PSD.
    t
        Time in ``[0, 1]``.

    Returns
    -------
    tuple of numpy.ndarray
        Mean ``(d,)`` and covariance ``(d, d)`` of the interpolant.

    Raises
    ------
    ValueError
        On mismatched dimensions, ``t`` outside ``[0, 1]`` or a singular ``cov1``.
    """
    mean1, mean2 = as_mean(mean1, "mean1"), as_mean(mean2, "mean2")
    cov1, cov2 = as_covariances(cov1, "cov1"), as_covariances(cov2, "cov2")
    if cov1.ndim != 2 or cov2.ndim != 2:
        raise ValueError("gaussian_geodesic expects single (d, d) covariances.")
    _check_same_dim((mean1, "mean1"), (cov1, "cov1"), (mean2, "mean2"), (cov2, "cov2"))
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}.")
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (cov1 + cov1.T))
    if eigenvalues.min() <= 1e-12 * max(eigenvalues.max(), 1.0):
        raise ValueError("cov1 must be positive definite for the transport map to exist.")
    root1 = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
    inv_root1 = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
    transport = inv_root1 @ sqrtm_psd(root1 @ cov2 @ root1) @ inv_root1
    step = (1.0 - t) * np.eye(mean1.shape[0]) + t * transport
    cov = step @ cov1 @ step.T
    return (1.0 - t) * mean1 + t * mean2, 0.5 * (cov + cov.T)


def gaussian_fit_error(points, mean, cov, ddof: int = 1) -> float:
    r"""How well a Gaussian ``N(mean, cov)`` matches a point set (the GDE paper's "Normal" metric).

    .. math::

        \lVert m - \hat m \rVert_2 + \mathcal{B}^2(\Sigma, \hat\Sigma),

    where :math:`\hat m` is the sample mean of ``points``, :math:`\hat\Sigma` their sample
    covariance with ``ddof`` degrees of freedom (``ddof=1``: divide by ``n - 1``, as
    :func:`numpy.cov`), and :math:`\mathcal{B}^2` the squared Bures distance. Note that the mean
    term is the plain Euclidean norm, *not* its square, while the covariance term is the
    *squared* Bures distance; the sum is therefore not :math:`W_2^2` (see :func:`gaussian_w2`).

    Parameters
    ----------
    points
        Samples, shape ``(n, d)`` (a 1-d array is ``n`` points in one dimension), ``n > ddof``.
    mean
        Mean of the Gaussian, shape ``(d,)``.
    cov
        Covariance of the Gaussian, shape ``(d, d)``, symmetric PSD.
    ddof
        Delta degrees of freedom of the sample covariance.

    Returns
    -------
    float
        The error (>= 0).

    Raises
    ------
    ValueError
        On invalid inputs, mismatched dimensions, or too few points for the sample covariance.
    """
    x = as_points(points, "points")
    mean = as_mean(mean, "mean")
    cov = as_covariances(cov, "cov")
    if cov.ndim != 2:
        raise ValueError("gaussian_fit_error expects a single (d, d) covariance.")
    _check_same_dim((x, "points"), (mean, "mean"), (cov, "cov"))
    n = x.shape[0]
    if n <= ddof:
        raise ValueError(f"Need more than ddof={ddof} points for a sample covariance, got {n}.")
    sample_mean = x.mean(axis=0)
    centred = x - sample_mean
    sample_cov = centred.T @ centred / (n - ddof)
    return float(np.linalg.norm(mean - sample_mean) + _bures_squared(cov, sample_cov))


def _as_mixture(weights, means, covs, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means = as_points(means, f"means{which}")  # (k, d), finite, non-empty
    covs = as_covariances(covs, f"covs{which}")
    k, d = means.shape
    if covs.shape != (k, d, d):
        raise ValueError(f"covs{which} must have shape ({k}, {d}, {d}), got {covs.shape}.")
    return as_weights(weights, k, f"weights{which}"), means, covs


def gaussian_w2_matrix(means1, covs1, means2, covs2) -> np.ndarray:
    r"""Pairwise squared 2-Wasserstein distances between two families of Gaussians.

    Parameters
    ----------
    means1
        Shape ``(k1, d)``.
    covs1
        Shape ``(k1, d, d)``.
    means2
        Shape ``(k2, d)``.
    covs2
        Shape ``(k2, d, d)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(k1, k2)``; entry ``(i, j)`` is
        :math:`W_2^2(\mathcal{N}(m^1_i, \Sigma^1_i), \mathcal{N}(m^2_j, \Sigma^2_j))`.
    """
    means1, means2 = as_points(means1, "means1"), as_points(means2, "means2")
    covs1, covs2 = as_covariances(covs1, "covs1"), as_covariances(covs2, "covs2")
    if covs1.shape != means1.shape + means1.shape[-1:]:
        raise ValueError(f"covs1 must have shape {means1.shape + means1.shape[-1:]}.")
    if covs2.shape != means2.shape + means2.shape[-1:]:
        raise ValueError(f"covs2 must have shape {means2.shape + means2.shape[-1:]}.")
    _check_same_dim((means1, "means1"), (means2, "means2"))
    return _gaussian_w2_matrix(means1, covs1, means2, covs2)


def _gaussian_w2_matrix(means1, covs1, means2, covs2) -> np.ndarray:
    mean_term = ((means1[:, None, :] - means2[None, :, :]) ** 2).sum(axis=-1)
    return mean_term + _bures_squared(covs1[:, None], covs2[None, :])


def gmm_w2_squared(
    weights1,
    means1,
    covs1,
    weights2,
    means2,
    covs2,
    method: Literal["auto", "pot", "emd"] = "auto",
) -> float:
    r"""Squared mixture-Wasserstein distance :math:`MW_2^2` between two Gaussian mixtures.

    Delon & Desolneux (2020) restrict optimal transport to couplings that are themselves
    Gaussian mixtures; the result is the discrete OT problem between the components,

    .. math::

        MW_2^2 = \min_{\pi \in \Pi(w^1, w^2)} \sum_{i,j} \pi_{ij}\,
        W_2^2\big(\mathcal{N}(m^1_i, \Sigma^1_i), \mathcal{N}(m^2_j, \Sigma^2_j)\big).

    Parameters
    ----------
    weights1, means1, covs1
        First mixture: weights ``(k1,)`` (non-negative, summing to 1), means ``(k1, d)``,
        covariances ``(k1, d, d)``.
    weights2, means2, covs2
        Second mixture, likewise with ``k2`` components.
    method
        ``"pot"``: POT's :func:`ot.gmm.gmm_ot_loss`. ``"emd"``: :func:`ot.emd2` on the cost
        matrix from :func:`gaussian_w2_matrix` (eigenvalue-clipped square roots).
        ``"auto"`` (default): ``"pot"`` when the installed POT has ``ot.gmm.gmm_ot_loss`` and
        it returns a finite value, otherwise ``"emd"``; POT's matrix square root does not clip
        negative round-off eigenvalues, so rank-deficient covariances can make it return NaN
        or fail.

    Returns
    -------
    float
        :math:`MW_2^2` (>= 0).
    """
    if method not in ("auto", "pot", "emd"):
        raise ValueError(f"method must be 'auto', 'pot' or 'emd', got {method!r}.")
    w1, m1, c1 = _as_mixture(weights1, means1, covs1, "1")
    w2, m2, c2 = _as_mixture(weights2, means2, covs2, "2")
    _check_same_dim((m1, "means1"), (m2, "means2"))
    pot_loss = getattr(getattr(ot, "gmm", None), "gmm_ot_loss", None)
    if method == "pot" and pot_loss is None:
        raise ValueError(f"POT {ot.__version__} has no ot.gmm.gmm_ot_loss; use method='emd'.")
    if method == "pot":
        return max(float(pot_loss(m1, m2, c1, c2, w1, w2)), 0.0)
    if pot_loss is not None:  # method == "auto"
        try:
            with np.errstate(invalid="ignore"):
                value = float(pot_loss(m1, m2, c1, c2, w1, w2))
        except np.linalg.LinAlgError:  # NaN from an unclipped sqrt reached an eigensolver
            value = np.nan
        if np.isfinite(value):
            return max(value, 0.0)
    cost = _gaussian_w2_matrix(m1, c1, m2, c2)
    return max(float(ot.emd2(w1, w2, cost)), 0.0)

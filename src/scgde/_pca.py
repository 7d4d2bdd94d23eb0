"""Principal axes of a dense matrix: the one PCA behind the plots, the perturbation scores and
the co-expression features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Above this smaller dimension, few components are found by ARPACK instead of a full SVD.
_FULL_SVD_MAX = 100


@dataclass(frozen=True)
class PrincipalAxes:
    """Mean and top principal axes of the rows of a matrix (no scaling).

    Signs are fixed (the largest-magnitude loading of each axis is positive), so results are
    deterministic. Fewer than ``n_components`` axes are kept when the data have fewer.
    """

    #: ``(d,)`` mean of the rows.
    mean: np.ndarray
    #: ``(k, d)`` orthonormal axes, by decreasing variance.
    axes: np.ndarray
    #: ``(k,)`` singular values of the centred rows.
    singular_values: np.ndarray
    #: Sum of squares of the centred rows (the total variance times ``n - 1``).
    total: float

    @classmethod
    def fit(cls, x, n_components: int) -> PrincipalAxes:
        """Fit to the rows of ``x`` (``n × d``, dense)."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        k = max(0, min(int(n_components), *centred.shape))
        if 0 < k < min(centred.shape) - 1 and min(centred.shape) > _FULL_SVD_MAX:
            from scipy.sparse.linalg import svds

            v0 = np.full(min(centred.shape), 1.0 / np.sqrt(min(centred.shape)))
            _, singular, vt = svds(centred, k=k, v0=v0)
            order = np.argsort(singular)[::-1]
            singular, vt = singular[order], vt[order]
        else:
            _, singular, vt = np.linalg.svd(centred, full_matrices=False)
            singular, vt = singular[:k], vt[:k]
        signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)]) if k else np.ones(0)
        signs[signs == 0] = 1.0
        total = float(np.einsum("ij,ij->", centred, centred))
        return cls(mean, vt * signs[:, None], singular, total)

    def transform(self, x) -> np.ndarray:
        """Scores of the rows of ``x`` on the axes, ``(n, k)``."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.axes.T

    @property
    def explained_ratio(self) -> np.ndarray:
        """Fraction of the total variance along each axis."""
        if self.total <= 0:
            return np.zeros_like(self.singular_values)
        return self.singular_values**2 / self.total

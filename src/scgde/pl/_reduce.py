"""Two-dimensional views of a few points (group embeddings, cells): PCA."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCA2:
    """A principal component analysis with two components, fitted by SVD.

    Signs are fixed (largest |loading| of each component positive) so plots are reproducible.
    """

    mean: np.ndarray
    components: np.ndarray  # (2, d)
    explained_ratio: np.ndarray  # (2,)

    @classmethod
    def fit(cls, x: np.ndarray) -> PCA2:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        if min(centred.shape) > 100:  # only two components are needed: ARPACK
            from scipy.sparse.linalg import svds

            v0 = np.full(min(centred.shape), 1.0 / np.sqrt(min(centred.shape)))
            _, singular, vt = svds(centred, k=2, v0=v0)
            descending = np.argsort(singular)[::-1]
            singular, vt = singular[descending], vt[descending]
        else:
            _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        components = np.zeros((2, x.shape[1]))
        ratio = np.zeros(2)
        k = min(2, vt.shape[0])
        components[:k] = vt[:k]
        total = float(np.einsum("ij,ij->", centred, centred))
        if total > 0:
            ratio[:k] = singular[:k] ** 2 / total
        for row in components[:k]:
            if row[np.argmax(np.abs(row))] < 0:
                row *= -1
        return cls(mean, components, ratio)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def axis_labels(self) -> tuple[str, str]:
        return tuple(f"PC{i + 1} ({100 * r:.0f}%)" for i, r in enumerate(self.explained_ratio))

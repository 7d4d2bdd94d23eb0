"""Two-dimensional PCA views of a few points (group embeddings, cells)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._pca import PrincipalAxes


def pca_2d(x) -> PrincipalAxes:
    """:class:`~scgde._pca.PrincipalAxes` with exactly two axes: zero axes (scores 0) where the
    data have fewer dimensions or points."""
    pca = PrincipalAxes.fit(x, 2)
    missing = 2 - pca.axes.shape[0]
    if missing:
        zeros = np.zeros((missing, pca.mean.shape[0]))
        pca = replace(
            pca,
            axes=np.vstack([pca.axes, zeros]),
            singular_values=np.concatenate([pca.singular_values, np.zeros(missing)]),
        )
    return pca


def axis_labels(pca: PrincipalAxes) -> tuple[str, str]:
    """``"PC1 (42%)"``, ``"PC2 (17%)"``: the axes and their share of the variance."""
    return tuple(f"PC{i + 1} ({100 * r:.0f}%)" for i, r in enumerate(pca.explained_ratio[:2]))

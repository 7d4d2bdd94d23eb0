"""Tools on distribution embeddings and perturbation predictions, scanpy style.

:func:`group_distances`
    Group × group distance matrix, between the groups' embeddings (``"euclidean"``) or between
    their cells (``"energy"``), written to ``adata.uns``.
:func:`pseudobulk_shifts`, :func:`score_perturbations`, :func:`summarize_scores`
    Pseudobulk shifts of perturbations against their context's control, and scores of
    predicted against observed cells (R² and MSE of the shift over all and the top DE genes,
    energy distance).
:func:`mean_shift_baseline`, :func:`ridge_baseline`
    Baseline predictions of held-out perturbations, in the same format as the model's.
"""

from ._distances import group_distances
from ._perturbation_baselines import mean_shift_baseline, ridge_baseline
from ._perturbation_scores import pseudobulk_shifts, score_perturbations, summarize_scores

__all__ = [
    "group_distances",
    "mean_shift_baseline",
    "pseudobulk_shifts",
    "ridge_baseline",
    "score_perturbations",
    "summarize_scores",
]

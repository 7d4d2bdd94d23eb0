"""Plots of distribution embeddings, scanpy style (matplotlib).

Every function accepts ``ax=`` (draw into existing Axes), ``show=`` (default: show unless
``ax`` is given; never with a non-interactive backend such as Agg) and ``save=`` (a file path
whose extension sets the format, written atomically), and returns its Axes: one, or a dict of
them for multi-panel plots. Inputs are never modified.

:func:`group_embedding`
    One dot per group on a UMAP or PCA of the embeddings, coloured by a group-level label.
:func:`group_distance_heatmap`
    Group × group distances (:func:`scgde.tl.group_distances`), hierarchically clustered.
:func:`generated_vs_real`
    Generated against real cells: shared PCA, per-gene means and variances.
:func:`interpolation_path`
    A straight path between two groups' embeddings and the cells decoded along it.
:func:`training_history`
    Training and validation curves from ``model.history``.
"""

from ._embedding import group_embedding
from ._generated import generated_vs_real
from ._heatmap import group_distance_heatmap
from ._history import training_history
from ._interpolation import interpolation_path

__all__ = [
    "generated_vs_real",
    "group_distance_heatmap",
    "group_embedding",
    "interpolation_path",
    "training_history",
]

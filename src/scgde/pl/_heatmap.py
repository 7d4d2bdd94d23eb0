"""Group × group distance heatmap with hierarchical clustering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, ListedColormap
from mpl_toolkits.axes_grid1 import make_axes_locatable
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from .._docs import SHOW_SAVE, doc_params
from ._colors import NA_COLOR, as_categorical, categorical_legend, category_colors
from ._figure import check_save, finish

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "centroid", "median", "ward")


@doc_params(show_save=SHOW_SAVE)
def group_distance_heatmap(
    distances: pd.DataFrame,
    labels: pd.Series | Mapping | Sequence | None = None,
    cluster: bool = True,
    *,
    method: str = "average",
    dendrogram: bool = True,
    optimal_ordering: bool = False,
    palette: str | Colormap | Sequence | Mapping | None = None,
    cmap: str | Colormap = "viridis",
    show_names: bool | None = None,
    label_title: str | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> dict[str, Axes | None]:
    """Heatmap of a group × group distance matrix, ordered by hierarchical clustering.

    The groups are clustered with :func:`scipy.cluster.hierarchy.linkage` on the condensed
    matrix (``method="average"`` by default, valid for any distance) and shown in the order of
    the dendrogram's leaves; the dendrogram is drawn above the heatmap. A group-level label
    (e.g. the condition of each sample) is drawn as a colour strip left of the rows and colours
    the group names.

    Parameters
    ----------
    distances
        Square DataFrame, index and columns the same group names in the same order, symmetric,
        finite, non-negative, e.g. from :func:`scgde.tl.group_distances`.
    labels
        Label of every group: a Series or mapping indexed by group name (e.g.
        ``groups.obs["condition"]`` of :meth:`~scgde.model.GDE.get_group_adata`) or a
        sequence in the order of ``distances.index``. Missing groups are drawn grey.
    cluster
        Order by clustering; ``False`` keeps the order of ``distances`` (and draws no
        dendrogram).
    method
        Linkage method (``"ward"``, ``"centroid"`` and ``"median"`` assume Euclidean
        distances).
    dendrogram
        Draw the dendrogram above the heatmap.
    optimal_ordering
        Passed to :func:`~scipy.cluster.hierarchy.linkage` (slower, nicer leaf order).
    palette
        Colours of the label categories (as in :func:`group_embedding`).
    cmap
        Colormap of the distances.
    show_names
        Write the group names on the axes; default when there are at most 60 groups.
    label_title, title
        Titles of the label legend and of the plot.
    ax
        Axes for the heatmap; the dendrogram, label strip and colour bar are appended beside
        it.
    {show_save}

    Returns
    -------
    dict
        ``"heatmap"``, ``"dendrogram"``, ``"labels"`` (the colour strip) and ``"colorbar"``
        Axes (``None`` for parts not drawn). The heatmap's row order is
        ``heatmap.get_yticklabels()`` / the image in ``heatmap.images[0]``.

    Examples
    --------
    >>> d = scgde.tl.group_distances(adata)
    >>> groups = model.get_group_adata()
    >>> scgde.pl.group_distance_heatmap(d, labels=groups.obs["condition"])
    """
    save_path = check_save(save)
    matrix, names = _check_distances(distances)
    label_values = _labels(labels, names)
    if method not in LINKAGE_METHODS:
        raise ValueError(f"Unknown linkage method {method!r}; choose one of {LINKAGE_METHODS}.")
    n = len(names)
    linkage = None
    order = np.arange(n)
    if cluster and n > 1:
        linkage = hierarchy.linkage(
            squareform(matrix, checks=False), method=method, optimal_ordering=optimal_ordering
        )
        order = np.asarray(hierarchy.leaves_list(linkage))
    if show_names is None:
        show_names = n <= 60

    if ax is None:
        side = float(np.clip(0.18 * n + 3, 4, 12))
        _, heat = plt.subplots(figsize=(side + 1.5, side))
    else:
        heat = ax
    divider = make_axes_locatable(heat)
    image = heat.imshow(
        matrix[np.ix_(order, order)], cmap=cmap, aspect="auto", interpolation="nearest"
    )
    ordered = [names[i] for i in order]
    heat.set_xticks(np.arange(n), ordered if show_names else [""] * n, rotation=90)
    heat.set_yticks(np.arange(n), ordered if show_names else [""] * n)
    if not show_names:
        heat.tick_params(length=0)
    colorbar_ax = divider.append_axes("right", size=0.15, pad=0.1)
    heat.figure.colorbar(image, cax=colorbar_ax, label="distance")

    strip = None
    if label_values is not None:
        cats = as_categorical(label_values)
        colors = category_colors(cats.categories, palette)
        values = np.asarray(cats, dtype=object)[order]
        point_colors = [NA_COLOR if pd.isna(v) else colors[v] for v in values]
        strip = divider.append_axes("left", size=0.18, pad=0.05)
        strip.imshow(
            np.arange(n)[:, None],
            cmap=ListedColormap(point_colors),
            aspect="auto",
            interpolation="nearest",
        )
        strip.set_xticks([])
        strip.set_yticks(np.arange(n), ordered if show_names else [""] * n)
        strip.tick_params(length=0)
        heat.set_yticks(np.arange(n), [""] * n)
        heat.tick_params(axis="y", length=0)
        if show_names:
            for tick, color in zip(strip.get_yticklabels(), point_colors, strict=True):
                tick.set_color(color)
        present = {v for v in values if not pd.isna(v)}
        shown = {c: col for c, col in colors.items() if c in present}
        legend_title = label_title or (str(label_values.name) if label_values.name else None)
        legend_ax = divider.append_axes("right", size=0.1, pad=0.6)
        legend_ax.set_axis_off()
        categorical_legend(legend_ax, shown, legend_title)

    tree = None
    if dendrogram and linkage is not None:
        tree = divider.append_axes(
            "top", size=max(0.6, 0.1 * heat.figure.get_figheight()), pad=0.05
        )
        hierarchy.dendrogram(
            linkage,
            ax=tree,
            color_threshold=0,
            above_threshold_color="0.3",
            no_labels=True,
        )
        tree.set_axis_off()
    if title:
        (tree or heat).set_title(title)
    finish(heat.figure, ax is not None, show, save_path)
    return {"heatmap": heat, "dendrogram": tree, "labels": strip, "colorbar": colorbar_ax}


def _check_distances(distances) -> tuple[np.ndarray, list[str]]:
    if not isinstance(distances, pd.DataFrame):
        raise TypeError(
            f"`distances` must be a square DataFrame of groups, got {type(distances).__name__}."
        )
    if distances.shape[0] != distances.shape[1] or distances.shape[0] == 0:
        raise ValueError(f"`distances` must be square and non-empty, got {distances.shape}.")
    if not distances.index.astype(str).equals(distances.columns.astype(str)):
        raise ValueError(
            "`distances` must have the same group names, in the same order, as index and columns."
        )
    try:
        matrix = distances.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError("`distances` must hold numbers.") from error
    if not np.isfinite(matrix).all():
        raise ValueError("`distances` contains NaN or infinite values.")
    scale = max(float(np.abs(matrix).max()), 1e-300)
    if np.abs(matrix - matrix.T).max() > 1e-8 * scale:
        raise ValueError("`distances` is not symmetric.")
    if (matrix < 0).any() or np.abs(np.diag(matrix)).max() > 1e-8 * scale:
        raise ValueError("`distances` must be non-negative with a zero diagonal.")
    matrix = 0.5 * (matrix + matrix.T)
    np.fill_diagonal(matrix, 0.0)
    return matrix, [str(name) for name in distances.index]


def _labels(labels, names: list[str]) -> pd.Series | None:
    if labels is None:
        return None
    if isinstance(labels, pd.Series | Mapping):
        series = pd.Series(labels) if isinstance(labels, Mapping) else labels
        series = series.copy()
        series.index = series.index.astype(str)
        if series.index.has_duplicates:
            raise ValueError("`labels` has duplicated group names.")
        if not set(names) & set(series.index):
            raise ValueError(
                "`labels` is indexed by names none of which are groups of `distances` (e.g. "
                f"{names[:3]}); pass a Series indexed by group name."
            )
        return series.reindex(names)
    values = list(labels)
    if len(values) != len(names):
        raise ValueError(f"`labels` has {len(values)} values for {len(names)} groups.")
    return pd.Series(values, index=names, dtype=object)

"""Groups as points: a scatter of the distribution embeddings, one dot per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from scipy import sparse

from .._constants import DEFAULT_KEY_ADDED, UNS_SETTINGS_KEY
from ..data import group_labels
from ..tl._distances import embedding_table, recorded_group_key
from ._colors import NA_COLOR, as_categorical, categorical_legend, category_colors, is_categorical
from ._figure import check_axes, check_save, finish
from ._reduce import PCA2, umap_2d


def group_embedding(
    adata: AnnData,
    color: str | Sequence[str] | None = None,
    basis: str = "umap",
    key: str = DEFAULT_KEY_ADDED,
    *,
    palette: str | Colormap | Sequence | Mapping | None = None,
    cmap: str | Colormap = "viridis",
    size: float | None = None,
    title: str | Sequence[str] | None = None,
    legend_loc: str | None = "right margin",
    na_color: str = NA_COLOR,
    n_neighbors: int | None = None,
    random_state: int = 0,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> Axes | dict[str, Axes]:
    """Scatter of the groups, one dot per group, coloured by a group-level label.

    Accepts either

    * the **group AnnData** of :meth:`scgde.model.GDE.get_group_adata` (one observation per
      group, the embedding as ``X``, group-level columns in ``obs``); an existing
      ``obsm[f"X_{basis}"]`` (e.g. from ``sc.tl.umap``) is used as is; or
    * the **cell-level AnnData** with the embedding table in ``adata.uns[key]`` (written by
      :meth:`~scgde.model.GDE.get_distribution_embedding`); ``color`` is then an ``obs``
      column of the cells, aggregated per group (``group_key`` recorded in
      ``adata.uns["gde"]``): a categorical column must have one value per group, a numeric
      column is averaged over the group's cells.

    Missing coordinates are computed on a private AnnData (``adata`` is never modified):
    ``basis="pca"`` is a PCA of the embeddings (SVD, signs fixed), ``basis="umap"`` a UMAP
    with scanpy (``sc.pp.neighbors(use_rep="X")``, ``n_neighbors`` default ``min(15,
    n_groups - 1)``, then ``sc.tl.umap``; at least 4 groups).

    Parameters
    ----------
    adata
        Group AnnData or cell-level AnnData (see above).
    color
        Group-level column(s) of ``obs``. Categorical/string/boolean columns get a legend and
        scanpy's palette (or the colours in ``uns[f"{color}_colors"]``), numeric ones a
        colour bar. A list draws one panel per column. ``None``: one colour.
    basis
        ``"umap"``, ``"pca"`` or, for a group AnnData, any key of its ``obsm``.
    key
        ``uns`` key of the embedding table, for cell-level input.
    palette
        Colours of categories: a colormap (name), a list, or a mapping category → colour.
    cmap
        Colormap of numeric columns.
    size
        Dot size; default ``120000 / n_groups`` within ``[20, 200]``.
    title
        Panel title(s); default the column name.
    legend_loc
        ``"right margin"`` (default), ``"on data"``, a matplotlib location such as
        ``"best"``, or ``None`` for no legend.
    na_color
        Colour of groups without a value.
    n_neighbors, random_state
        Of the UMAP, when it is computed.
    ax
        Axes to draw in (a list of them for a list of colours).
    show
        Show the figure; default: unless ``ax`` is given (never with a non-interactive
        backend such as Agg).
    save
        File to save the figure to (the extension sets the format); written atomically.

    Returns
    -------
    The Axes, or a dict column → Axes when ``color`` is a list.

    Examples
    --------
    >>> groups = model.get_group_adata()
    >>> scgde.pl.group_embedding(groups, color="condition")
    >>> scgde.pl.group_embedding(groups, color=["condition", "n_cells"], basis="pca")
    >>> model.get_distribution_embedding()  # adata.uns["X_gde"]
    >>> scgde.pl.group_embedding(adata, color="condition", save="groups.png")
    """
    save_path = check_save(save)
    columns = [color] if color is None or isinstance(color, str) else list(color)
    if not columns:
        raise ValueError("`color` is an empty list.")
    titles = _titles(title, columns)
    axes = check_axes(ax, len(columns), f"{len(columns)} colour(s)")
    z, obs, uns, obsm = _group_view(adata, key, [c for c in columns if c is not None])
    coords, axis_labels = _coordinates(z, obsm, basis, n_neighbors, random_state)
    if axes is None:
        _, grid = plt.subplots(
            1, len(columns), figsize=(5.2 * len(columns), 4), squeeze=False, layout="constrained"
        )
        axes = list(grid[0])
    if size is None:
        size = float(np.clip(120_000 / max(len(coords), 1), 20, 200))
    for panel, column, panel_title in zip(axes, columns, titles, strict=True):
        values = None if column is None else obs[column]
        stored = None if column is None else uns.get(f"{column}_colors")
        _scatter(panel, coords, values, stored, palette, cmap, size, na_color, legend_loc, column)
        panel.set_title(panel_title)
        panel.set_xlabel(axis_labels[0], loc="left")
        panel.set_ylabel(axis_labels[1], loc="bottom")
        panel.set_xticks([])
        panel.set_yticks([])
    finish(axes[0].figure, ax is not None, show, save_path)
    if color is None or isinstance(color, str):
        return axes[0]
    return dict(zip(columns, axes, strict=True))


def _titles(title, columns) -> list[str]:
    if title is None:
        return ["groups" if c is None else str(c) for c in columns]
    titles = [title] if isinstance(title, str) else list(title)
    if len(titles) != len(columns):
        raise ValueError(f"Got {len(titles)} titles for {len(columns)} panels.")
    return titles


# ------------------------------------------------------------------------------- input
def _group_view(adata: AnnData, key: str, columns: list[str]):
    """Embeddings (groups × d), group-level obs, uns (colours) and obsm (or ``None``)."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    settings = adata.uns.get(UNS_SETTINGS_KEY)
    cell_level = key in adata.uns or (isinstance(settings, dict) and "key_added" in settings)
    if cell_level:
        table = embedding_table(adata, key)  # clear KeyError when only settings are there
        z = table.to_numpy(dtype=np.float64)
        obs = _aggregate_obs(adata, table.index.astype(str), columns)
        return z, obs, adata.uns, None
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"adata.obs has no column(s) {missing}; available: {list(adata.obs)}.")
    x = adata.X
    z = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or not np.isfinite(z).all():
        raise ValueError(
            "The group AnnData's X must hold finite embeddings, one row per group (as "
            "returned by `model.get_group_adata()`)."
        )
    return z, adata.obs, adata.uns, adata.obsm


def _aggregate_obs(adata: AnnData, names: pd.Index, columns: list[str]) -> pd.DataFrame:
    """Per-group values of cell-level obs columns (one category per group, or a mean)."""
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"adata.obs has no column(s) {missing}; available: {list(adata.obs)}.")
    obs = pd.DataFrame(index=names)
    if not columns:
        return obs
    labels = group_labels(adata.obs, recorded_group_key(adata))
    codes = np.asarray(labels.codes)
    group_names = labels.categories.astype(str)
    for column in columns:
        values = adata.obs[column]
        if is_categorical(values):
            cats = as_categorical(values)
            series = pd.Series(cats, index=adata.obs_names)
            grouped = series.groupby(codes, observed=True)
            several = grouped.nunique(dropna=True) > 1
            if several.any():
                bad = [str(group_names[g]) for g in several.index[several][:5]]
                raise ValueError(
                    f"adata.obs[{column!r}] is not constant within groups {bad}: colour the groups "
                    "by a group-level label (e.g. condition of a sample) or a numeric column "
                    "(averaged per group)."
                )
            first = grouped.first()
            per_group = pd.Series(
                pd.Categorical(first.to_numpy(dtype=object), categories=cats.categories),
                index=group_names[first.index],
            )
        else:
            numeric = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
            mean = pd.Series(numeric).groupby(codes).mean()
            per_group = pd.Series(mean.to_numpy(), index=group_names[mean.index])
        obs[column] = per_group.reindex(names)
    return obs


# ------------------------------------------------------------------------ coordinates
def _coordinates(z, obsm, basis: str, n_neighbors, random_state) -> tuple[np.ndarray, tuple]:
    if not isinstance(basis, str):
        raise ValueError(f"`basis` must be a string, got {basis!r}.")
    basis_key = basis if basis.startswith("X_") else f"X_{basis}"
    name = basis_key[2:].upper()
    if obsm is not None and basis_key in obsm:
        coords = np.asarray(obsm[basis_key], dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] < 2:
            raise ValueError(f"obsm[{basis_key!r}] needs at least 2 columns.")
        return coords[:, :2], (f"{name}1", f"{name}2")
    if basis_key == "X_pca":
        pca = PCA2.fit(z)
        return pca.transform(z), pca.axis_labels()
    if basis_key == "X_umap":
        return umap_2d(z, n_neighbors, random_state), ("UMAP1", "UMAP2")
    available = [] if obsm is None else list(obsm)
    raise KeyError(
        f"Unknown basis {basis!r}: use 'umap' or 'pca' (computed from the embeddings) or, for a "
        f"group AnnData, a key of its obsm (available: {available})."
    )


# ---------------------------------------------------------------------------- drawing
def _scatter(ax, coords, values, stored, palette, cmap, size, na_color, legend_loc, name):
    style = {"s": size, "linewidths": 0.5, "edgecolors": "white"}
    if values is None:
        first = mpl.rcParams["axes.prop_cycle"].by_key().get("color", ["#1f77b4"])[0]
        ax.scatter(coords[:, 0], coords[:, 1], color=first, **style)
        return
    if is_categorical(values):
        cats = as_categorical(values)
        colors = category_colors(cats.categories, palette, stored)
        labels = np.asarray(cats, dtype=object)
        missing = pd.isna(labels)
        order = np.concatenate([np.flatnonzero(missing), np.flatnonzero(~missing)])
        point_colors = [na_color if missing[i] else colors[labels[i]] for i in order]
        ax.scatter(coords[order, 0], coords[order, 1], c=point_colors, **style)
        present = set(labels[~missing])
        shown = {c: col for c, col in colors.items() if c in present}
        categorical_legend(ax, shown, legend_loc, None, coords, labels)
        return
    numeric = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
    order = np.argsort(np.where(np.isnan(numeric), -np.inf, numeric), kind="stable")
    colormap = (mpl.colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(bad=na_color)
    mappable = ax.scatter(
        coords[order, 0],
        coords[order, 1],
        c=numeric[order],
        cmap=colormap,
        plotnonfinite=True,
        **style,
    )
    ax.figure.colorbar(mappable, ax=ax, fraction=0.05, pad=0.02, label=None)

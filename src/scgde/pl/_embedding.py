"""Groups as points: ``sc.pl.embedding`` of the distribution embeddings, one dot per group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from scipy import sparse

from .._constants import DEFAULT_KEY_ADDED
from .._docs import SHOW_SAVE, doc_params
from ..data import group_labels
from ..tl._distances import (
    embedding_table,
    recorded_covariances,
    recorded_group_key,
    recorded_settings,
)
from ._colors import NA_COLOR, as_categorical, category_colors, is_categorical
from ._figure import check_axes, check_save, finish
from ._reduce import pca_2d


@doc_params(show_save=SHOW_SAVE)
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
    uncertainty: bool = False,
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
      ``adata.uns["gde"][key]``): a categorical column must have one value per group, a numeric
      column is averaged over the group's cells.

    Missing coordinates are computed on a private AnnData (``adata`` is never modified):
    ``basis="pca"`` is a PCA of the embeddings (SVD, signs fixed), ``basis="umap"`` a UMAP
    with scanpy (``sc.pp.neighbors`` on the embeddings, ``n_neighbors`` default ``min(15,
    n_groups - 1)``, then ``sc.tl.umap``; at least 4 groups).

    The groups, their columns, coordinates and ``uns[f"{color}_colors"]`` are put on that
    private AnnData and drawn by :func:`scanpy.pl.embedding`, so the plot looks and behaves
    as scanpy's: axis labels ``PC1``/``UMAP1`` (no explained variance), groups without a
    value listed as ``NA`` in the legend, every category of the column in the legend, and
    several colours without ``ax`` laid out on scanpy's panel grid (4 per row).

    Parameters
    ----------
    adata
        Group AnnData or cell-level AnnData (see above).
    color
        Group-level column(s) of ``obs``. Categorical/string/boolean columns get a legend and
        scanpy's palette (or the colours in ``uns[f"{color}_colors"]``), numeric ones a
        colour bar. A list draws one panel per column. ``None``: one colour (``na_color``, as
        in scanpy).
    basis
        ``"umap"``, ``"pca"`` or, for a group AnnData, any key of its ``obsm``.
    key
        ``uns`` key of the embedding table, for cell-level input.
    palette
        Colours of categories: a colormap (name), a list, or a mapping category → colour
        (which must name every category); overrides ``uns[f"{color}_colors"]``.
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
    uncertainty
        Draw each group's 95% error ellipse: its embedding's covariance
        (``uns[key + "_cov"]`` of :meth:`~scgde.model.GDE.get_embedding_uncertainty`)
        projected on the PCA. Cell-level input with ``basis="pca"`` only (a UMAP does not
        carry ellipses).
    ax
        Axes to draw in (a list of them for a list of colours).
    {show_save}

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
    axes = check_axes(ax, len(columns), f"{len(columns)} colour(s)")
    private, name, pca = _private_adata(
        adata, key, [c for c in columns if c is not None], basis, n_neighbors, random_state
    )
    ellipses = _projected_covariances(adata, key, private.obs_names, pca) if uncertainty else None
    if palette is not None:  # checked here (a clear error for a missing category), then stored
        for column in private.obs.columns[private.obs.dtypes == "category"]:
            colors = category_colors(private.obs[column].cat.categories, palette)
            private.uns[f"{column}_colors"] = list(colors.values())
    titles = None if title is None else [title] if isinstance(title, str) else list(title)
    if titles is not None and len(titles) != len(columns):
        raise ValueError(f"Got {len(titles)} titles for {len(columns)} panels.")
    if size is None:
        size = float(np.clip(120_000 / private.n_obs, 20, 200))
    common = {
        "basis": name,
        "color_map": cmap,
        "size": size,
        "legend_loc": legend_loc,
        "na_color": na_color,
        "show": False,
    }
    if axes is None:  # scanpy lays out the panels
        drawn = sc.pl.embedding(private, color=columns, title=titles, **common)
        axes = [drawn] if isinstance(drawn, Axes) else list(drawn)
    else:
        for i, (panel, column) in enumerate(zip(axes, columns, strict=True)):
            panel_title = None if titles is None else titles[i]
            sc.pl.embedding(private, color=column, title=panel_title, ax=panel, **common)
    if ellipses is not None:
        for panel in axes:
            _draw_ellipses(panel, private.obsm[f"X_{name}"], ellipses)
    finish(axes[0].figure, ax is not None, show, save_path)
    if color is None or isinstance(color, str):
        return axes[0]
    return dict(zip(columns, axes, strict=True))


# ------------------------------------------------------------------------------- input
def _private_adata(adata, key, columns, basis, n_neighbors, random_state):
    """A new group-level AnnData for ``sc.pl.embedding``, the name of its basis, and the PCA
    of the embeddings when the coordinates are one (else ``None``).

    ``obs``: the groups with ``columns`` (categorical, or numeric as float); ``obsm``: the 2-D
    coordinates; ``uns``: the user's ``{column}_colors``.
    """
    z, obs, uns, obsm = _group_view(adata, key, columns)
    private = AnnData(obs=pd.DataFrame(index=obs.index.astype(str)))
    for column in columns:
        values = obs[column]
        if is_categorical(values):
            private.obs[column] = as_categorical(values)
        else:
            private.obs[column] = pd.to_numeric(values, errors="raise").to_numpy(np.float64)
        if f"{column}_colors" in uns:
            private.uns[f"{column}_colors"] = list(uns[f"{column}_colors"])
    if not isinstance(basis, str):
        raise ValueError(f"`basis` must be a string, got {basis!r}.")
    name = basis.removeprefix("X_")
    basis_key = f"X_{name}"
    pca = None
    if obsm is not None and basis_key in obsm:
        coords = np.asarray(obsm[basis_key], dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] < 2:
            raise ValueError(f"obsm[{basis_key!r}] needs at least 2 columns.")
        private.obsm[basis_key] = coords[:, :2]
    elif name == "pca":
        pca = pca_2d(z)
        private.obsm[basis_key] = pca.transform(z)
    elif name == "umap":
        n = private.n_obs
        if n < 4:
            raise ValueError(f"A UMAP needs at least 4 groups, got {n}; use basis='pca'.")
        private.obsm["X_gde"] = z.astype(np.float32)
        sc.pp.neighbors(
            private,
            use_rep="X_gde",
            n_neighbors=min(15, n - 1) if n_neighbors is None else n_neighbors,
            random_state=random_state,
        )
        sc.tl.umap(private, random_state=random_state)
    else:
        available = [] if obsm is None else list(obsm)
        raise KeyError(
            f"Unknown basis {basis!r}: use 'umap' or 'pca' (computed from the embeddings) or, "
            f"for a group AnnData, a key of its obsm (available: {available})."
        )
    return private, name, pca


#: Half-axes of a 95% ellipse of a 2-d normal, in standard deviations: sqrt(chi2(2).ppf(0.95)).
_ELLIPSE_95 = float(np.sqrt(-2.0 * np.log(0.05)))


def _projected_covariances(adata, key: str, names: pd.Index, pca) -> np.ndarray:
    """Each group's embedding covariance projected on the PCA axes, ``(n_groups, 2, 2)`` (NaN
    for groups without one)."""
    covariances = None if pca is None else recorded_covariances(adata, key, names)
    if covariances is None:
        raise ValueError(
            "uncertainty=True needs cell-level input with basis='pca' and the covariances of "
            f"model.get_embedding_uncertainty(adata, key_added={key!r}) in adata.uns."
        )
    return np.einsum("ai,gij,bj->gab", pca.axes, covariances, pca.axes)


def _draw_ellipses(ax: Axes, coords: np.ndarray, covariances: np.ndarray) -> None:
    """A 95% ellipse per group around its point (groups with NaN covariances get none)."""
    from matplotlib.patches import Ellipse

    for centre, cov in zip(coords, covariances, strict=True):
        if not np.isfinite(cov).all():
            continue
        variances, vectors = np.linalg.eigh(cov)
        width, height = 2 * _ELLIPSE_95 * np.sqrt(np.clip(variances[::-1], 0.0, None))
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        ax.add_patch(
            Ellipse(centre, width, height, angle=angle, fill=False, lw=0.8, ec="0.4", zorder=0)
        )


def _group_view(adata: AnnData, key: str, columns: list[str]):
    """Embeddings (groups × d), group-level obs, uns (colours) and obsm (or ``None``)."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    cell_level = key in adata.uns or bool(recorded_settings(adata))
    if cell_level:
        table = embedding_table(adata, key)  # clear KeyError when only settings are there
        z = table.to_numpy(dtype=np.float64)
        obs = _aggregate_obs(adata, key, table.index.astype(str), columns)
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


def _aggregate_obs(adata: AnnData, key: str, names: pd.Index, columns: list[str]) -> pd.DataFrame:
    """Per-group values of cell-level obs columns (one category per group, or a mean)."""
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"adata.obs has no column(s) {missing}; available: {list(adata.obs)}.")
    obs = pd.DataFrame(index=names)
    if not columns:
        return obs
    labels = group_labels(adata.obs, recorded_group_key(adata, key))
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

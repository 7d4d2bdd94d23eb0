"""A path between two groups in embedding space, decoded into cells."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Colormap

from .._docs import SHOW_SAVE, doc_params
from .._utils import check_int, dense_rows, layer_matrix, log_normalize
from ..data import group_labels, looks_like_counts
from ._figure import check_axes, check_save, finish
from ._reduce import axis_labels, pca_2d


@doc_params(show_save=SHOW_SAVE)
def interpolation_path(
    model,
    group_a: str,
    group_b: str,
    *,
    adata: AnnData | None = None,
    embedding: pd.DataFrame | None = None,
    n_steps: int = 7,
    n_cells: int = 200,
    genes: Sequence[str] | None = None,
    n_genes: int = 4,
    batch: str | None = None,
    seed: int = 0,
    cmap: str | Colormap = "viridis",
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> dict[str, Axes | None]:
    r"""Walk from one group to another in embedding space and decode cells along the way.

    The path is the straight line :math:`z(t) = (1 - t)\,z_a + t\,z_b` at ``n_steps``
    evenly spaced ``t`` in [0, 1]. Two panels:

    ``"path"``
        All groups' embeddings on their first two principal components (grey), the path
        coloured by ``t`` and the two end groups named.
    ``"expression"``
        ``n_cells`` cells generated from every point of the path with
        ``model.sample(embedding=...)``, and the mean of a few genes along ``t`` (log1p of
        counts per 10⁴ for count data; the values as they are otherwise). Open squares at
        ``t = 0`` and ``t = 1`` show the same means in the **real** cells of the two groups,
        when ``adata`` has them. The generated cells copy batch and library size of random
        cells of ``adata`` (see :meth:`scgde.model.GDE.sample`).

    Parameters
    ----------
    model
        A trained :class:`scgde.model.GDE`, or a DataFrame of group embeddings (groups ×
        dimensions, e.g. ``adata.uns["X_gde"]``) to draw the ``"path"`` panel only.
    group_a, group_b
        Names of the two groups (index of the embedding table).
    adata
        AnnData with the groups' cells; default the model's training data.
    embedding
        The groups' embeddings; default ``model.get_distribution_embedding(adata,
        key_added=None)`` (nothing is written to ``adata``).
    n_steps
        Points on the path (at least 2).
    n_cells
        Cells generated per point.
    genes
        Genes to follow; default the ``n_genes`` whose generated mean changes most between
        ``t = 0`` and ``t = 1``.
    n_genes
        Number of genes chosen when ``genes`` is ``None``.
    batch
        Batch to generate in (see :meth:`scgde.model.GDE.sample`).
    seed
        Seed of the generated cells.
    cmap
        Colormap of ``t`` along the path.
    ax
        Axes: two (path, expression) for a model, one (path) for an embedding table.
    {show_save}

    Returns
    -------
    dict
        ``{"path": Axes, "expression": Axes or None}``.

    Examples
    --------
    >>> scgde.pl.interpolation_path(model, "healthy_1", "severe_3", genes=["CD14", "IFI27"])
    >>> scgde.pl.interpolation_path(adata.uns["X_gde"], "healthy_1", "severe_3")  # path only
    """
    save_path = check_save(save)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 2:
        raise ValueError(f"`n_steps` must be an integer >= 2, got {n_steps!r}.")
    decode = not isinstance(model, pd.DataFrame)
    if decode:
        if not hasattr(model, "sample") or not hasattr(model, "get_distribution_embedding"):
            raise TypeError(
                "`model` must be a trained scgde GDE model or a DataFrame of "
                f"group embeddings, got {type(model).__name__}."
            )
        adata = model.adata if adata is None else adata
        if embedding is None:
            embedding = model.get_distribution_embedding(adata, key_added=None)
    elif embedding is not None:
        raise ValueError("Pass the embeddings either as `model` or as `embedding`, not both.")
    else:
        embedding = model
    table = _check_table(embedding)
    for group in (group_a, group_b):
        if str(group) not in table.index:
            raise KeyError(
                f"Group {group!r} is not in the embedding table (groups: "
                f"{list(table.index[:10])}{' ...' if len(table) > 10 else ''})."
            )
    axes = check_axes(ax, 2 if decode else 1, "the path (and expression) panels")
    if axes is None:
        if decode:
            _, grid = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
            axes = list(grid)
        else:
            _, single = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
            axes = [single]

    t = np.linspace(0.0, 1.0, n_steps)
    z = table.to_numpy(dtype=np.float64)
    z_a, z_b = table.loc[str(group_a)].to_numpy(float), table.loc[str(group_b)].to_numpy(float)
    path = (1 - t)[:, None] * z_a + t[:, None] * z_b
    colormap = mpl.colormaps[cmap] if isinstance(cmap, str) else cmap
    _draw_path(axes[0], z, table.index, path, t, str(group_a), str(group_b), colormap)

    expression_ax = None
    if decode:
        expression_ax = axes[1]
        names = [f"t={value:.2f}" for value in t]
        generated = model.sample(
            embedding=pd.DataFrame(path, index=names, columns=table.columns),
            n_cells=n_cells,
            adata=adata,
            batch=batch,
            seed=seed,
        )
        _draw_expression(
            expression_ax, model, adata, generated, t, genes, n_genes, group_a, group_b
        )
    finish(axes[0].figure, ax is not None, show, save_path)
    return {"path": axes[0], "expression": expression_ax}


def _check_table(embedding) -> pd.DataFrame:
    if not isinstance(embedding, pd.DataFrame):
        raise TypeError(
            f"The embeddings must be a DataFrame of groups × dimensions, got "
            f"{type(embedding).__name__}."
        )
    values = embedding.to_numpy(dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or not np.isfinite(values).all():
        raise ValueError("The embedding table needs at least 2 groups and finite values.")
    table = embedding.copy()
    table.index = table.index.astype(str)
    return table


def _draw_path(ax, z, names, path, t, group_a, group_b, colormap) -> None:
    pca = pca_2d(z)
    groups = pca.transform(z)
    line = pca.transform(path)
    ax.scatter(groups[:, 0], groups[:, 1], s=30, color="0.75", linewidths=0, label="groups")
    ax.plot(line[:, 0], line[:, 1], color="0.3", lw=1, zorder=2)
    mappable = ax.scatter(
        line[:, 0],
        line[:, 1],
        c=t,
        cmap=colormap,
        vmin=0,
        vmax=1,
        s=60,
        zorder=3,
        edgecolors="black",
        linewidths=0.5,
    )
    for name, point in ((group_a, line[0]), (group_b, line[-1])):
        ax.annotate(name, point, xytext=(5, 5), textcoords="offset points", fontsize=9)
    ax.figure.colorbar(mappable, ax=ax, fraction=0.05, pad=0.02, label="t")
    labels = axis_labels(pca)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.12)
    ax.set_title(f"{group_a} → {group_b}")


def _step_means(x: np.ndarray, steps: np.ndarray, n_steps: int) -> np.ndarray:
    counts = np.bincount(steps, minlength=n_steps)[:, None]
    sums = np.zeros((n_steps, x.shape[1]))
    np.add.at(sums, steps, x)
    return sums / np.maximum(counts, 1)


def _draw_expression(ax, model, adata, generated, t, genes, n_genes, group_a, group_b) -> None:
    x = dense_rows(generated.X, check_finite=True)
    counts = looks_like_counts(x)
    values = log_normalize(x) if counts else x
    steps = np.asarray(generated.obs["group"].cat.codes)
    means = pd.DataFrame(
        _step_means(values, steps, len(t)), columns=generated.var_names.astype(str)
    )
    if genes is None:
        n_genes = check_int(n_genes, "n_genes")
        change = (means.iloc[-1] - means.iloc[0]).abs()
        genes = list(change.sort_values(ascending=False, kind="stable").index[:n_genes])
    else:
        genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
        missing = [g for g in genes if g not in means.columns]
        if missing or not genes:
            raise KeyError(f"Genes {missing} are not among the model's features.")
    real = _real_means(model, adata, genes, counts, group_a, group_b)
    colors = mpl.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, gene in enumerate(genes):
        color = colors[i % len(colors)]
        ax.plot(t, means[gene], marker="o", color=color, label=gene)
        if real is not None:
            ax.scatter(
                [0, 1], real[gene], marker="s", s=60, facecolors="none", edgecolors=color, zorder=3
            )
    if real is not None:
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="0.3", label="real cells")
    ax.set_xlabel("t")
    ax.set_ylabel("mean log1p(counts per 10⁴)" if counts else "mean value")
    ax.set_title("generated cells along the path")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _real_means(model, adata, genes, counts, group_a, group_b) -> pd.DataFrame | None:
    """Means of ``genes`` in the real cells of both groups (rows t=0, t=1), or ``None``."""
    args = model._setup_args
    if args.get("obsm_key") or not isinstance(adata, AnnData):
        return None
    if not set(genes) <= set(adata.var_names.astype(str)):
        return None
    labels = np.asarray(group_labels(adata.obs, model.group_key).astype(str), dtype=object)
    columns = adata.var_names.astype(str).get_indexer(genes)
    rows = []
    for group in (group_a, group_b):
        cells = np.flatnonzero(labels == str(group))
        if not len(cells):
            return None
        x = dense_rows(layer_matrix(adata, args.get("layer")), cells, check_finite=True)
        values = log_normalize(x) if counts else x
        rows.append(values[:, columns].mean(axis=0))
    return pd.DataFrame(rows, columns=genes)

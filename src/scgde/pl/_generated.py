"""Generated versus real cells: a shared embedding and per-gene statistics."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from .._docs import SHOW_SAVE, doc_params
from .._utils import dense_rows, layer_matrix, normalize_total, subsample
from ..data import looks_like_counts
from ._figure import check_axes, check_save, finish
from ._reduce import axis_labels, pca_2d

#: Colours of real and generated cells.
REAL_COLOR = "#7f7f7f"
GENERATED_COLOR = "#ff7f0e"


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when fewer than 2 values or a constant input."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


@doc_params(show_save=SHOW_SAVE)
def generated_vs_real(
    real: AnnData,
    generated: AnnData,
    *,
    layer: str | None = None,
    normalize: bool | None = None,
    log_scale: bool | None = None,
    max_cells: int | None = 2000,
    seed: int = 0,
    size: float | None = None,
    title: str | None = None,
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> dict[str, Axes]:
    """Compare generated cells with real ones: shared embedding, per-gene means and variances.

    Three panels:

    ``"embedding"``
        Real and generated cells on the first two principal components **fitted on the real
        cells only** (log1p of counts per 10⁴ for count data), the generated cells projected
        into them. PCA is fast, deterministic and, unlike a UMAP of the pooled cells, cannot
        absorb a shift of the generated cells into the layout. Cells are drawn in random
        order so neither set hides the other.
    ``"mean"``, ``"variance"``
        Per-gene mean and variance of the expression (counts per 10⁴ for count data), real
        against generated, with the identity line and the Pearson r in the title. On log axes
        (the default for count data) genes with a zero (non-positive) value are left out and r
        is that of the log10 values.

    Parameters
    ----------
    real
        Real cells, e.g. ``adata[adata.obs["sample"] == group]``.
    generated
        Generated cells, e.g. ``model.sample(groups=[group], n_cells=1000)``; their ``X`` is
        read. Genes shared with ``real`` are compared (in ``generated``'s order).
    layer
        Layer of ``real`` with the values (default ``real.X``), e.g. the raw counts.
    normalize
        Scale every cell to 10⁴ counts (and log1p for the embedding). Default: when both
        hold non-negative integers (counts).
    log_scale
        Log axes for the gene statistics; default: ``normalize``.
    max_cells
        Cells of each set used at most (random subsample with ``seed``); ``None``: all.
    seed
        Seed of the subsampling and of the drawing order.
    size
        Dot size of cells; default from the number of cells.
    title
        Title of the embedding panel.
    ax
        Three Axes (a sequence, or a dict with keys ``"embedding"``, ``"mean"``,
        ``"variance"``).
    {show_save}

    Returns
    -------
    dict
        ``{"embedding": Axes, "mean": Axes, "variance": Axes}``.

    Examples
    --------
    >>> group = "B1_HGR0000079_T0"
    >>> generated = model.sample(groups=[group], n_cells=1000, seed=0)
    >>> real = adata[adata.obs["sample"] == group]
    >>> scgde.pl.generated_vs_real(real, generated, save="generated_vs_real.png")
    """
    save_path = check_save(save)
    if not isinstance(real, AnnData) or not isinstance(generated, AnnData):
        raise TypeError("`real` and `generated` must be AnnData objects.")
    if real.n_obs == 0 or generated.n_obs == 0:
        raise ValueError("`real` and `generated` need at least one cell each.")
    if isinstance(ax, dict):
        ax = [ax.get("embedding"), ax.get("mean"), ax.get("variance")]
    axes = check_axes(ax, 3, "the embedding, mean and variance panels")
    real_positions = real.var_names.get_indexer(generated.var_names)
    shared = np.flatnonzero(real_positions >= 0)
    if len(shared) < 2:
        raise ValueError(
            f"`real` and `generated` share {len(shared)} gene(s); generate with the model's "
            "genes and pass real cells with the same var_names."
        )
    rng = np.random.default_rng(seed)
    x_real = dense_rows(
        layer_matrix(real, layer),
        subsample(np.arange(real.n_obs), max_cells, rng),
        real_positions[shared],
        check_finite=True,
    )
    x_gen = dense_rows(
        generated.X,
        subsample(np.arange(generated.n_obs), max_cells, rng),
        shared,
        check_finite=True,
    )
    if normalize is None:
        normalize = looks_like_counts(x_real) and looks_like_counts(x_gen)
    if log_scale is None:
        log_scale = bool(normalize)
    if normalize:
        x_real, x_gen = normalize_total(x_real), normalize_total(x_gen)
        embed_real, embed_gen = np.log1p(x_real), np.log1p(x_gen)
    else:
        embed_real, embed_gen = x_real, x_gen

    if axes is None:
        _, grid = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
        axes = list(grid)
    embedding_ax, mean_ax, var_ax = axes

    pca = pca_2d(embed_real)
    coords = np.concatenate([pca.transform(embed_real), pca.transform(embed_gen)])
    is_generated = np.repeat([False, True], [len(x_real), len(x_gen)])
    order = rng.permutation(len(coords))
    if size is None:
        size = float(np.clip(20_000 / len(coords), 2, 40))
    embedding_ax.scatter(
        coords[order, 0],
        coords[order, 1],
        c=np.where(is_generated[order], GENERATED_COLOR, REAL_COLOR),
        s=size,
        alpha=0.6,
        linewidths=0,
    )
    handles = [
        Line2D([], [], marker="o", ls="", color=REAL_COLOR, label=f"real ({len(x_real)})"),
        Line2D([], [], marker="o", ls="", color=GENERATED_COLOR, label=f"generated ({len(x_gen)})"),
    ]
    embedding_ax.legend(handles=handles, frameon=False, loc="best")
    labels = axis_labels(pca)
    embedding_ax.set_xlabel(labels[0] + ", fitted on real cells")
    embedding_ax.set_ylabel(labels[1])
    embedding_ax.set_xticks([])
    embedding_ax.set_yticks([])
    embedding_ax.set_title(title or "real and generated cells")

    unit = "counts per 10⁴" if normalize else "value"
    ddof = 1 if min(len(x_real), len(x_gen)) > 1 else 0
    for panel, name, stat_real, stat_gen in (
        (mean_ax, "mean", x_real.mean(axis=0), x_gen.mean(axis=0)),
        (var_ax, "variance", x_real.var(axis=0, ddof=ddof), x_gen.var(axis=0, ddof=ddof)),
    ):
        _gene_scatter(panel, name, stat_real, stat_gen, log_scale, unit)
    finish(embedding_ax.figure, ax is not None, show, save_path)
    return {"embedding": embedding_ax, "mean": mean_ax, "variance": var_ax}


def _gene_scatter(ax, name, real, generated, log_scale: bool, unit: str) -> None:
    keep = (real > 0) & (generated > 0) if log_scale else np.ones(len(real), dtype=bool)
    x, y = real[keep], generated[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = pearson_r(np.log10(x), np.log10(y)) if log_scale else pearson_r(x, y)
    ax.scatter(x, y, s=8, alpha=0.7, color="#1f77b4", linewidths=0)
    if len(x):
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([low, high], [low, high], color="0.5", lw=1, zorder=0)
    if log_scale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    dropped = int((~keep).sum())
    note = f"\n{dropped} gene(s) with zeros not shown" if dropped else ""
    ax.set_title(f"gene {name}s, Pearson r = {r:.3f}{note}")
    ax.set_xlabel(f"real ({name}, {unit})")
    ax.set_ylabel(f"generated ({name}, {unit})")

"""Data-derived features of genetic perturbations: co-expression in control cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._pca import PrincipalAxes
from .._utils import check_int, distinct_names, layer_matrix, size_factors, to_dense

#: Fewest control cells for which gene-gene correlations are computed.
MIN_CONTROL_CELLS = 3
_CHUNK_VALUES = 20_000_000  # dense float64 values handled at a time (~160 MB)


def _row_totals(x, rows: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    """Total of every selected row, and whether the rows hold non-negative integer counts.

    Raises ``ValueError`` for NaN or infinite values.
    """
    step = max(1, _CHUNK_VALUES // max(1, x.shape[1]))
    totals, counts = [], True
    for start in range(0, rows.size, step):
        block = x[rows[start : start + step]]
        values = block.data if sparse.issparse(block) else np.asarray(block)
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{name} contains NaN or infinite values among the control cells.")
        counts = counts and bool((values >= 0).all() and np.array_equal(values, np.round(values)))
        totals.append(np.asarray(block.sum(axis=1), dtype=np.float64).reshape(-1))
    return np.concatenate(totals), counts


def _standardized(block: np.ndarray, scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``block`` (cells x genes) normalised, centred and scaled to unit variance.

    With ``scale`` the counts are first multiplied by it per cell and log1p-transformed. Returns
    the standardised block (zero columns for genes without variance) and which genes vary.
    """
    if scale is not None:
        block = np.log1p(block * scale[:, None])
    mean = block.mean(axis=0)
    centred = block - mean
    std = np.sqrt((centred**2).sum(axis=0) / (block.shape[0] - 1))
    varies = std > 1e-10 * (1.0 + np.abs(mean))
    centred[:, ~varies] = 0.0
    centred[:, varies] /= std[varies]
    return centred, varies


def _columns(x, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dense float64 ``x[rows][:, columns]`` without densifying other values."""
    if sparse.issparse(x):
        return to_dense(x[:, columns])  # ``x`` is already restricted to ``rows``
    return to_dense(np.asarray(x)[np.ix_(rows, columns)])


def _coexpression_correlations(
    adata: AnnData,
    genes: Sequence[str],
    control_mask: np.ndarray,
    layer: str | None = None,
    max_cells: int = 20000,
    seed: int = 0,
    normalize: bool | None = None,
) -> pd.DataFrame:
    """Pearson correlation of every target gene with every gene across control cells.

    See :func:`coexpression_features`; returns the ``(n_targets, n_genes)`` table before PCA,
    with index ``genes`` and columns ``adata.var_names``. Genes without variance in the control
    cells get correlation 0.
    """
    genes = distinct_names(genes, "genes", "pass the target genes of the perturbations.")
    var_names = adata.var_names.astype(str)
    if not var_names.is_unique:
        raise ValueError(
            "adata.var_names are not unique; call `adata.var_names_make_unique()` first."
        )
    missing = [g for g in genes if g not in var_names]
    if missing:
        raise KeyError(
            f"{len(missing)} target gene(s) are not in adata.var_names: {missing}. "
            "Co-expression features exist only for measured genes; pass a feature table for "
            "the others (e.g. `one_hot_features`)."
        )
    mask = np.asarray(control_mask)
    if mask.dtype != bool or mask.shape != (adata.n_obs,):
        raise ValueError(
            f"control_mask must be a boolean array of shape ({adata.n_obs},) (one entry per "
            f"cell), got dtype {mask.dtype} and shape {mask.shape}."
        )
    if int(max_cells) < MIN_CONTROL_CELLS:
        raise ValueError(f"max_cells must be at least {MIN_CONTROL_CELLS}, got {max_cells}.")
    rows = np.flatnonzero(mask)
    if rows.size < MIN_CONTROL_CELLS:
        raise ValueError(
            f"Co-expression features need at least {MIN_CONTROL_CELLS} control cells, but "
            f"control_mask selects {rows.size}."
        )
    if rows.size > max_cells:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, int(max_cells), replace=False))

    name = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    x = layer_matrix(adata, layer)
    totals, counts = _row_totals(x, rows, name)
    if normalize is None:
        normalize = counts
    elif normalize and not counts:
        raise ValueError(
            f"{name} does not hold non-negative integer counts in the control cells, so it "
            "cannot be normalised to log1p(counts per 10^4); pass raw counts (`layer=...`) or "
            "normalize=False for data that is already normalised."
        )
    scale = size_factors(totals) if normalize else None
    if sparse.issparse(x):
        x = sparse.csc_matrix(x[rows])

    target_idx = var_names.get_indexer(genes)
    targets, varies = _standardized(_columns(x, rows, target_idx), scale)
    if not varies.all():
        constant = [g for g, v in zip(genes, varies, strict=True) if not v]
        raise ValueError(
            f"Target gene(s) {constant} do not vary across the {rows.size} control cells (e.g. "
            "they are not detected), so their co-expression with other genes is undefined. "
            "Drop these perturbations, or describe them with another feature table (e.g. "
            "`one_hot_features`)."
        )
    n_genes = adata.n_vars
    corr = np.empty((len(genes), n_genes))
    step = max(1, _CHUNK_VALUES // rows.size)
    for start in range(0, n_genes, step):
        columns = np.arange(start, min(start + step, n_genes))
        block, _ = _standardized(_columns(x, rows, columns), scale)
        corr[:, columns] = targets.T @ block / (rows.size - 1)
    np.clip(corr, -1.0, 1.0, out=corr)
    return pd.DataFrame(corr, index=pd.Index(genes), columns=pd.Index(var_names))


def coexpression_features(
    adata: AnnData,
    genes: Sequence[str],
    control_mask: np.ndarray,
    n_components: int = 16,
    layer: str | None = None,
    max_cells: int = 20000,
    seed: int = 0,
    *,
    normalize: bool | None = None,
) -> pd.DataFrame:
    """Data-derived features of genetic perturbations: co-expression in control cells.

    For every target gene, its Pearson correlation with every gene across the control cells
    (on log1p-normalised counts per 10^4) describes the programme the gene takes part in;
    targets with similar programmes get similar features. The ``(n_targets, n_genes)``
    correlation rows are centred and reduced by PCA fitted on these rows.

    Parameters
    ----------
    adata
        Cells by genes, with raw counts in ``adata.X`` or ``adata.layers[layer]`` (dense or
        sparse).
    genes
        Target genes (unique, all in ``adata.var_names``); at least 2.
    control_mask
        Boolean array of shape ``(n_obs,)`` selecting the control (unperturbed) cells; only
        these cells are read.
    n_components
        Number of principal components kept; capped at ``n_targets - 1`` (the rank of the
        centred rows) and ``n_genes``.
    layer
        Layer with the counts; default ``adata.X``.
    max_cells
        At most this many control cells, drawn at random without replacement, are used.
    seed
        Seed of that subsample.
    normalize
        Whether to normalise to log1p(counts per 10^4). Default: when the control cells hold
        non-negative integer counts; other data (e.g. already log-normalised) is used as given.

    Returns
    -------
    Features of shape ``(n_targets, n_kept)``: index ``genes``, columns ``"coexpr_0"``, ...
    Genes without variance in the control cells count as uncorrelated with every target.

    Raises
    ------
    KeyError
        Naming the target genes missing from ``adata.var_names``, or a missing ``layer``.
    ValueError
        If a target gene does not vary across the control cells (naming it), there are fewer
        than 3 control cells or 2 target genes, or the values are not finite.
    """
    n_components = check_int(n_components, "n_components")
    if len(genes) < 2:
        raise ValueError(
            f"Co-expression features need at least 2 target genes (PCA over the targets), got "
            f"{list(genes)}."
        )
    corr = _coexpression_correlations(
        adata, genes, control_mask, layer=layer, max_cells=max_cells, seed=seed,
        normalize=normalize,
    )  # fmt: skip
    n_kept = min(int(n_components), corr.shape[0] - 1, corr.shape[1])
    rows = corr.to_numpy()
    scores = PrincipalAxes.fit(rows, n_kept).transform(rows)
    return pd.DataFrame(
        scores, index=corr.index.copy(), columns=[f"coexpr_{i}" for i in range(n_kept)]
    )


def genes_varying_in(adata: AnnData, rows: np.ndarray, layer: str | None = None) -> list[str]:
    """Names of the genes whose values vary across the selected cells (``rows``: a mask)."""
    x = adata.X if layer is None else adata.layers[layer]
    x = x[np.flatnonzero(rows)]
    if sparse.issparse(x):
        mean = np.asarray(x.mean(0)).ravel()
        variance = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
    else:
        variance = np.asarray(x).var(0)
    return [str(g) for g in adata.var_names[variance > 1e-12]]

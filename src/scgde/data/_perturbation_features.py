"""Features of perturbations, so that a model can predict perturbations it has not seen.

A perturbation (a condition such as ``"KLF1"`` or the combination ``"KLF1+MAP2K6"``) is
described by the sum of the feature vectors of its parts. Genetic perturbations get data-derived
features (the co-expression of the target gene with every gene in control cells, reduced by
PCA); other conditions get identity (one-hot) features, which carry no information about unseen
conditions but let the same model code handle them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._constants import ENCODER_TARGET_SUM
from .._utils import check_int, layer_matrix, to_dense

#: Parts that GEARS-style names use for "no perturbation", e.g. ``"KLF1+ctrl"`` (case-sensitive:
#: ``CTRL`` is a human gene).
CONTROL_PARTS = ("ctrl", "control")
#: Fewest control cells for which gene-gene correlations are computed.
MIN_CONTROL_CELLS = 3
_CHUNK_VALUES = 20_000_000  # dense float64 values handled at a time (~160 MB)
_SPLIT_KEYS = {"index", "columns", "data", "index_names", "column_names"}


# --------------------------------------------------------------------------------------------
# Names of perturbations
# --------------------------------------------------------------------------------------------
def split_combination(
    name: str, separator: str = "+", *, control_parts: Sequence[str] = CONTROL_PARTS
) -> list[str]:
    """The single perturbations that make up a (possibly combined) perturbation name.

    Parameters
    ----------
    name
        A perturbation name such as ``"KLF1"``, ``"KLF1+MAP2K6"`` or ``"KLF1+ctrl"``.
    separator
        String between the parts of a combination.
    control_parts
        Parts that stand for "no perturbation" and are dropped (GEARS writes ``"A+ctrl"`` for
        the single perturbation ``A``). Compared case-sensitively.

    Returns
    -------
    The parts in their order of appearance, stripped of surrounding whitespace; empty parts
    (``"A++B"``) and control parts are dropped, repeated parts are kept.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``separator`` is empty, or no part remains (e.g. ``""`` or ``"ctrl"``).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"A perturbation name must be a string, got {name!r} of type {type(name).__name__}."
        )
    if not separator:
        raise ValueError("separator must be a non-empty string.")
    dropped = set(control_parts)
    parts = [p.strip() for p in name.split(separator)]
    parts = [p for p in parts if p and p not in dropped]
    if not parts:
        raise ValueError(
            f"Perturbation {name!r} has no parts once empty parts and control parts "
            f"{sorted(dropped)} are removed (separator {separator!r}). If it is the control "
            "condition, pass it as `control`."
        )
    return parts


def _control_parts(control: str) -> tuple[str, ...]:
    """Control parts dropped from combinations: the GEARS names and ``control`` itself."""
    return (*CONTROL_PARTS, str(control))


def _unique_names(perturbations: Sequence[str], what: str = "perturbations") -> np.ndarray:
    """Unique perturbation names in order of appearance (error on missing values)."""
    values = pd.Series(np.asarray(perturbations, dtype=object).reshape(-1), dtype=object)
    if values.isna().any():
        raise ValueError(
            f"The {what} contain {int(values.isna().sum())} missing value(s) (NaN/None); every "
            "cell needs a perturbation name (the control condition included)."
        )
    return pd.unique(values)


def perturbation_parts(
    perturbations: Sequence[str], control: str, separator: str = "+"
) -> list[str]:
    """The sorted unique single parts of all non-control perturbations.

    Parameters
    ----------
    perturbations
        Perturbation names, e.g. an obs column (repeats are fine).
    control
        Name of the control condition; it is skipped, and dropped as a part of combinations
        (as are ``"ctrl"`` and ``"control"``).
    separator
        String between the parts of a combination.

    Returns
    -------
    Sorted unique parts, e.g. ``["A", "B", "C"]`` for ``["ctrl", "A+B", "C", "A"]``.

    Raises
    ------
    ValueError
        If a name is missing (NaN) or has no parts (:func:`split_combination`).
    """
    dropped = _control_parts(control)
    parts: set[str] = set()
    for name in _unique_names(perturbations):
        if name == control:
            continue
        parts.update(split_combination(name, separator, control_parts=dropped))
    return sorted(parts)


# --------------------------------------------------------------------------------------------
# Feature tables
# --------------------------------------------------------------------------------------------


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
    genes = [str(g) for g in genes]
    if not genes:
        raise ValueError("`genes` is empty; pass the target genes of the perturbations.")
    duplicated = sorted({g for g in genes if genes.count(g) > 1})
    if duplicated:
        raise ValueError(f"`genes` lists {duplicated} more than once.")
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
    scale = ENCODER_TARGET_SUM / np.where(totals > 0, totals, 1.0) if normalize else None
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


def _pca_scores(rows: np.ndarray, n_components: int) -> np.ndarray:
    """Scores of the centred rows on their first ``n_components`` principal axes.

    The sign of every axis is fixed so that its largest-magnitude loading is positive, which
    makes the result deterministic.
    """
    centred = rows - rows.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    u, s, vt = u[:, :n_components], s[:n_components], vt[:n_components]
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return u * (s * signs)


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
    scores = _pca_scores(corr.to_numpy(), n_kept)
    return pd.DataFrame(
        scores, index=corr.index.copy(), columns=[f"coexpr_{i}" for i in range(n_kept)]
    )


def one_hot_features(parts: Sequence[str]) -> pd.DataFrame:
    """Identity features: each part (a categorical condition) is its own direction.

    These let conditions without a data-derived description share the code path of
    :func:`perturbation_feature_matrix`, but say nothing about conditions not listed.

    Parameters
    ----------
    parts
        Unique single parts, e.g. from :func:`perturbation_parts`.

    Returns
    -------
    Identity matrix as a float DataFrame: index ``parts``, columns ``"onehot_<part>"``.

    Raises
    ------
    ValueError
        If ``parts`` is empty or has repeats.
    """
    parts = [str(p) for p in parts]
    if not parts:
        raise ValueError("`parts` is empty; there are no perturbations to describe.")
    duplicated = sorted({p for p in parts if parts.count(p) > 1})
    if duplicated:
        raise ValueError(f"`parts` lists {duplicated} more than once.")
    return pd.DataFrame(
        np.eye(len(parts)), index=pd.Index(parts), columns=[f"onehot_{p}" for p in parts]
    )


def default_perturbation_features(
    adata: AnnData,
    perturbation_key: str,
    control: str,
    separator: str = "+",
    n_components: int = 16,
    layer: str | None = None,
    *,
    max_cells: int = 20000,
    seed: int = 0,
) -> tuple[pd.DataFrame, str]:
    """Co-expression features when every perturbed part is a measured gene, else one-hot.

    The one rule of :class:`~scgde.model.PerturbationGDE`'s default features. Co-expression
    features are computed for every gene that varies across the control cells, so that any
    of them, seen perturbed or not, can be described.

    Parameters
    ----------
    adata
        Cells by genes with raw counts.
    perturbation_key
        obs column with the perturbation of every cell.
    control
        Name of the control condition in that column.
    separator
        String between the parts of a combination.
    n_components, layer, max_cells, seed
        Passed to :func:`coexpression_features`.

    Returns
    -------
    features
        One row per part of the non-control perturbations.
    kind
        ``"coexpression"`` (:func:`coexpression_features` of the genes that vary across the
        control cells) when every part is in ``adata.var_names`` and at least 2 genes vary,
        else ``"one_hot"`` (:func:`one_hot_features` of the parts).

    Raises
    ------
    KeyError
        If ``perturbation_key`` is not in ``adata.obs``.
    ValueError
        If ``control`` is not among the perturbations, there is no other perturbation, or
        :func:`coexpression_features` fails (e.g. a target gene is not expressed in controls).
    """
    if perturbation_key not in adata.obs:
        raise KeyError(
            f"adata.obs has no column {perturbation_key!r}; available: {list(adata.obs)}."
        )
    column = adata.obs[perturbation_key]
    if column.isna().any():
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] has {int(column.isna().sum())} missing value(s); "
            "every cell needs a perturbation (the control condition included)."
        )
    names = column.astype(str).to_numpy()
    control_mask = names == str(control)
    if not control_mask.any():
        shown = sorted(set(names))[:10]
        raise ValueError(
            f"The control {control!r} is not among the values of adata.obs"
            f"[{perturbation_key!r}] (e.g. {shown})."
        )
    parts = perturbation_parts(pd.unique(names), str(control), separator)
    if not parts:
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] holds only the control {control!r}; there are no "
            "perturbations to describe."
        )
    var_names = set(adata.var_names.astype(str))
    if all(p in var_names for p in parts):
        genes = genes_varying_in(adata, control_mask, layer)
        if len(genes) >= 2:
            features = coexpression_features(
                adata, genes, control_mask, n_components=n_components, layer=layer,
                max_cells=max_cells, seed=seed,
            )  # fmt: skip
            return features, "coexpression"
    return one_hot_features(parts), "one_hot"


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


# --------------------------------------------------------------------------------------------
# Using feature tables
# --------------------------------------------------------------------------------------------
def _check_features(features: pd.DataFrame, name: str = "features") -> pd.DataFrame:
    """A feature table with string index, checked to be unique, numeric and finite."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame (one row per part), got {type(features).__name__}."
        )
    non_numeric = [
        str(c) for c, t in features.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
    ]
    if non_numeric:
        raise ValueError(f"{name} has non-numeric column(s) {non_numeric[:10]}.")
    features = features.copy()
    features.index = features.index.astype(str)
    if not features.index.is_unique:
        repeated = sorted(set(features.index[features.index.duplicated()]))
        raise ValueError(f"{name} has repeated row(s) {repeated[:10]}; parts must be unique.")
    values = features.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has NaN or infinite values in the row(s) of {list(features.index[bad])[:10]}."
        )
    return features


def perturbation_feature_matrix(
    perturbations: Sequence[str], features: pd.DataFrame, control: str, separator: str = "+"
) -> np.ndarray:
    """Features of every perturbation: the sum of the feature rows of its parts.

    Parameters
    ----------
    perturbations
        Perturbation names (repeats are fine).
    features
        One row per single part (index: part names), e.g. from
        :func:`default_perturbation_features`.
    control
        Name of the control condition, which gets a row of zeros; it is also dropped as a part
        of combinations (as are ``"ctrl"`` and ``"control"``).
    separator
        String between the parts of a combination.

    Returns
    -------
    Float64 array of shape ``(len(perturbations), n_features)``.

    Raises
    ------
    KeyError
        Naming every perturbation with parts that have no row in ``features`` (and the parts).
    ValueError
        If ``features`` has non-finite or non-numeric values or repeated rows, or a name is
        missing or has no parts.
    """
    features = _check_features(features)
    values = features.to_numpy(dtype=np.float64)
    position = pd.Series(np.arange(len(features)), index=features.index)
    dropped = _control_parts(control)
    names = np.asarray(perturbations, dtype=object).reshape(-1)
    unique = _unique_names(names)
    out = np.zeros((len(unique), values.shape[1]))
    missing: dict[str, list[str]] = {}
    for i, name in enumerate(unique):
        if name == control:
            continue
        parts = split_combination(name, separator, control_parts=dropped)
        lacking = [p for p in parts if p not in position.index]
        if lacking:
            missing[str(name)] = lacking
            continue
        out[i] = values[position[parts].to_numpy()].sum(axis=0)
    if missing:
        listed = "; ".join(f"{n!r} (missing {parts})" for n, parts in missing.items())
        raise KeyError(
            f"No features for the parts of {len(missing)} perturbation(s): {listed}. The "
            f"feature table has {len(features)} rows; add rows for these parts."
        )
    inverse = pd.Index(unique).get_indexer(names)
    return out[inverse]


def features_from_uns(adata: AnnData, key: str) -> pd.DataFrame:
    """A user-provided feature table stored in ``adata.uns[key]``.

    Parameters
    ----------
    adata
        AnnData with the table in ``uns``.
    key
        Key in ``adata.uns``. The value may be

        - a :class:`pandas.DataFrame` with one row per part;
        - a dict with ``"index"`` (parts), ``"data"`` (2-D array) and optionally ``"columns"``,
          as written by ``DataFrame.to_dict(orient="split")``;
        - a dict mapping every part to its 1-D feature vector (columns ``"feature_0"``, ...).

    Returns
    -------
    The table with string index, float values.

    Raises
    ------
    KeyError
        If ``key`` is not in ``adata.uns``.
    TypeError
        If the value has another type.
    ValueError
        If shapes disagree, or values are non-numeric or non-finite, or rows repeat.
    """
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no {key!r}; available: {list(adata.uns)}.")
    value = adata.uns[key]
    name = f"adata.uns[{key!r}]"
    if isinstance(value, pd.DataFrame):
        table = value
    elif isinstance(value, Mapping) and {"index", "data"} <= set(value) <= _SPLIT_KEYS:
        table = _split_table(value, name)
    elif isinstance(value, Mapping):
        table = _vectors_table(value, name)
    else:
        raise TypeError(
            f"{name} is a {type(value).__name__}; expected a DataFrame, a dict with 'index', "
            "'columns' and 'data', or a dict mapping every part to its feature vector."
        )
    if table.shape[0] == 0:
        raise ValueError(f"{name} has no rows.")
    return _check_features(table, name).astype(np.float64)


def _split_table(value: Mapping, name: str) -> pd.DataFrame:
    """DataFrame from the ``orient="split"`` dict format."""
    index = [str(i) for i in np.asarray(value["index"], dtype=object).reshape(-1)]
    try:
        data = np.asarray(value["data"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}['data'] must be a numeric 2-D array ({err}).") from None
    if data.ndim == 1 and len(index) == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[0] != len(index):
        raise ValueError(
            f"{name}['data'] has shape {data.shape}, but {name}['index'] has {len(index)} "
            "entries; expected a 2-D array with one row per index entry."
        )
    if "columns" in value:
        columns = [str(c) for c in np.asarray(value["columns"], dtype=object).reshape(-1)]
        if len(columns) != data.shape[1]:
            raise ValueError(
                f"{name}['columns'] has {len(columns)} entries, but {name}['data'] has "
                f"{data.shape[1]} columns."
            )
    else:
        columns = [f"feature_{j}" for j in range(data.shape[1])]
    return pd.DataFrame(data, index=pd.Index(index), columns=columns)


def _vectors_table(value: Mapping, name: str) -> pd.DataFrame:
    """DataFrame from a dict mapping every part to its feature vector."""
    rows, lengths = {}, {}
    for part, vector in value.items():
        try:
            row = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}[{part!r}] is not a numeric vector ({type(vector).__name__})."
            ) from None
        if row.ndim != 1:
            raise ValueError(f"{name}[{part!r}] has shape {row.shape}; expected a 1-D vector.")
        rows[str(part)] = row
        lengths.setdefault(row.size, []).append(str(part))
    if len(lengths) > 1:
        summary = {n: parts[:3] for n, parts in lengths.items()}
        raise ValueError(
            f"The feature vectors in {name} have different lengths (length: parts) {summary}."
        )
    if not rows:
        raise ValueError(f"{name} is an empty dict.")
    data = np.stack(list(rows.values()))
    return pd.DataFrame(
        data, index=pd.Index(list(rows)), columns=[f"feature_{j}" for j in range(data.shape[1])]
    )

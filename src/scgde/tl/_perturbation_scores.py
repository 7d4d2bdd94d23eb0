r"""Scores of predicted perturbation responses against held-out observed cells.

Conventions shared by :func:`pseudobulk_shifts`, :func:`score_perturbations` and the baselines
(:func:`scgde.tl.mean_shift_baseline`, :func:`scgde.tl.ridge_baseline`):

* Expression inputs are **log-normalised** (``log1p`` of counts per 10,000, as
  ``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p``), in ``adata.X`` or in
  ``adata.layers[layer]``. Nothing checks this; raw counts give scores on another scale.
* The **pseudobulk** of a set of cells is its mean expression vector.
* The **shift** of a perturbation in a context is
  ``pseudobulk(perturbed cells of the context) - pseudobulk(control cells of the context)``.
  Without a context key, all control cells form one control.
* Labels (perturbations, contexts) are compared as strings. A table of pairs is indexed by the
  perturbation name (an :class:`~pandas.Index` named ``perturbation_key``) or, when a
  ``context_key`` is used, by ``(perturbation, context)`` (a :class:`~pandas.MultiIndex` named
  ``[perturbation_key, context_key]``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .._pca import PrincipalAxes
from .._utils import check_int, dense_rows, layer_matrix, subsample
from ..metrics._kernel import energy_distance
from ._perturbation_inputs import (
    Control,
    aligned_to,
    check_keys,
    group_means,
    names_list,
    obs_labels,
    pair_codes,
    pair_index,
    pair_name,
    resolve_control,
    shifts_and_control,
)

# A shift vector whose standard deviation across genes is below this fraction of the expression
# scale (max |control pseudobulk|, at least 1) is treated as constant: its correlation is undefined.
_CONSTANT_RTOL = 1e-10
#: The metric columns of :func:`score_perturbations`, in order.
SCORE_COLUMNS = ("r2", "mse", "r2_top_de", "mse_top_de", "energy_distance")


# ---------------------------------------------------------------------------- public tools
def pseudobulk_shifts(
    adata: AnnData,
    perturbation_key: str,
    control,
    context_key: str | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Shift of every (perturbation, context) pair: its pseudobulk minus its control's.

    Expression is log-normalised (``log1p`` of counts per 10,000). The pseudobulk of a set of
    cells is their mean expression; the shift of perturbation ``p`` in context ``c`` is
    ``mean(cells of p in c) - mean(control cells of c)`` (without ``context_key``: minus the
    mean of all control cells). The table is what :func:`score_perturbations` compares and what
    the baselines average or regress on.

    Parameters
    ----------
    adata
        Cells with log-normalised expression in ``X`` (or ``layers[layer]``) and the label
        column ``obs[perturbation_key]`` (and ``obs[context_key]``).
    perturbation_key
        obs column naming each cell's perturbation.
    control
        The control: the label of the control cells in ``obs[perturbation_key]`` (e.g.
        ``"control"``), or an AnnData of control cells with the same genes (and
        ``obs[context_key]``); with an AnnData, every cell of ``adata`` counts as perturbed.
    context_key
        obs column naming each cell's context (cell line, donor, ...); shifts are then taken
        against the control cells of the same context. ``None``: one pooled control.
    layer
        Layer holding the log-normalised expression; ``None`` uses ``X``.

    Returns
    -------
    DataFrame
        Pairs × genes, pairs sorted; indexed by perturbation (``Index`` named
        ``perturbation_key``), or by ``(perturbation, context)`` (``MultiIndex``) with a
        context key. Columns are ``adata.var_names``. ``adata`` is not modified.

    Raises
    ------
    KeyError
        If a column or layer is missing, or a context of a perturbed cell has no control cells.
    ValueError
        If no cell carries the control label, a label is missing, the genes of a control AnnData
        differ, or the controls contain NaN/inf.
    """
    return shifts_and_control(adata, perturbation_key, control, context_key, layer)[0]


def _correlation_squared(a: np.ndarray, b: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """Row-wise squared Pearson r of ``a`` and ``b``; NaN where a row is (nearly) constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm_a = np.sqrt(np.einsum("ij,ij->i", a, a))
    norm_b = np.sqrt(np.einsum("ij,ij->i", b, b))
    n = a.shape[1]
    constant = (norm_a <= tolerance * np.sqrt(n)) | (norm_b <= tolerance * np.sqrt(n))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->i", a, b) / (norm_a * norm_b)
    r = np.clip(r, -1.0, 1.0)
    r[constant] = np.nan
    return r**2


def score_perturbations(
    predicted: AnnData,
    observed: AnnData,
    control,
    perturbation_key: str = "perturbation",
    context_key: str | None = None,
    n_top_de: int = 20,
    n_comps: int = 30,
    layer: str | None = None,
    max_cells: int | None = 500,
    seed: int = 0,
    predicted_shift: pd.DataFrame | None = None,
) -> pd.DataFrame:
    r"""Score predicted cells of held-out perturbations against the observed cells.

    All three AnnData hold log-normalised expression (``log1p`` of counts per 10,000).
    For every (perturbation, context) pair present in ``predicted``, with shifts as in
    :func:`pseudobulk_shifts` (pseudobulk of the pair minus pseudobulk of the control cells of
    its context; the same control is used for the predicted and the true shift):

    ``r2``
        Squared Pearson correlation, across all genes, between the predicted and the true shift.
        Invariant to the sign and scale of the prediction (a negated shift scores 1).
    ``mse``
        Mean over genes of (predicted shift - true shift)\ :sup:`2`.
    ``r2_top_de``, ``mse_top_de``
        The same on the pair's top ``n_top_de`` DE genes, defined here as the genes with the
        largest absolute **true** shift (ties: first in gene order) — an effect-size ranking on
        the log-normalised pseudobulk, not a statistical test.
    ``energy_distance``
        Squared energy distance (:func:`scgde.metrics.energy_distance`, V-statistic) between the
        predicted and the observed cells of the pair, in a PCA shared by all pairs of the context
        (``n_comps`` components, centred, not scaled), fitted on the control cells of the context
        plus all observed (non-control) cells of the context (everything, without a context
        key). Each set (control, each observed pair, each predicted pair) is subsampled to at
        most ``max_cells`` cells, without replacement, with ``numpy.random.default_rng(seed)``
        drawn afresh for every set. It compares whole distributions, not just means; as an
        estimate of the population value it is biased upwards by about
        :math:`E\lVert X-X'\rVert/n + E\lVert Y-Y'\rVert/m`, so compare models on equal cell
        numbers.
    ``n_predicted``, ``n_observed``
        Numbers of cells of the pair (before subsampling).

    The predicted and the true shift subtract the same control pseudobulk, so its sampling
    noise correlates them even for an uninformative prediction (most with few control cells);
    judge ``r2`` against a baseline such as :func:`scgde.tl.mean_shift_baseline`, not
    against 0. A shift that is constant across genes (for instance a prediction equal to the
    control) has no correlation: its ``r2`` is NaN and a warning names the pairs. Use
    :func:`summarize_scores` for the mean, median and standard error over pairs.

    Parameters
    ----------
    predicted
        Predicted cells, log-normalised, with ``obs[perturbation_key]`` (and
        ``obs[context_key]``), e.g. the output of a model or of
        :func:`scgde.tl.mean_shift_baseline`.
    observed
        The true cells of (at least) the same pairs, log-normalised, same genes.
    control
        An AnnData of control cells (with ``obs[context_key]`` when contexts are used), or the
        control label of ``observed.obs[perturbation_key]`` (control cells taken from
        ``observed``).
    perturbation_key
        obs column naming the perturbation, in ``predicted`` and ``observed``.
    context_key
        obs column naming the context; ``None``: one context and a pooled control.
    n_top_de
        Number of top DE genes (>= 2; all genes if there are fewer).
    n_comps
        Principal components for the energy distance (fewer if the fit set is smaller).
    layer
        Layer holding the log-normalised expression in all three AnnData; ``None`` uses ``X``.
    max_cells
        Cells per set at most for the PCA and the energy distance; ``None``: all cells.
    seed
        Seed of the subsampling and of the (possibly randomised) PCA solver.
    predicted_shift
        The predicted shifts to score instead of those of the predicted cells, indexed like
        :func:`pseudobulk_shifts` with the genes as columns, e.g. ``predicted.uns
        ["predicted_shift"]`` of a model whose generator is biased (the shift is then taken
        between its own decoded perturbed and control cells); the energy distance still
        compares the predicted cells.

    Returns
    -------
    DataFrame
        One row per pair of ``predicted``, sorted, indexed as :func:`pseudobulk_shifts`; columns
        ``r2``, ``mse``, ``r2_top_de``, ``mse_top_de``, ``energy_distance``, ``n_predicted``,
        ``n_observed``. The inputs are not modified.

    Raises
    ------
    KeyError
        If a column or layer is missing, a predicted pair has no observed cells, or a context has
        no control cells (the message names them).
    ValueError
        If the genes differ, a label is missing, values are not finite, or an argument is bad.

    Examples
    --------
    >>> pred = scgde.tl.mean_shift_baseline(train_cells, "perturbation", "control", train, test)
    >>> table = scgde.tl.score_perturbations(pred, test_cells, control_cells)
    >>> scgde.tl.summarize_scores(table)
    """
    check_keys(perturbation_key, context_key)
    n_top_de = check_int(n_top_de, "n_top_de", minimum=2)
    n_comps = check_int(n_comps, "n_comps")
    if max_cells is not None:
        max_cells = check_int(max_cells, "max_cells")
    genes = predicted.var_names
    if genes.has_duplicates:
        raise ValueError("predicted.var_names has duplicates; make them unique first.")
    if len(genes) == 0:
        raise ValueError("predicted has no genes.")
    observed = aligned_to(observed, genes, "observed", "predicted")
    control_object, observed_perturbed = resolve_control(
        observed, perturbation_key, control, context_key, layer, "observed"
    )

    # pairs of the predicted cells, and the matching observed cells
    pred_perts = obs_labels(predicted, perturbation_key, "predicted")
    pred_ctx = None if context_key is None else obs_labels(predicted, context_key, "predicted")
    pairs, pred_codes = pair_codes(pred_perts, pred_ctx, np.ones(predicted.n_obs, dtype=bool))
    if not pairs:
        raise ValueError("predicted has no cells.")
    obs_perts = obs_labels(observed, perturbation_key, "observed")
    obs_ctx = None if context_key is None else obs_labels(observed, context_key, "observed")
    obs_pairs, obs_all_codes = pair_codes(obs_perts, obs_ctx, observed_perturbed)
    position = {pair: i for i, pair in enumerate(obs_pairs)}
    missing = [pair for pair in pairs if pair not in position]
    if missing:
        raise KeyError(
            f"Predicted pair(s) {names_list(missing)} have no cells in `observed` (by "
            f"{perturbation_key!r}{'' if context_key is None else f', {context_key!r}'})."
        )
    control_object.check_contexts([c for _, c in pairs], "predicted")
    # observed codes renumbered to the predicted pairs (-1: not scored)
    to_scored = np.full(len(obs_pairs) + 1, -1, dtype=np.int64)
    to_scored[[position[pair] for pair in pairs]] = np.arange(len(pairs))
    obs_codes = to_scored[obs_all_codes]  # code -1 maps to the last entry, -1

    pred_matrix = layer_matrix(predicted, layer, "predicted")
    obs_matrix = layer_matrix(observed, layer, "observed")
    control_means = np.stack([control_object.means[c] for _, c in pairs])
    pred_shift = group_means(pred_matrix, pred_codes, len(pairs)) - control_means
    if predicted_shift is not None:
        pred_shift = _shift_rows(predicted_shift, pairs, genes, perturbation_key, context_key)
    true_shift = group_means(obs_matrix, obs_codes, len(pairs)) - control_means
    for name, shift in (("predicted", pred_shift), ("observed", true_shift)):
        bad = [pair for pair, row in zip(pairs, shift, strict=True) if not np.isfinite(row).all()]
        if bad:
            raise ValueError(f"The {name} cells of pair(s) {names_list(bad)} contain NaN or inf.")

    tolerance = _CONSTANT_RTOL * np.array([control_object.scale(c) for _, c in pairs])
    k = min(n_top_de, len(genes))
    top = np.argsort(-np.abs(true_shift), axis=1, kind="stable")[:, :k]
    pred_top = np.take_along_axis(pred_shift, top, axis=1)
    true_top = np.take_along_axis(true_shift, top, axis=1)
    columns = {
        "r2": _correlation_squared(pred_shift, true_shift, tolerance),
        "mse": np.mean((pred_shift - true_shift) ** 2, axis=1),
        "r2_top_de": _correlation_squared(pred_top, true_top, tolerance),
        "mse_top_de": np.mean((pred_top - true_top) ** 2, axis=1),
    }
    undefined = []
    for i, pair in enumerate(pairs):
        nan_columns = [c for c in ("r2", "r2_top_de") if np.isnan(columns[c][i])]
        if nan_columns:
            undefined.append(f"{pair_name(pair)} ({', '.join(nan_columns)})")
    if undefined:
        more = len(undefined) - 10
        shown = ", ".join(undefined[:10]) + (f" and {more} more" if more > 0 else "")
        warnings.warn(
            f"The predicted or true shift is constant across genes for {len(undefined)} pair(s), "
            f"so their squared correlation is undefined and set to NaN: {shown}.",
            RuntimeWarning,
            stacklevel=2,
        )

    columns["energy_distance"] = _energy_by_context(
        pairs,
        pred_matrix,
        pred_codes,
        obs_matrix,
        obs_all_codes,
        obs_pairs,
        control_object,
        n_comps,
        max_cells,
        seed,
    )
    columns["n_predicted"] = np.bincount(pred_codes, minlength=len(pairs))
    columns["n_observed"] = np.bincount(obs_codes[obs_codes >= 0], minlength=len(pairs))
    return pd.DataFrame(columns, index=pair_index(pairs, perturbation_key, context_key))


def _shift_rows(table: pd.DataFrame, pairs, genes, perturbation_key, context_key) -> np.ndarray:
    """Rows of a predicted-shift table for ``pairs``, columns in the order of ``genes``."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`predicted_shift` must be a DataFrame, got {type(table)}.")
    index = pair_index(pairs, perturbation_key, context_key)
    found = index.isin(table.index)
    missing_rows = [pair for pair, ok in zip(pairs, found, strict=True) if not ok]
    if missing_rows:
        raise KeyError(f"`predicted_shift` has no row for pair(s) {names_list(missing_rows)}.")
    missing_genes = genes.difference(table.columns.astype(str))
    if len(missing_genes):
        raise KeyError(f"`predicted_shift` lacks genes {names_list(list(missing_genes))}.")
    table = table.set_axis(table.columns.astype(str), axis=1)
    return table.loc[index, list(genes)].to_numpy(dtype=np.float64)


def _rows_by_code(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Indices of the cells of every code ``0..n_groups-1`` (ascending)."""
    keep = np.flatnonzero(codes >= 0)
    order = keep[np.argsort(codes[keep], kind="stable")]
    return np.split(order, np.cumsum(np.bincount(codes[keep], minlength=n_groups))[:-1])


def _energy_by_context(
    pairs,
    pred_matrix,
    pred_codes,
    obs_matrix,
    obs_codes,
    obs_pairs,
    control_object: Control,
    n_comps: int,
    max_cells: int | None,
    seed: int,
) -> np.ndarray:
    """Energy distance of every scored pair, in a PCA fitted per context (see the docstring)."""
    pred_rows = _rows_by_code(pred_codes, len(pairs))
    obs_rows = _rows_by_code(obs_codes, len(obs_pairs))
    obs_position = {pair: i for i, pair in enumerate(obs_pairs)}
    result = np.full(len(pairs), np.nan)
    for context in sorted({c for _, c in pairs}, key=lambda c: "" if c is None else c):
        in_context = [i for i, obs_pair in enumerate(obs_pairs) if obs_pair[1] == context]
        obs_sub = {i: subsample(obs_rows[i], max_cells, seed) for i in in_context}
        control_rows = subsample(control_object.rows[context], max_cells, seed)
        fit = np.concatenate(
            [dense_rows(control_object.matrix, control_rows)]
            + [dense_rows(obs_matrix, obs_sub[i]) for i in in_context]
        )
        basis = PrincipalAxes.fit(fit, max(1, min(n_comps, fit.shape[0] - 1)))
        mean, axes = basis.mean, basis.axes
        for j, pair in enumerate(pairs):
            if pair[1] != context:
                continue
            observed_points = (dense_rows(obs_matrix, obs_sub[obs_position[pair]]) - mean) @ axes.T
            predicted_points = (
                dense_rows(pred_matrix, subsample(pred_rows[j], max_cells, seed)) - mean
            ) @ axes.T
            result[j] = energy_distance(predicted_points, observed_points)
    return result


def summarize_scores(table: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Mean, median and standard error over pairs of every score column.

    Parameters
    ----------
    table
        Output of :func:`score_perturbations`.
    columns
        Columns to summarise; default the metric columns present (``r2``, ``mse``,
        ``r2_top_de``, ``mse_top_de``, ``energy_distance``).

    Returns
    -------
    DataFrame
        One row per column; columns ``mean``, ``median``, ``se`` (sample standard deviation
        over pairs / sqrt(n); NaN for fewer than 2 pairs) and ``n`` (pairs with a finite value;
        NaN scores, e.g. an undefined ``r2``, are left out of all statistics).
    """
    if columns is None:
        columns = [c for c in SCORE_COLUMNS if c in table.columns]
        if not columns:
            raise ValueError(f"`table` has none of the score columns {list(SCORE_COLUMNS)}.")
    else:
        columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise KeyError(f"`table` has no column(s) {missing}; columns: {list(table.columns)}.")
    rows = {}
    for column in columns:
        values = pd.to_numeric(table[column], errors="raise").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        n = len(values)
        rows[column] = {
            "mean": values.mean() if n else np.nan,
            "median": np.median(values) if n else np.nan,
            "se": values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan,
            "n": n,
        }
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "score"
    return summary

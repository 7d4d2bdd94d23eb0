"""Inputs of the perturbation tools: checked labels, pairs, controls and shifts.

The conventions are those of :mod:`scgde.tl._perturbation_scores`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

from .._utils import layer_matrix


def check_keys(perturbation_key: str, context_key: str | None) -> None:
    """Both keys are strings, and different."""
    if not isinstance(perturbation_key, str) or not perturbation_key:
        raise ValueError(
            f"`perturbation_key` must be a non-empty string, got {perturbation_key!r}."
        )
    if context_key is not None:
        if not isinstance(context_key, str) or not context_key:
            raise ValueError(
                f"`context_key` must be a non-empty string or None, got {context_key!r}."
            )
        if context_key == perturbation_key:
            raise ValueError("`context_key` must differ from `perturbation_key`.")


def obs_labels(adata: AnnData, key: str, what: str) -> np.ndarray:
    """``adata.obs[key]`` as an array of strings; a missing column or value is an error."""
    if key not in adata.obs.columns:
        raise KeyError(
            f"{what}.obs has no column {key!r}; available columns: {list(adata.obs.columns)}."
        )
    column = adata.obs[key]
    n_missing = int(column.isna().sum())
    if n_missing:
        raise ValueError(f"{what}.obs[{key!r}] has {n_missing} missing values; label every cell.")
    return np.asarray(column.astype(str), dtype=object)


def group_means(matrix, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean row of every group, ``(n_groups, n_vars)`` float64; cells with code -1 are ignored.

    :func:`scanpy.get.aggregate` on an AnnData that wraps ``matrix`` (dense or sparse, not
    copied). The ignored cells form a group of their own, dropped from the result (scanpy's
    ``mask`` still counts masked cells in the mean of the group they are coded in).
    """
    codes = np.asarray(codes, dtype=np.int64)
    names = [str(i) for i in range(n_groups)]
    groups = pd.Categorical.from_codes(
        np.where(codes >= 0, codes, n_groups), categories=[*names, "ignored"]
    )
    cells = AnnData(matrix, obs=pd.DataFrame({"group": groups}, index=map(str, range(len(codes)))))
    means = sc.get.aggregate(cells, by="group", func="mean")
    return np.asarray(means[names].layers["mean"], dtype=np.float64)


def pair_index(pairs: list[tuple[str, str | None]], perturbation_key: str, context_key):
    """The index of a table of pairs: perturbation names, or (perturbation, context) tuples."""
    if context_key is None:
        return pd.Index([p for p, _ in pairs], name=perturbation_key, dtype=object)
    if not pairs:
        return pd.MultiIndex.from_arrays([[], []], names=[perturbation_key, context_key])
    return pd.MultiIndex.from_tuples(pairs, names=[perturbation_key, context_key])


def pair_name(pair: tuple[str, str | None]) -> str:
    """A pair for messages: ``'p'`` or ``('p', 'c')``."""
    return repr(pair[0]) if pair[1] is None else repr(pair)


def names_list(items, limit: int = 10) -> str:
    """The first ``limit`` items for an error message, with a count of the rest."""
    items = list(items)
    shown = ", ".join(pair_name(i) if isinstance(i, tuple) else repr(i) for i in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"[{shown}]{more}"


def aligned_to(adata: AnnData, genes: pd.Index, what: str, reference: str) -> AnnData:
    """``adata`` with the genes ``genes`` in that order (a view if reordering is needed)."""
    names = adata.var_names
    if names.has_duplicates:
        raise ValueError(f"{what}.var_names has duplicates; make them unique first.")
    if names.equals(genes):
        return adata
    missing = genes.difference(names)
    extra = names.difference(genes)
    if len(missing) or len(extra):
        raise ValueError(
            f"{what} and {reference} must have the same var_names (genes): {what} lacks "
            f"{len(missing)} of {reference}'s genes {names_list(missing, 5)} and has {len(extra)} "
            f"others {names_list(extra, 5)}. Subset both to the shared genes first."
        )
    return adata[:, genes]  # same genes, another order: a view in the reference order


# -------------------------------------------------------------------------------- controls
class Control:
    """Control cells and their pseudobulk per context (the key ``None`` without contexts)."""

    def __init__(self, matrix, contexts: np.ndarray | None, obs_names: pd.Index, what: str):
        self.matrix = matrix
        self.obs_names = obs_names
        self.what = what
        if matrix.shape[0] == 0:
            raise ValueError(f"{what} has no control cells.")
        if contexts is None:
            self.rows = {None: np.arange(matrix.shape[0])}
            codes = np.zeros(matrix.shape[0], dtype=np.int64)
            names = [None]
        else:
            codes, uniques = pd.factorize(contexts, sort=True)
            names = [str(u) for u in uniques]
            order = np.argsort(codes, kind="stable")
            split = np.split(order, np.cumsum(np.bincount(codes))[:-1])
            self.rows = dict(zip(names, split, strict=True))
        means = group_means(matrix, codes, len(names))
        if not np.isfinite(means).all():
            raise ValueError(f"The control cells ({what}) contain NaN or infinite values.")
        self.means = dict(zip(names, means, strict=True))

    def check_contexts(self, contexts, what: str) -> None:
        missing = sorted({c for c in contexts if c not in self.rows})
        if missing:
            raise KeyError(
                f"Context(s) {names_list(missing)} of {what} have no control cells in "
                f"{self.what}; contexts with controls: {names_list(sorted(self.rows))}."
            )

    def scale(self, context) -> float:
        """Expression scale of a context (max |control pseudobulk|, at least 1)."""
        return max(1.0, float(np.abs(self.means[context]).max(initial=0.0)))


def resolve_control(
    adata: AnnData,
    perturbation_key: str,
    control,
    context_key: str | None,
    layer: str | None,
    what: str = "adata",
) -> tuple[Control, np.ndarray]:
    """The control of ``adata``, and a mask of its perturbed (non-control) cells.

    ``control`` is an AnnData of control cells (then every cell of ``adata`` is perturbed) or the
    label of the control cells in ``adata.obs[perturbation_key]``.
    """
    if isinstance(control, AnnData):
        control_data = aligned_to(control, adata.var_names, "control", what)
        contexts = None if context_key is None else obs_labels(control_data, context_key, "control")
        matrix = layer_matrix(control_data, layer, "control")
        return (
            Control(matrix, contexts, control_data.obs_names, "the control AnnData"),
            np.ones(adata.n_obs, dtype=bool),
        )
    if not isinstance(control, str | int | np.integer):
        raise TypeError(
            "`control` must be an AnnData of control cells or the control label of "
            f"obs[{perturbation_key!r}], got {type(control).__name__}."
        )
    label = str(control)
    perturbations = obs_labels(adata, perturbation_key, what)
    is_control = perturbations == label
    if not is_control.any():
        raise ValueError(
            f"No cell of {what} has {perturbation_key!r} == {label!r} (the control label); "
            f"labels present: {names_list(sorted(set(perturbations)))}."
        )
    rows = np.flatnonzero(is_control)
    contexts = None if context_key is None else obs_labels(adata, context_key, what)[rows]
    matrix = layer_matrix(adata, layer, what)[rows]
    control_object = Control(
        matrix, contexts, adata.obs_names[rows], f"{what} ({perturbation_key} == {label!r})"
    )
    return control_object, ~is_control


def pair_codes(
    perturbations: np.ndarray, contexts: np.ndarray | None, mask: np.ndarray
) -> tuple[list[tuple[str, str | None]], np.ndarray]:
    """Sorted (perturbation, context) pairs of the cells in ``mask``, and each cell's pair code.

    Cells outside ``mask`` get code -1. Without contexts the context of a pair is ``None``.
    """
    codes = np.full(len(perturbations), -1, dtype=np.int64)
    rows = np.flatnonzero(mask)
    if contexts is None:
        keys = pd.Index(perturbations[rows])
        pairs_of = [(p, None) for p in sorted(set(keys))]
        lookup = {p: i for i, (p, _) in enumerate(pairs_of)}
        codes[rows] = [lookup[p] for p in keys]
    else:
        combos = list(zip(perturbations[rows], contexts[rows], strict=True))
        pairs_of = sorted(set(combos))
        lookup = {pair: i for i, pair in enumerate(pairs_of)}
        codes[rows] = [lookup[pair] for pair in combos]
    return pairs_of, codes


def shifts_and_control(
    adata: AnnData,
    perturbation_key: str,
    control,
    context_key: str | None = None,
    layer: str | None = None,
    what: str = "adata",
) -> tuple[pd.DataFrame, pd.Series, Control]:
    """:func:`pseudobulk_shifts`, with the number of cells of every pair and the control."""
    check_keys(perturbation_key, context_key)
    control_object, perturbed = resolve_control(
        adata, perturbation_key, control, context_key, layer, what
    )
    perturbations = obs_labels(adata, perturbation_key, what)
    contexts = None if context_key is None else obs_labels(adata, context_key, what)
    pairs, codes = pair_codes(perturbations, contexts, perturbed)
    control_object.check_contexts([c for _, c in pairs], what)
    means = group_means(layer_matrix(adata, layer, what), codes, len(pairs))
    if len(pairs):
        means -= np.stack([control_object.means[c] for _, c in pairs])
    index = pair_index(pairs, perturbation_key, context_key)
    table = pd.DataFrame(means, index=index, columns=adata.var_names.copy())
    counts = pd.Series(np.bincount(codes[codes >= 0], minlength=len(pairs)), index=index.copy())
    return table, counts, control_object

"""Knock-down of the target genes of genetic perturbations in generated counts.

A CRISPRi / knock-out guide lowers its target gene's expression by a factor that is nearly the
same for every target of a screen, and the distribution embedding of a set cannot carry the
identity of a target it never saw. :func:`knockdown_factors` estimates the factor of each
training target from the data; :func:`thin_targets` applies a factor to generated counts by
binomial thinning, which turns NB(mu, theta) counts into exactly NB(f * mu, theta) counts: the
target's expected expression is multiplied by ``f`` and its dispersion kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

#: Smallest knock-down factor estimated or applied (a knock-out to 0.1% of control).
MIN_FACTOR = 1e-3


def _cp10k_means(x, rows: np.ndarray, column: int) -> float:
    """Mean counts per 10k of gene ``column`` over ``rows``."""
    block = x[rows]
    totals = np.asarray(block.sum(1)).ravel()
    values = block[:, column]
    values = values.toarray().ravel() if sparse.issparse(values) else np.asarray(values).ravel()
    return float(np.mean(values / np.maximum(totals, 1.0) * 1e4))


def knockdown_factors(
    x,
    gene_index: dict[str, int],
    sets: pd.DataFrame,
    set_rows: dict[str, np.ndarray],
    control_sets: dict[str, str],
) -> pd.Series:
    """Knock-down factor of each single-gene training target, from the observed counts.

    Parameters
    ----------
    x
        Raw counts (cells × genes), dense or sparse.
    gene_index
        Column of each gene in ``x``.
    sets
        One row per perturbed set (index: set name) with columns ``target`` (the single
        target gene, or ``None`` for other perturbations) and ``context``.
    set_rows
        Rows of ``x`` of each set.
    control_sets
        The control set of each context.

    Returns
    -------
    ``factor`` of each target: the geometric mean over its contexts of the ratio of its mean
    counts per 10k in the perturbed cells to that in the context's control cells, clipped to
    ``[MIN_FACTOR, inf)``; targets never detected in the controls are left out.
    """
    logs: dict[str, list[float]] = {}
    for name, row in sets.iterrows():
        target = row["target"]
        if target is None or target not in gene_index:
            continue
        column = gene_index[target]
        control = _cp10k_means(x, set_rows[control_sets[row["context"]]], column)
        if control <= 0:
            continue
        ratio = _cp10k_means(x, set_rows[name], column) / control
        logs.setdefault(target, []).append(np.log(max(ratio, MIN_FACTOR)))
    factors = pd.Series(
        {target: float(np.exp(np.mean(values))) for target, values in logs.items()},
        name="factor",
        dtype=float,
    )
    factors.index.name = "target"
    return factors.sort_index()


def thin_targets(
    x: np.ndarray,
    x_control: np.ndarray,
    columns: Sequence[int],
    factors: Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Lower the target genes of generated cells to ``factor`` times their control level.

    ``x`` are cells generated for a perturbation and ``x_control`` the same cells decoded for
    the control (same covariates, libraries and noise). Each target column keeps a binomial
    fraction ``min(1, factor / r)`` of its counts, where ``r`` is the ratio of its total
    counts in ``x`` to that in ``x_control`` (plus half a count each): a target the generator
    already lowers is thinned only by what is missing, and none is raised. Returns a copy.
    """
    out = np.array(x, copy=True)
    for column, factor in zip(columns, factors, strict=True):
        decoded = (out[:, column].sum() + 0.5) / (x_control[:, column].sum() + 0.5)
        keep = min(1.0, max(float(factor), MIN_FACTOR) / decoded)
        if keep < 1.0:
            counts = np.rint(out[:, column]).astype(np.int64)
            out[:, column] = rng.binomial(counts, keep)
    return out

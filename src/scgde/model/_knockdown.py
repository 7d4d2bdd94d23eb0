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
_TARGETS_PER_CHUNK = 64  # target columns densified at once (memory: cells x 64 floats)


def _cp10k_columns(x, columns: list[int]) -> np.ndarray:
    """Counts per 10k of ``columns`` in every cell (cells × columns)."""
    totals = np.maximum(np.asarray(x.sum(1)).ravel(), 1.0)
    block = x[:, columns].toarray() if sparse.issparse(x) else np.asarray(x)[:, columns]
    return block / totals[:, None] * 1e4


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
    sets = sets[[t is not None and t in gene_index for t in sets["target"]]]
    targets = sorted(set(sets["target"]))
    logs: dict[str, list[float]] = {}
    for start in range(0, len(targets), _TARGETS_PER_CHUNK):
        chunk = targets[start : start + _TARGETS_PER_CHUNK]
        cp10k = _cp10k_columns(x, [gene_index[t] for t in chunk])
        for name, row in sets[sets["target"].isin(chunk)].iterrows():
            values = cp10k[:, chunk.index(row["target"])]
            control = values[set_rows[control_sets[row["context"]]]].mean()
            if control <= 0:
                continue
            ratio = values[set_rows[name]].mean() / control
            logs.setdefault(row["target"], []).append(np.log(max(ratio, MIN_FACTOR)))
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

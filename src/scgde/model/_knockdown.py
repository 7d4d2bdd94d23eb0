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
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from .._constants import X_KEY
from .._utils import size_factors
from ..data import perturbation_parts
from ..data._perturbation_names import control_parts, split_combination

#: Smallest knock-down factor estimated or applied (a knock-out to 0.1% of control).
MIN_FACTOR = 1e-3
_TARGETS_PER_CHUNK = 64  # target columns densified at once (memory: cells x 64 floats)


def _cp10k_columns(x, columns: list[int]) -> np.ndarray:
    """Counts per 10k of ``columns`` in every cell (cells × columns)."""
    block = x[:, columns].toarray() if sparse.issparse(x) else np.asarray(x)[:, columns]
    return block * size_factors(x.sum(1))[:, None]


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


class KnockdownMixin:
    """Knock-down of the targets in the cells a :class:`~scgde.model.PerturbationGDE` predicts."""

    def _resolve_knockdown(self, request: bool | None) -> bool:
        if request is not None and not isinstance(request, bool | np.bool_):
            raise TypeError(f"`target_knockdown` must be True, False or None, got {request!r}.")
        if request is False:
            return False
        parts = perturbation_parts(
            self.adata.obs[self.perturbation_key].astype(str).unique(),
            self.control,
            self.separator,
        )
        not_genes = [p for p in parts if p not in self._gene_columns]
        problem = None
        if self._setup_args.get("obsm_key") or not self.module.count_data:
            problem = "it needs count data in gene space (not `obsm_key` or a Gaussian likelihood)"
        elif not_genes:
            problem = (
                f"the perturbation parts {not_genes[:5]}{' ...' if len(not_genes) > 5 else ''} "
                "are not genes of adata.var_names"
            )
        if problem is not None and request:
            raise ValueError(f"`target_knockdown=True` cannot be used: {problem}.")
        return problem is None

    @cached_property
    def _gene_columns(self) -> dict[str, int]:
        """Column of each gene of the model, by name."""
        return {str(g): i for i, g in enumerate(self.var_names)}

    def _gene_parts(self, perturbation: str) -> list[str]:
        """The parts of ``perturbation`` that are genes of the model (none for the control)."""
        if perturbation == self.control:
            return []
        parts = split_combination(
            perturbation, self.separator, control_parts=control_parts(self.control)
        )
        return [p for p in parts if p in self._gene_columns]

    def _estimate_knockdown(self) -> None:
        """Knock-down factor of each single training target and their median."""
        pairs = self._pairs(self.adata)
        set_rows = self._set_rows(self.adata)
        rows = {name: set_rows[name] for name in pairs.index}
        controls = {
            row.context: name for name, row in pairs.iterrows() if row.perturbation == self.control
        }
        perturbed = pairs[
            (pairs["perturbation"] != self.control) & pairs["context"].isin(list(controls))
        ].copy()
        perturbed["target"] = [
            parts[0] if len(parts) == 1 else None
            for parts in map(self._gene_parts, perturbed["perturbation"])
        ]
        x = self.adata_manager.get_from_registry(X_KEY)
        factors = knockdown_factors(x, self._gene_columns, perturbed, rows, controls)
        if factors.empty:
            raise ValueError(
                "`target_knockdown` needs single-gene perturbations whose target is detected in "
                "the control cells; there are none. Pass `target_knockdown=False`."
            )
        self.knockdown_factors_ = factors
        self.knockdown_factor_ = float(np.exp(np.median(np.log(factors.to_numpy()))))

    def _knock_down_targets(
        self, x, x_control, perturbations, n_cells, seed, median_only: bool = False
    ) -> pd.DataFrame:
        """Thin the target genes of each pair's cells in ``x`` (in place) to their knock-down
        factor (the training median for every target with ``median_only``, as for an unseen
        target); returns the factor used for each (perturbation, target)."""
        if self.knockdown_factors_ is None:
            self._estimate_knockdown()
        records = []
        rng = np.random.default_rng(None if seed is None else [seed, 1])
        for i, perturbation in enumerate(perturbations):
            targets = self._gene_parts(perturbation)
            if not targets:
                continue
            factors = [
                self.knockdown_factor_
                if median_only
                else float(self.knockdown_factors_.get(t, self.knockdown_factor_))
                for t in targets
            ]
            rows = slice(i * n_cells, (i + 1) * n_cells)
            x[rows] = thin_targets(
                x[rows], x_control[rows], [self._gene_columns[t] for t in targets], factors, rng
            )
            records += [
                {
                    "perturbation": perturbation,
                    "target": t,
                    "factor": f,
                    "seen": t in self.knockdown_factors_.index,
                }
                for t, f in zip(targets, factors, strict=True)
            ]
        return pd.DataFrame(records)

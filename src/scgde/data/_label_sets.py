"""Sets indexed by a label value: Gaussian-kernel weights around a continuous label, or
per-cell label probabilities (the two non-discrete cases of the GDE paper's label prior)."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Kernel weights are cut off beyond this many bandwidths (weight ``exp(-8) < 3.4e-4``).
KERNEL_CUTOFF = 4.0
#: The default bandwidth is this fraction of the central 98% range of the label.
DEFAULT_BANDWIDTH_FRACTION = 1 / 20


class LabelSets:
    """Per-cell weights of the set at each label value.

    Subclasses define :meth:`members` (the cells of the set at one value and their weights),
    :meth:`pairs` (every (cell, value) pair of positive weight, for embedding many values in
    one stream) and :meth:`draw_values` (label values drawn from the label prior, the
    centres of training sets).
    """

    #: Number of cells the weights are defined on.
    n_obs: int

    def members(self, value) -> tuple[np.ndarray, np.ndarray]:
        """Indices (increasing) of the cells of positive weight at ``value``, and the weights."""
        raise NotImplementedError

    def pairs(self, cells: np.ndarray, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cell positions in cells, value positions in values, weights)`` of every pair of
        positive weight, ordered by cell."""
        raise NotImplementedError

    def draw_values(self, rng: np.random.Generator, n: int, cells: np.ndarray) -> list:
        """``n`` label values drawn from the empirical label distribution of ``cells``."""
        raise NotImplementedError

    def draw_cells(
        self, rng: np.random.Generator, value, n: int, allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """``n`` cells drawn with replacement with probabilities proportional to their weight
        at ``value`` (among the cells where the boolean mask ``allowed`` is true, if given): a
        sample of the set's distribution."""
        indices, weights = self.members(value)
        if allowed is not None:
            keep = allowed[indices]
            indices, weights = indices[keep], weights[keep]
        if indices.size == 0:
            raise ValueError(f"No cell has a positive weight at label value {value!r}.")
        return rng.choice(indices, n, replace=True, p=weights / weights.sum())

    def effective_cells(self, values) -> np.ndarray:
        """Kish's effective number of cells ``(sum w)^2 / sum w^2`` of the set at each value."""
        out = []
        for value in values:
            _, weights = self.members(value)
            out.append(weights.sum() ** 2 / (weights**2).sum() if weights.size else 0.0)
        return np.asarray(out)


class ContinuousLabelSets(LabelSets):
    """Gaussian-kernel sets around values of a continuous label (age, pseudotime, dose).

    The set at ``y0`` weights each cell by ``exp(-(y - y0)^2 / (2 h^2))``, cut off at
    ``KERNEL_CUTOFF`` bandwidths ``h``. With ``h`` smaller than a quarter of the gap between
    distinct label values, each set holds the cells of one value only: the discrete case.

    Parameters
    ----------
    labels
        The label of every cell (finite numbers).
    bandwidth
        Kernel bandwidth ``h > 0``, in the label's units.
    """

    def __init__(self, labels: np.ndarray, bandwidth: float):
        self.labels = np.asarray(labels, dtype=np.float64)
        self.bandwidth = float(bandwidth)
        self.n_obs = self.labels.size
        self._order = np.argsort(self.labels, kind="stable")
        self._sorted = self.labels[self._order]

    def _kernel(self, distance: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * (distance / self.bandwidth) ** 2)

    def members(self, value) -> tuple[np.ndarray, np.ndarray]:
        reach = KERNEL_CUTOFF * self.bandwidth
        lo = np.searchsorted(self._sorted, value - reach, side="left")
        hi = np.searchsorted(self._sorted, value + reach, side="right")
        indices = np.sort(self._order[lo:hi])
        return indices, self._kernel(self.labels[indices] - value)

    def pairs(self, cells: np.ndarray, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        grid = values[order]
        y = self.labels[cells]
        reach = KERNEL_CUTOFF * self.bandwidth
        lo = np.searchsorted(grid, y - reach, side="left")
        hi = np.searchsorted(grid, y + reach, side="right")
        counts = hi - lo
        cell_pos = np.repeat(np.arange(len(cells)), counts)
        first_pair = np.repeat(np.cumsum(counts) - counts, counts)  # of each pair's cell
        value_pos = order[np.repeat(lo, counts) + np.arange(counts.sum()) - first_pair]
        weights = self._kernel(y[cell_pos] - values[value_pos])
        return cell_pos, value_pos, weights

    def draw_values(self, rng: np.random.Generator, n: int, cells: np.ndarray) -> list:
        return list(self.labels[rng.choice(cells, n, replace=True)])


class ProbabilityLabelSets(LabelSets):
    """Sets of a noisy categorical label, each cell weighted by its label probability.

    The set of category ``k`` weights each cell by ``P(label = k | cell)`` (e.g. a clone
    barcode or a cell-type call with per-cell probabilities). One-hot probabilities give the
    discrete case.

    Parameters
    ----------
    probabilities
        ``(n_cells, n_categories)`` non-negative weights.
    categories
        Name of each column.
    """

    def __init__(self, probabilities: np.ndarray, categories):
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.categories = [str(c) for c in categories]
        self.n_obs = self.probabilities.shape[0]

    def _column(self, value) -> int:
        if str(value) not in self.categories:
            raise ValueError(f"Unknown label {value!r}; the labels are {self.categories[:20]}.")
        return self.categories.index(str(value))

    def members(self, value) -> tuple[np.ndarray, np.ndarray]:
        column = self.probabilities[:, self._column(value)]
        indices = np.flatnonzero(column > 0)
        return indices, column[indices]

    def pairs(self, cells: np.ndarray, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        columns = [self._column(v) for v in values]
        table = self.probabilities[np.asarray(cells)][:, columns]
        cell_pos, value_pos = np.nonzero(table > 0)
        return cell_pos, value_pos, table[cell_pos, value_pos]

    def draw_values(self, rng: np.random.Generator, n: int, cells: np.ndarray) -> list:
        mass = self.probabilities[cells].sum(axis=0)
        return [self.categories[k] for k in rng.choice(len(mass), n, p=mass / mass.sum())]


def default_bandwidth(labels: np.ndarray) -> float:
    """One twentieth of the range of the central 98% of the labels (or of all labels, where
    that range is zero)."""
    lo, hi = np.percentile(labels, [1, 99])
    spread = hi - lo if hi > lo else float(np.ptp(labels))
    if spread <= 0:
        raise ValueError("The label has a single value: a label model needs at least two.")
    return float(spread * DEFAULT_BANDWIDTH_FRACTION)


def continuous_labels(obs: pd.DataFrame, label_key: str) -> np.ndarray:
    """The numeric label column ``obs[label_key]`` as float64, or a clear error."""
    if label_key not in obs.columns:
        raise KeyError(
            f"Label column {label_key!r} not found in adata.obs. Available columns: "
            f"{list(obs.columns)}."
        )
    column = obs[label_key]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ValueError(
            f"adata.obs[{label_key!r}] has dtype {column.dtype}; `label_key` needs a numeric "
            "column (age, pseudotime, dose). For groups of cells, use scgde.model.GDE with "
            "`group_key`; for per-cell label probabilities, `label_probabilities_key`."
        )
    values = column.to_numpy(dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ValueError(
            f"adata.obs[{label_key!r}] has {bad} missing or infinite values; every cell needs a "
            "label. Drop those cells first."
        )
    return values


def label_probabilities(obsm, key: str, n_obs: int) -> tuple[np.ndarray, list[str]]:
    """The per-cell label probabilities ``obsm[key]`` and their category names, or a clear
    error (a DataFrame's columns name the categories; an array's are numbered)."""
    if key not in obsm:
        raise KeyError(f"adata.obsm has no {key!r}; available: {list(obsm)}.")
    table = obsm[key]
    if isinstance(table, pd.DataFrame):
        categories = [str(c) for c in table.columns]
        values = table.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(table.toarray() if hasattr(table, "toarray") else table)
        values = values.astype(np.float64)
        categories = [str(i) for i in range(values.shape[1])] if values.ndim == 2 else []
    if values.ndim != 2 or values.shape[0] != n_obs or values.shape[1] < 2:
        raise ValueError(
            f"adata.obsm[{key!r}] must be a cells × categories table with at least 2 "
            f"categories, got shape {values.shape}."
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"adata.obsm[{key!r}] must hold finite, non-negative probabilities.")
    if len(set(categories)) != len(categories):
        raise ValueError(f"adata.obsm[{key!r}] has duplicated category names.")
    empty = [c for c, total in zip(categories, values.sum(axis=0), strict=True) if total <= 0]
    if empty:
        raise ValueError(f"Label categories {empty[:10]} have zero probability in every cell.")
    return values, categories

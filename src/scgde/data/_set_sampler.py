"""Sampling minibatches of sets: ``groups_per_batch`` groups × up to ``set_size`` cells each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ._label_sets import LabelSets


class _SetSampler(torch.utils.data.Sampler):
    """What the samplers of sets share: the minibatch shape, the random stream and the set
    sizes (see :class:`GroupSetSampler` for the parameters)."""

    def __init__(
        self,
        set_size: int,
        groups_per_batch: int,
        n_batches: int,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        min_set_size: int | None = None,
    ):
        self.set_size = set_size
        self.groups_per_batch = groups_per_batch
        self.n_batches = n_batches
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        if min_set_size is not None and not 1 <= min_set_size <= set_size:
            raise ValueError(
                f"`min_set_size` must be between 1 and set_size={set_size}, got {min_set_size!r}."
            )
        self.min_set_size = min_set_size

    def __len__(self) -> int:
        return self.n_batches

    def _rng(self) -> np.random.Generator:
        base = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        return np.random.default_rng([base, self.rank, self.world_size])

    def _set_sizes(self, rng: np.random.Generator, n_sets: int) -> np.ndarray:
        """The size of each set of a minibatch (log-uniform with ``min_set_size``)."""
        if self.min_set_size is None or self.min_set_size == self.set_size:
            return np.full(n_sets, self.set_size)
        log_size = rng.uniform(np.log(self.min_set_size), np.log(self.set_size + 1), n_sets)
        return np.minimum(np.exp(log_size).astype(np.int64), self.set_size)


class GroupSetSampler(_SetSampler):
    """Yield ``(cell_indices, set_ids)`` for minibatches of sets.

    Each minibatch draws ``groups_per_batch`` groups, cycling through random permutations of
    the groups so every group is drawn equally often. A batch repeats a group only when there are
    fewer groups than ``groups_per_batch``, and then it holds every group. Each set subsamples
    ``set_size`` cells of its group without replacement; a group with fewer cells contributes
    all its cells: sets are stored flat, so sets of different sizes need no padding.

    Parameters
    ----------
    group_cells
        For each group, the indices of its cells.
    set_size
        Cells per set (the largest set size when ``min_set_size`` is given).
    groups_per_batch
        Sets per minibatch.
    n_batches
        Minibatches per epoch.
    seed
        ``None`` draws new sets each epoch from torch's global generator (so
        ``scvi.settings.seed`` makes training reproducible); an integer draws the same sets each
        epoch (used for validation, so validation losses are comparable across epochs).
    rank, world_size
        Distributed training: each rank draws its own sets from a rank-specific stream.
    min_set_size
        With a number: each set draws its size log-uniformly between ``min_set_size`` and
        ``set_size`` (variable set sizes teach the encoder to embed sets of any size alike).
        Default: every set has ``set_size`` cells.
    """

    def __init__(
        self,
        group_cells: Sequence[np.ndarray],
        set_size: int,
        groups_per_batch: int,
        n_batches: int,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        min_set_size: int | None = None,
    ):
        if not group_cells or any(len(c) == 0 for c in group_cells):
            raise ValueError("Every group given to the sampler must contain at least one cell.")
        super().__init__(
            set_size, groups_per_batch, n_batches, seed, rank, world_size, min_set_size
        )
        self.group_cells = [np.asarray(c, dtype=np.int64) for c in group_cells]

    def _next_groups(self, rng: np.random.Generator, queue: list[int]) -> np.ndarray:
        """The groups of the next minibatch, taken from ``queue`` (refilled with permutations).

        With at least ``groups_per_batch`` groups, a batch never repeats a group: groups of a new
        permutation that are already in the batch move to that permutation's end. With fewer
        groups, every batch holds every group ``groups_per_batch // n_groups`` times and the
        remainder comes from the queue.
        """
        n_groups = len(self.group_cells)
        repeats, n_from_queue = divmod(self.groups_per_batch, n_groups)
        if n_groups >= self.groups_per_batch:
            repeats, n_from_queue = 0, self.groups_per_batch
        chosen = list(range(n_groups)) * repeats
        taken: list[int] = []
        while len(taken) < n_from_queue:
            if not queue:
                permutation = rng.permutation(n_groups).tolist()
                queue.extend([g for g in permutation if g not in taken])
                queue.extend([g for g in permutation if g in taken])
            taken.append(queue.pop(0))
        return np.asarray(chosen + taken, dtype=np.int64)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = self._rng()
        queue: list[int] = []
        for _ in range(self.n_batches):
            indices, set_ids = [], []
            groups = self._next_groups(rng, queue)
            sizes = self._set_sizes(rng, len(groups))
            for set_id, (group, size) in enumerate(zip(groups, sizes, strict=True)):
                cells = self.group_cells[group]
                if cells.size > size:
                    cells = rng.choice(cells, size, replace=False)
                indices.append(cells)
                set_ids.append(np.full(cells.size, set_id, dtype=np.int64))
            yield np.concatenate(indices), np.concatenate(set_ids)


class LabelSetSampler(_SetSampler):
    """Yield ``(cell_indices, set_ids)`` for minibatches of sets around label values.

    Each set draws its label value from the label prior (by default the empirical label
    distribution of ``cells``), then its cells, with replacement, with probabilities
    proportional to their weight at that value (see :class:`scgde.data.LabelSets`): a sample
    of the label's kernel-smoothed (or probability-weighted) distribution of cells.

    Parameters
    ----------
    label_sets
        The weights of the sets at each label value.
    cells
        The cells the sets are drawn from (e.g. the training cells).
    set_size, groups_per_batch, n_batches, seed, rank, world_size, min_set_size
        As in :class:`GroupSetSampler` (``groups_per_batch``: sets per minibatch).
    prior
        A label prior instead of the empirical one: weights (``>= 0``) indexed by label
        values, e.g. a uniform grid over the label's range.
    """

    def __init__(
        self,
        label_sets: LabelSets,
        cells: np.ndarray,
        set_size: int,
        groups_per_batch: int,
        n_batches: int,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        min_set_size: int | None = None,
        prior: pd.Series | None = None,
    ):
        super().__init__(
            set_size, groups_per_batch, n_batches, seed, rank, world_size, min_set_size
        )
        self.prior = prior
        self.label_sets = label_sets
        self.cells = np.asarray(cells, dtype=np.int64)
        if self.cells.size == 0:
            raise ValueError("The label sampler needs at least one cell.")
        self.allowed = np.zeros(label_sets.n_obs, dtype=bool)
        self.allowed[self.cells] = True

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = self._rng()
        for _ in range(self.n_batches):
            if self.prior is None:
                values = self.label_sets.draw_values(rng, self.groups_per_batch, self.cells)
            else:
                weights = self.prior.to_numpy(dtype=np.float64)
                drawn = rng.choice(len(weights), self.groups_per_batch, p=weights / weights.sum())
                values = list(self.prior.index[drawn])
            sizes = self._set_sizes(rng, len(values))
            indices = [
                self.label_sets.draw_cells(rng, value, size, self.allowed)
                for value, size in zip(values, sizes, strict=True)
            ]
            set_ids = np.repeat(np.arange(len(values)), sizes)
            yield np.concatenate(indices), set_ids

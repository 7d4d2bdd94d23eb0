"""Train/validation split by *groups* and the data loaders of set minibatches."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scvi import settings
from scvi.data import AnnDataManager
from scvi.dataloaders import DataSplitter

from ._registered import RegisteredData
from ._set_sampler import GroupSetSampler


def sets_per_epoch(n_cells: int, set_size: int, groups_per_batch: int) -> int:
    """Minibatches per epoch: enough sets that each cell is drawn about once per epoch."""
    n_sets = max(math.ceil(n_cells / set_size), groups_per_batch)
    return math.ceil(n_sets / groups_per_batch)


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class GroupDataSplitter(DataSplitter):
    """Split the groups (not the cells) into training and validation, and load set minibatches.

    A :class:`scvi.dataloaders.DataSplitter` whose split is by groups and whose loaders yield
    minibatches of sets (:class:`GroupSetSampler`) from a :class:`RegisteredData`; the loaders
    use scvi-tools' ``scvi.settings.dl_num_workers`` and ``dl_persistent_workers``.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    labels
        Group of every cell (see :func:`scgde.data.group_labels`).
    set_size, groups_per_batch
        Minibatch shape (see :class:`GroupSetSampler`).
    train_size
        Fraction of groups used for training; the rest are validation groups.
    validation_size
        Fraction of groups for validation; defaults to ``1 - train_size``.
    seed
        Seed of the split and of the (fixed) validation sets.
    extra
        Further per-cell arrays served with each minibatch (see :class:`RegisteredData`).
    min_set_size
        Training sets draw their size between ``min_set_size`` and ``set_size`` (see
        :class:`GroupSetSampler`); validation sets always have ``set_size`` cells.
    always_train
        Indices of groups never held out for validation (e.g. the control sets of a
        perturbation model, which every prediction starts from).
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        labels: pd.Categorical,
        set_size: int,
        groups_per_batch: int,
        train_size: float = 0.9,
        validation_size: float | None = None,
        seed: int = 0,
        extra: dict[str, np.ndarray] | None = None,
        min_set_size: int | None = None,
        always_train=(),
    ):
        if not 0 < train_size <= 1:
            raise ValueError(f"`train_size` must be in (0, 1], got {train_size}.")
        validation_size = 1 - train_size if validation_size is None else validation_size
        if validation_size < 0 or train_size + validation_size > 1 + 1e-9:
            raise ValueError("Need 0 <= validation_size and train_size + validation_size <= 1.")
        # the cell-level split of the parent is not used: every cell is "training" there, and
        # the split by groups below sets train_idx, val_idx, n_train and n_val
        super().__init__(adata_manager, train_size=1.0, validation_size=0.0, batch_size=1)
        self.train_size, self.validation_size = train_size, validation_size
        self.min_set_size = min_set_size
        self.extra = extra
        self.set_size = set_size
        self.groups_per_batch = groups_per_batch
        self.seed = seed
        codes = np.asarray(labels.codes)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(labels.categories) + 1))
        self.group_names = np.asarray(labels.categories, dtype=object)
        self._group_cells = [order[bounds[g] : bounds[g + 1]] for g in range(len(bounds) - 1)]

        n_groups = len(self.group_names)
        fixed = np.unique(np.asarray(always_train, dtype=np.int64))
        n_train = max(math.ceil(train_size * n_groups - 1e-9), len(fixed))
        n_val = min(math.floor(validation_size * n_groups + 1e-9), n_groups - n_train)
        if n_train < 2:
            raise ValueError(
                f"Training needs at least 2 groups, but {n_groups} group(s) with "
                f"train_size={train_size} give {n_train}. A distribution embedding is learnt by "
                "contrasting groups: check `group_key`, or add groups."
            )
        permutation = np.random.default_rng(seed).permutation(n_groups)
        # the fixed groups first: they fill training places before any random group
        permutation = np.concatenate([fixed, permutation[~np.isin(permutation, fixed)]])
        self.train_groups = np.sort(permutation[:n_train])
        self.val_groups = np.sort(permutation[n_train : n_train + n_val])
        self.train_idx = np.sort(np.concatenate([self._group_cells[g] for g in self.train_groups]))
        self.val_idx = (
            np.sort(np.concatenate([self._group_cells[g] for g in self.val_groups]))
            if n_val
            else np.empty(0, dtype=np.int64)
        )
        self.n_train = len(self.train_idx)
        self.n_val = len(self.val_idx)
        self.n_batches_train = sets_per_epoch(self.n_train, set_size, groups_per_batch)
        self._dataset = None

    def setup(self, stage: str | None = None):
        """Build the dataset of registered tensors once."""
        if self._dataset is None:
            self._dataset = RegisteredData(self.adata_manager, self.extra)

    def _loader(
        self, groups: np.ndarray, n_cells: int, seed: int | None, min_set_size: int | None = None
    ):
        self.setup()
        rank, world_size = _distributed_rank()
        sampler = GroupSetSampler(
            [self._group_cells[g] for g in groups],
            set_size=self.set_size,
            groups_per_batch=self.groups_per_batch,
            # in distributed training the ranks share an epoch's minibatches
            n_batches=math.ceil(
                sets_per_epoch(n_cells, self.set_size, self.groups_per_batch) / world_size
            ),
            seed=seed,
            rank=rank,
            world_size=world_size,
            min_set_size=min_set_size,
        )
        workers = settings.dl_num_workers
        return torch.utils.data.DataLoader(
            self._dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=workers,
            persistent_workers=bool(workers and settings.dl_persistent_workers),
        )

    def train_dataloader(self):
        """Random sets of training groups, new ones each epoch."""
        return self._loader(self.train_groups, self.n_train, None, self.min_set_size)

    def val_dataloader(self):
        """The same sets of validation groups every epoch; empty without validation groups."""
        if self.n_val == 0:
            return []
        return self._loader(self.val_groups, self.n_val, seed=self.seed)

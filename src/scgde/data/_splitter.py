"""Train/validation split (by groups, or by cells for label sets) and the data loaders of set
minibatches."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scvi import settings
from scvi.data import AnnDataManager
from scvi.dataloaders import DataSplitter

from ._label_sets import LabelSets
from ._registered import RegisteredData
from ._set_sampler import GroupSetSampler, LabelSetSampler


def sets_per_epoch(n_cells: int, set_size: int, groups_per_batch: int) -> int:
    """Minibatches per epoch: enough sets that each cell is drawn about once per epoch."""
    n_sets = max(math.ceil(n_cells / set_size), groups_per_batch)
    return math.ceil(n_sets / groups_per_batch)


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_split(train_size: float, validation_size: float | None) -> float:
    """``validation_size`` (default ``1 - train_size``) after checking both fractions."""
    if not 0 < train_size <= 1:
        raise ValueError(f"`train_size` must be in (0, 1], got {train_size}.")
    validation_size = 1 - train_size if validation_size is None else validation_size
    if validation_size < 0 or train_size + validation_size > 1 + 1e-9:
        raise ValueError("Need 0 <= validation_size and train_size + validation_size <= 1.")
    return validation_size


class _SetDataSplitter(DataSplitter):
    """What the splitters of sets share: the dataset of registered tensors and loaders of
    set minibatches drawn by a sampler (``_sampler``, defined by subclasses)."""

    def __init__(
        self,
        adata_manager: AnnDataManager,
        set_size: int,
        groups_per_batch: int,
        train_size: float,
        validation_size: float | None,
        seed: int,
        extra: dict[str, np.ndarray] | None,
        min_set_size: int | None,
    ):
        validation_size = _check_split(train_size, validation_size)
        # the cell-level split of the parent is not used: every cell is "training" there, and
        # subclasses set train_idx and val_idx, then call _split_done
        super().__init__(adata_manager, train_size=1.0, validation_size=0.0, batch_size=1)
        self.train_size, self.validation_size = train_size, validation_size
        self.min_set_size = min_set_size
        self.extra = extra
        self.set_size = set_size
        self.groups_per_batch = groups_per_batch
        self.seed = seed
        self._dataset = None

    def _split_done(self) -> None:
        """Record the sizes of the split once ``train_idx`` and ``val_idx`` are set."""
        self.n_train = len(self.train_idx)
        self.n_val = len(self.val_idx)
        self.n_batches_train = sets_per_epoch(self.n_train, self.set_size, self.groups_per_batch)

    def setup(self, stage: str | None = None):
        """Build the dataset of registered tensors once."""
        if self._dataset is None:
            self._dataset = RegisteredData(self.adata_manager, self.extra)

    def _sampler(self, train: bool, n_batches: int, rank: int, world_size: int):
        """The sampler of training (new sets each epoch) or validation (the same sets every
        epoch) minibatches."""
        raise NotImplementedError

    def _loader(self, train: bool):
        self.setup()
        rank, world_size = _distributed_rank()
        n_cells = self.n_train if train else self.n_val
        # in distributed training the ranks share an epoch's minibatches
        n_batches = math.ceil(
            sets_per_epoch(n_cells, self.set_size, self.groups_per_batch) / world_size
        )
        workers = settings.dl_num_workers
        return torch.utils.data.DataLoader(
            self._dataset,
            sampler=self._sampler(train, n_batches, rank, world_size),
            batch_size=None,
            num_workers=workers,
            persistent_workers=bool(workers and settings.dl_persistent_workers),
        )

    def train_dataloader(self):
        """Random training sets, new ones each epoch."""
        return self._loader(train=True)

    def val_dataloader(self):
        """The same validation sets every epoch; empty without validation cells."""
        if self.n_val == 0:
            return []
        return self._loader(train=False)


class GroupDataSplitter(_SetDataSplitter):
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
        super().__init__(
            adata_manager,
            set_size,
            groups_per_batch,
            train_size,
            validation_size,
            seed,
            extra,
            min_set_size,
        )
        train_size, validation_size = self.train_size, self.validation_size
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
        self._split_done()

    def _sampler(self, train: bool, n_batches: int, rank: int, world_size: int):
        groups = self.train_groups if train else self.val_groups
        if train and world_size > 1 and len(groups) >= world_size * self.groups_per_batch:
            # each process draws from its own share of the groups (the same split on every
            # process: it comes from the split seed), so a step's sets are distinct groups
            shares = np.random.default_rng([self.seed, world_size]).permutation(groups)
            groups = np.sort(shares[rank::world_size])
        return GroupSetSampler(
            [self._group_cells[g] for g in groups],
            set_size=self.set_size,
            groups_per_batch=self.groups_per_batch,
            n_batches=n_batches,
            seed=None if train else self.seed,
            rank=rank,
            world_size=world_size,
            min_set_size=self.min_set_size if train else None,
        )


class LabelDataSplitter(_SetDataSplitter):
    """Split the cells into training and validation, and load minibatches of sets around
    label values (:class:`~scgde.data.LabelSetSampler`).

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    label_sets
        The weights of the sets at each label value (see :class:`scgde.data.LabelSets`).
    set_size, groups_per_batch, train_size, validation_size, seed, extra, min_set_size
        As in :class:`GroupDataSplitter`, with fractions of **cells** instead of groups:
        validation sets are drawn around label values of validation cells, from validation
        cells only.
    prior
        Label prior of the training sets (see :class:`~scgde.data.LabelSetSampler`); each of
        its values must have training cells within reach.
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        label_sets: LabelSets,
        set_size: int,
        groups_per_batch: int,
        train_size: float = 0.9,
        validation_size: float | None = None,
        seed: int = 0,
        extra: dict[str, np.ndarray] | None = None,
        min_set_size: int | None = None,
        prior: pd.Series | None = None,
    ):
        super().__init__(
            adata_manager,
            set_size,
            groups_per_batch,
            train_size,
            validation_size,
            seed,
            extra,
            min_set_size,
        )
        self.label_sets = label_sets
        self.prior = prior
        n_cells = label_sets.n_obs
        n_train = math.ceil(self.train_size * n_cells - 1e-9)
        n_val = min(math.floor(self.validation_size * n_cells + 1e-9), n_cells - n_train)
        permutation = np.random.default_rng(seed).permutation(n_cells)
        self.train_idx = np.sort(permutation[:n_train])
        self.val_idx = np.sort(permutation[n_train : n_train + n_val])
        self._split_done()
        if prior is not None:
            training = np.zeros(n_cells, dtype=bool)
            training[self.train_idx] = True
            unreachable = [v for v in prior.index if not training[label_sets.members(v)[0]].any()]
            if unreachable:
                raise ValueError(
                    f"No training cell lies within reach of the prior's label values "
                    f"{unreachable[:5]}: drop them from the prior, or widen the bandwidth."
                )

    def _sampler(self, train: bool, n_batches: int, rank: int, world_size: int):
        """Random sets around training cells' labels (new each epoch), or the same sets
        around validation cells' labels every epoch."""
        return LabelSetSampler(
            self.label_sets,
            self.train_idx if train else self.val_idx,
            set_size=self.set_size,
            groups_per_batch=self.groups_per_batch,
            n_batches=n_batches,
            seed=None if train else self.seed,
            rank=rank,
            world_size=world_size,
            min_set_size=self.min_set_size if train else None,
            prior=self.prior if train else None,
        )

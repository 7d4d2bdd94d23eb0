"""Training of GDE models: the defaults of the recipe and the call into scvi-tools' runner."""

from __future__ import annotations

import numpy as np

from .._constants import GROUP_LABEL_KEY
from .._utils import check_int
from ..data import sets_per_epoch

#: Training steps that the default number of epochs aims at.
_DEFAULT_TARGET_STEPS = 2_000
#: Default learning rate at ``_BASE_GROUPS_PER_BATCH`` sets per step; it grows linearly with
#: the number of sets per step, up to ``_MAX_LR_SCALE`` times (measured in
#: benchmarks/ablation.py: at 64 sets per step, 4e-3 trains better per second than 2e-3 or 1e-3).
_BASE_LR = 1e-3
_BASE_GROUPS_PER_BATCH = 16
_MAX_LR_SCALE = 4.0
#: Default decay of the weight average at ``_BASE_GROUPS_PER_BATCH`` sets per step.
_EMA_DECAY = 0.999
#: Longest default learning-rate warm-up, in optimizer steps.
_MAX_LR_WARMUP_STEPS = 200
#: Longest default KL warm-up of the CVAE, in optimizer steps.
_MAX_KL_WARMUP_STEPS = 1_000


class TrainingMixin:
    """``train`` of :class:`~scgde.model.GDE`."""

    def train(
        self,
        max_epochs: int | None = None,
        set_size: int = 128,
        groups_per_batch: int = 16,
        train_size: float = 0.9,
        validation_size: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        early_stopping: bool = False,
        lr: float | None = None,
        split_seed: int = 0,
        plan_kwargs: dict | None = None,
        min_set_size: int | None = None,
        **trainer_kwargs,
    ):
        """Train the encoder and generator on random sets of cells of each group.

        Each step draws ``groups_per_batch`` training groups and between ``min_set_size`` and
        ``set_size`` cells of each (all cells of smaller groups), encodes each set to ``z`` and
        trains the generator to reproduce the set's cells given ``z``. Validation holds out
        whole **groups** (in sets of ``set_size`` cells).

        Parameters
        ----------
        max_epochs
            Number of epochs. One epoch draws enough sets that each training cell is seen about
            once (``ceil(n_cells / set_size)`` sets). Default: about 2,000 steps, between 20
            and 400 epochs.
        set_size
            Largest number of cells per set.
        groups_per_batch
            Sets per minibatch.
        train_size, validation_size
            Fractions of **groups** used for training and validation.
        accelerator, devices
            Passed to Lightning (``"auto"`` uses a GPU when there is one).
        early_stopping
            Stop when the validation ELBO stops improving (needs validation groups).
        lr
            Learning rate of Adam. Default: ``1e-3 * min(groups_per_batch / 16, 4)``, so that
            fewer, larger steps (a larger ``groups_per_batch``) train about as well per second.
        split_seed
            Seed of the group split and of the fixed validation sets.
        plan_kwargs
            Passed to :class:`scgde.train.GDETrainingPlan`: ``lr_warmup_steps`` (default: a
            tenth of the planned steps, at most 200),
            ``ema_decay`` (default ``0.999 ** (groups_per_batch / 16)``, the same average over
            the cells seen at any batch of sets; the trained model keeps the averaged weights),
            ``n_steps_kl_warmup`` (CVAE; default: a quarter of the planned steps, at most
            1,000, so a large ``max_epochs`` cap with ``max_time`` or early stopping still
            warms up fully), and :class:`scvi.train.TrainingPlan`'s arguments.
        min_set_size
            Training sets draw their size log-uniformly between ``min_set_size`` and
            ``set_size``, so that the encoder learns to embed small and large sets alike.
            Default: ``set_size // 4``; ``min_set_size=set_size`` gives sets of one size.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``).
        """
        set_size = check_int(set_size, "set_size")
        groups_per_batch = check_int(groups_per_batch, "groups_per_batch")
        labels = self._group_labels(self.adata)
        extra = None
        if self.group_label_categories_:
            codes, _ = self._group_label_codes(self.adata, self.group_label_categories_, labels)
            extra = {GROUP_LABEL_KEY: codes[np.asarray(labels.codes)]}
        splitter = self._data_splitter_cls(
            self.adata_manager,
            labels,
            set_size=set_size,
            groups_per_batch=groups_per_batch,
            train_size=train_size,
            validation_size=validation_size,
            seed=split_seed,
            extra=extra,
            min_set_size=(
                max(1, set_size // 4)
                if min_set_size is None
                else check_int(min_set_size, "min_set_size")
            ),
        )
        if early_stopping and splitter.n_val == 0:
            raise ValueError("`early_stopping=True` needs validation groups: lower `train_size`.")
        if max_epochs is None:
            steps = sets_per_epoch(splitter.n_train, set_size, groups_per_batch)
            max_epochs = int(np.clip(round(_DEFAULT_TARGET_STEPS / steps), 20, 400))
        max_epochs = check_int(max_epochs, "max_epochs")
        if lr is None:
            lr = _BASE_LR * min(groups_per_batch / _BASE_GROUPS_PER_BATCH, _MAX_LR_SCALE)
        planned_steps = max_epochs * splitter.n_batches_train
        plan_kwargs = {
            "lr": float(lr),
            # the same average over cells seen, whatever the number of sets per step
            "ema_decay": _EMA_DECAY ** (groups_per_batch / _BASE_GROUPS_PER_BATCH),
            "n_epochs_kl_warmup": None,
            "n_steps_kl_warmup": int(min(_MAX_KL_WARMUP_STEPS, max(1, planned_steps // 4))),
            # a short run is not spent warming up
            "lr_warmup_steps": int(min(_MAX_LR_WARMUP_STEPS, planned_steps // 10)),
            **(plan_kwargs or {}),
        }
        training_plan = self._training_plan_cls(self.module, **plan_kwargs)
        trainer_kwargs.setdefault("early_stopping_monitor", "elbo_validation")
        trainer_kwargs.setdefault("use_distributed_sampler", False)
        trainer_kwargs.setdefault("log_every_n_steps", min(10, splitter.n_batches_train))
        runner = self._train_runner_cls(
            self,
            training_plan=training_plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            check_val_every_n_epoch=1 if splitter.n_val else None,
            **trainer_kwargs,
        )
        self.train_groups_ = [str(g) for g in splitter.group_names[splitter.train_groups]]
        self.validation_groups_ = [str(g) for g in splitter.group_names[splitter.val_groups]]
        return runner()

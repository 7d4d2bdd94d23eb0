"""Training of GDE models: the defaults of the recipe and the call into scvi-tools' runner."""

from __future__ import annotations

import inspect
import math
import numbers
import signal
import warnings

import numpy as np
import torch

from .._constants import GROUP_LABEL_KEY
from .._utils import check_int
from ..data import sets_per_epoch
from ..train._checkpoint import EpochCheckpoint
from ..train._progress import LineProgress, interactive

#: Training steps that the default number of epochs aims at.
_DEFAULT_TARGET_STEPS = 2_000
#: Bounds of the default number of epochs. The upper one lets a cohort of a few thousand
#: cells (3 steps per epoch) reach the target: with 400, the Liu 2021 training samples of
#: benchmarks/fidelity.py trained 1,200 steps and generated worse cells than at 2,000.
_DEFAULT_EPOCH_RANGE = (20, 1_000)


def default_max_epochs(n_train_cells: int, set_size: int, groups_per_batch: int) -> int:
    """Epochs of about ``_DEFAULT_TARGET_STEPS`` steps, within ``_DEFAULT_EPOCH_RANGE``."""
    steps = sets_per_epoch(n_train_cells, set_size, groups_per_batch)
    return int(np.clip(round(_DEFAULT_TARGET_STEPS / steps), *_DEFAULT_EPOCH_RANGE))


def training_processes(accelerator: str, devices, num_nodes: int = 1) -> int:
    """The number of processes Lightning trains in for these arguments: devices per node
    (as scvi-tools resolves ``accelerator`` and ``devices``; ``-1``: every GPU) × nodes."""
    from scvi.model._utils import parse_device_args

    resolved, lightning_devices, _ = parse_device_args(accelerator, devices, return_device="torch")
    if isinstance(lightning_devices, list | tuple):
        per_node = len(lightning_devices)
    elif isinstance(lightning_devices, str):  # "auto" (one device) or e.g. "0,1"
        per_node = 1 if lightning_devices == "auto" else lightning_devices.count(",") + 1
    elif lightning_devices == -1:
        per_node = torch.cuda.device_count() if resolved in ("gpu", "cuda") else 1
    else:
        per_node = int(lightning_devices)
    return max(1, per_node) * max(1, int(num_nodes))


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
#: Below this many groups, holding whole groups out for validation gets a warning.
_FEW_GROUPS = 20


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
        checkpoint_dir: str | None = None,
        **trainer_kwargs,
    ):
        """Train the encoder and generator on random sets of cells of each group.

        Each step draws ``groups_per_batch`` training groups and between ``min_set_size`` and
        ``set_size`` cells of each (all cells of smaller groups), encodes each set to ``z`` and
        trains the generator to reproduce the set's cells given ``z``. Validation holds out
        whole **groups** (in sets of ``set_size`` cells).

        Ctrl+C stops training and keeps the model with the weights trained so far (a warning
        says after how many steps). Outside a terminal or notebook (a cluster job, CI) the
        progress bar is replaced by one line per 10% of the epochs on stderr.

        Parameters
        ----------
        max_epochs
            Number of epochs. One epoch draws enough sets that each training cell is seen about
            once (``ceil(n_cells / set_size)`` sets). Default: about 2,000 steps, between 20
            and 1,000 epochs.
        set_size
            Largest number of cells per set.
        groups_per_batch
            Sets per minibatch of each process.
        train_size, validation_size
            Fractions of **groups** used for training and validation.
        accelerator, devices
            Passed to Lightning (``"auto"`` uses a GPU when there is one). Several devices
            (e.g. ``devices=4, strategy="ddp"``; ``num_nodes=`` for several machines) train
            in one process each: each draws its own sets (from its own share of the groups
            when there are enough), a step averages the gradients of
            ``groups_per_batch`` × processes sets, and an epoch is shared between the
            processes. The defaults of ``max_epochs``, ``lr``, the weight average and the
            warm-ups follow those sets per step, as if one process drew them all.
        early_stopping
            Stop when the validation ELBO stops improving (needs validation groups).
        lr
            Learning rate of Adam. Default: ``1e-3 * min(sets per step / 16, 4)``, so that
            fewer, larger steps (a larger ``groups_per_batch``, more processes) train about as
            well per second.
        split_seed
            Seed of the group split and of the fixed validation sets.
        plan_kwargs
            Passed to :class:`scgde.train.GDETrainingPlan`: ``lr_warmup_steps`` (default: a
            tenth of the planned steps, at most 200),
            ``ema_decay`` (default ``0.999 ** (sets per step / 16)``, the same average over
            the cells seen at any batch of sets; the trained model keeps the averaged weights),
            ``n_steps_kl_warmup`` (CVAE; default: a quarter of the planned steps, at most
            1,000, so a large ``max_epochs`` cap with ``max_time`` or early stopping still
            warms up fully), and :class:`scvi.train.TrainingPlan`'s arguments.
        min_set_size
            Training sets draw their size log-uniformly between ``min_set_size`` and
            ``set_size``, so that the encoder learns to embed small and large sets alike.
            Default: ``set_size // 4``; ``min_set_size=set_size`` gives sets of one size.
        checkpoint_dir
            Folder where a checkpoint of the training state (weights, weight average,
            optimizer, epoch) is written at the end of every epoch, as ``last.ckpt``. A run
            that was stopped (Ctrl+C, a killed job) continues from it with
            ``train(..., ckpt_path="<checkpoint_dir>/last.ckpt")`` on a model built the same
            way, up to ``max_epochs``.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``, or
            ``ckpt_path`` to resume from a checkpoint).
        """
        set_size = check_int(set_size, "set_size")
        groups_per_batch = check_int(groups_per_batch, "groups_per_batch")
        splitter = self._make_splitter(
            set_size=set_size,
            groups_per_batch=groups_per_batch,
            train_size=train_size,
            validation_size=validation_size,
            seed=split_seed,
            min_set_size=(
                max(1, set_size // 4)
                if min_set_size is None
                else check_int(min_set_size, "min_set_size")
            ),
        )
        if early_stopping and splitter.n_val == 0:
            raise ValueError("`early_stopping=True` needs validation groups: lower `train_size`.")
        # with several processes (DDP), each step averages the gradients of every process's
        # sets: the recipe's defaults follow the sets per step of all processes together
        n_processes = training_processes(accelerator, devices, trainer_kwargs.get("num_nodes", 1))
        sets_per_step = groups_per_batch * n_processes
        if max_epochs is None:
            max_epochs = default_max_epochs(splitter.n_train, set_size, sets_per_step)
        max_epochs = check_int(max_epochs, "max_epochs")
        if lr is None:
            lr = _BASE_LR * min(sets_per_step / _BASE_GROUPS_PER_BATCH, _MAX_LR_SCALE)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < np.inf:
            raise ValueError(f"`lr` must be a positive number, got {lr!r}.")
        self._check_plan_kwargs(plan_kwargs)
        steps_per_epoch = math.ceil(splitter.n_batches_train / n_processes)
        planned_steps = max_epochs * steps_per_epoch
        plan_kwargs = {
            "lr": float(lr),
            # the same average over cells seen, whatever the number of sets per step
            "ema_decay": _EMA_DECAY ** (sets_per_step / _BASE_GROUPS_PER_BATCH),
            "n_epochs_kl_warmup": None,
            "n_steps_kl_warmup": int(min(_MAX_KL_WARMUP_STEPS, max(1, planned_steps // 4))),
            # a short run is not spent warming up
            "lr_warmup_steps": int(min(_MAX_LR_WARMUP_STEPS, planned_steps // 10)),
            **(plan_kwargs or {}),
        }
        training_plan = self._training_plan_cls(self.module, **plan_kwargs)
        if "enable_progress_bar" not in trainer_kwargs and not interactive():
            # a bar's redraws would fill a log file: print a line per 10% instead
            trainer_kwargs["enable_progress_bar"] = False
            trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), LineProgress()]
        if checkpoint_dir is not None:
            callbacks = trainer_kwargs.get("callbacks") or []
            trainer_kwargs["callbacks"] = [*callbacks, EpochCheckpoint(checkpoint_dir)]
        trainer_kwargs.setdefault("early_stopping_monitor", "elbo_validation")
        trainer_kwargs.setdefault("use_distributed_sampler", False)
        trainer_kwargs.setdefault("log_every_n_steps", min(10, steps_per_epoch))
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
        self._record_split(splitter)
        sigint_handler = signal.getsignal(signal.SIGINT)
        try:
            return runner()
        except SystemExit:
            # Lightning turns Ctrl+C into SystemExit(1) once it has stopped the trainer (and
            # scvi-tools has recorded the history); keep what was trained instead
            if not runner.trainer.interrupted:
                raise
            signal.signal(signal.SIGINT, sigint_handler or signal.default_int_handler)
            self._keep_interrupted_training(runner, training_plan)

    def _check_plan_kwargs(self, plan_kwargs: dict | None) -> None:
        """A ``TypeError`` now for ``plan_kwargs`` the training plan does not take (scvi-tools
        would pass them on to the module's loss and fail at the first step)."""
        known = set()
        for cls in type(self)._training_plan_cls.__mro__:
            if "__init__" in vars(cls):
                known |= set(inspect.signature(cls.__init__).parameters)
        known -= {"self", "module", "args", "kwargs", "loss_kwargs"}
        unknown = sorted(set(plan_kwargs or {}) - known)
        if unknown:
            raise TypeError(
                f"Unknown `plan_kwargs` {unknown}; the training plan takes {sorted(known)}."
            )

    def _make_splitter(self, **kwargs):
        """The splitter of the training data into training and validation sets (groups held
        out whole); ``kwargs``: the minibatch shape, split and seed."""
        labels = self._group_labels(self.adata)
        extra = None
        if self.group_label_categories_:
            codes, _ = self._group_label_codes(self.adata, self.group_label_categories_, labels)
            extra = {GROUP_LABEL_KEY: codes[np.asarray(labels.codes)]}
        splitter = self._data_splitter_cls(
            self.adata_manager,
            labels,
            extra=extra,
            always_train=self._groups_always_trained(labels),
            **kwargs,
        )
        held_out = splitter.group_names[splitter.val_groups]
        if 0 < len(held_out) and len(splitter.group_names) < _FEW_GROUPS:
            warnings.warn(
                f"Validation holds out {len(held_out)} of only {len(splitter.group_names)} "
                f"groups ({', '.join(map(str, held_out[:5]))}), whose cells the model never "
                "trains on. With so few groups, consider `train_size=1.0`.",
                UserWarning,
                stacklevel=3,
            )
        return splitter

    def _record_split(self, splitter) -> None:
        """Keep the names of the training and validation groups."""
        self.train_groups_ = [str(g) for g in splitter.group_names[splitter.train_groups]]
        self.validation_groups_ = [str(g) for g in splitter.group_names[splitter.val_groups]]

    def _groups_always_trained(self, labels) -> list[int]:
        """Indices of the groups (categories of ``labels``) that validation never holds out."""
        return []

    def _keep_interrupted_training(self, runner, training_plan) -> None:
        """After Ctrl+C: a usable model with the weights trained so far, and a warning."""
        training_plan.on_train_end()  # the averaged weights, as at a normal end
        self.module.eval()
        self.is_trained_ = True
        self.trainer = runner.trainer
        warnings.warn(
            f"Training was interrupted (Ctrl+C) after {runner.trainer.global_step:,} steps "
            f"({runner.trainer.current_epoch} complete epochs); the model keeps the weights "
            "trained so far and can be used, saved or trained further.",
            UserWarning,
            stacklevel=3,
        )

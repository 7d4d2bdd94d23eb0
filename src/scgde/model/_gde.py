"""The user-facing GDE model class."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.data import AnnDataManager
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from .._constants import (
    BATCH_KEY,
    CAT_COVS_KEY,
    CONT_COVS_KEY,
    COUNT_LIKELIHOODS,
    GROUP_REGISTRY_KEY,
    LIKELIHOODS,
    PROTEIN_KEY,
    SETUP_ARGS_KEY,
    X_KEY,
)
from .._utils import check_int, row_blocks
from ..data import (
    GroupDataSplitter,
    check_values,
    column_statistics,
    group_labels,
    group_level_labels,
    looks_like_counts,
    registered_group_labels,
)
from ..module import GDEModule
from ..nn import DEFAULT_BATCH_CORRECTION_WEIGHTS, GENERATORS
from ..nn._batch_penalty import check_batch_correction
from ..train import GDETrainingPlan
from ._embedding_mixin import EmbeddingMixin
from ._files import SaveLoadMixin
from ._group_classifier_mixin import GroupClassifierMixin
from ._new_data import NewDataMixin
from ._sampling_mixin import SamplingMixin
from ._setup_mixin import SetupMixin
from ._training_mixin import TrainingMixin
from ._uncertainty_mixin import UncertaintyMixin

logger = logging.getLogger(__name__)

#: Generators that model continuous data only (they imply ``likelihood="gaussian"``).
CONTINUOUS_GENERATORS = ("diffusion", "flow")


class GDE(
    SetupMixin,
    TrainingMixin,
    EmbeddingMixin,
    UncertaintyMixin,
    GroupClassifierMixin,
    SamplingMixin,
    NewDataMixin,
    SaveLoadMixin,
    BaseModelClass,
):
    """Generative distribution embedding of groups of cells (patients, clones, perturbations).

    A distribution-invariant set encoder maps all cells of a group to one vector ``z``; a
    conditional generator regenerates cells of the group from ``z``. Both are trained together
    on random subsets of cells of each group.

    Parameters
    ----------
    adata
        AnnData (or MuData) registered with :meth:`setup_anndata` (:meth:`setup_mudata`).
    n_latent
        Dimension of the distribution embedding.
    encoder
        Set encoder, a name in :data:`scgde.nn.ENCODERS` (``"deepset"``).
    generator
        Conditional generator, a name in :data:`scgde.nn.GENERATORS`: ``"cvae"`` (counts or
        continuous data), ``"flow"`` (conditional flow matching) or ``"diffusion"`` (DDPM), the
        last two for continuous data only. Default: ``"cvae"`` for counts, ``"flow"`` for
        continuous data.
    likelihood
        ``"nb"``, ``"zinb"`` or ``"poisson"`` for raw counts; ``"gaussian"`` for continuous
        data (log-normalised values, a representation in ``obsm``). Default: ``"nb"`` when the
        registered data are non-negative integers (and for protein models), ``"gaussian"``
        otherwise. ``generator="flow"`` or ``"diffusion"`` on raw counts raises an error
        unless ``likelihood="gaussian"`` is passed.
    encoder_kwargs
        Passed to the encoder, e.g. ``{"n_hidden": 256, "n_layers": 3}``.
    generator_kwargs
        Passed to the generator, e.g. ``{"n_latent_cell": 10, "n_hidden": 128}``.
    classification_ratio
        With a ``group_label_key`` registered: weight of the group classifier's cross-entropy
        against the generator loss (per cell). The classifier reads ``z`` and is trained on
        the labelled groups; unlabelled groups still train the embedding (semi-supervised).
    generative_weight
        Weight of the generator loss. ``0`` with a ``group_label_key`` gives a purely
        supervised set classifier, the baseline the semi-supervised model is compared with.
    group_label_categories
        Order of the classifier's classes; default: the sorted labels found in ``adata``.
    batch_correction
        ``"hsic"``: keep the technical batch (``setup_anndata(batch_key=...)``) out of the
        embedding with a penalty on the dependence (normalised HSIC) between ``z`` and the
        batch compositions of the sets of each training step. The generator stays conditioned
        on the batch, so the batch's effect on the cells is modelled by the batch covariate
        instead of ``z``. ``None`` (default): no penalty. Tutorial 01 (patients) and
        ``benchmarks/batch.py`` measure it. Batches that hold a single group get a warning
        (their groups are pulled towards the other batches); an error if every batch does.
    batch_correction_weight
        Weight of the batch penalty against the generator loss (per cell). Default: 1
        (:data:`~scgde.nn.DEFAULT_BATCH_CORRECTION_WEIGHTS`).

    Examples
    --------
    >>> adata = scgde.datasets.demo()
    >>> scgde.model.GDE.setup_anndata(adata, group_key="sample", batch_key="batch")
    >>> model = scgde.model.GDE(adata)
    >>> model.train()
    >>> model.get_distribution_embedding()  # writes adata.uns/obsm["X_gde"]
    >>> groups = model.get_group_adata()
    >>> sc.pp.neighbors(groups, use_rep="X")
    >>> sc.tl.umap(groups)
    >>> sc.pl.umap(groups, color="condition")
    """

    _module_cls = GDEModule
    _data_splitter_cls = GroupDataSplitter
    _training_plan_cls = GDETrainingPlan
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 32,
        encoder: str = "deepset",
        generator: str | None = None,
        likelihood: str | None = None,
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
        classification_ratio: float = 50.0,
        generative_weight: float = 1.0,
        group_label_categories: Sequence[str] | None = None,
        batch_correction: str | None = None,
        batch_correction_weight: float | None = None,
    ):
        super().__init__(adata)
        likelihood, generator = self._default_likelihood_and_generator(likelihood, generator)
        n_latent = check_int(n_latent, "n_latent")
        self._check_data(self.adata_manager, likelihood)
        sets = self._describe_sets()
        n_batch = self.summary_stats.n_batch
        cat_state = (
            self.adata_manager.get_state_registry(CAT_COVS_KEY)
            if CAT_COVS_KEY in self.adata_manager.data_registry
            else None
        )
        n_cats_per_cov = list(cat_state.n_cats_per_key) if cat_state is not None else None
        n_cont = (
            self.adata_manager.get_from_registry(CONT_COVS_KEY).shape[1]
            if CONT_COVS_KEY in self.adata_manager.data_registry
            else 0
        )
        n_proteins = (
            self.adata_manager.get_from_registry(PROTEIN_KEY).shape[1]
            if PROTEIN_KEY in self.adata_manager.data_registry
            else 0
        )
        if n_proteins and likelihood not in COUNT_LIKELIHOODS:
            raise ValueError(
                f"Protein counts are modelled with the count likelihood of the genes, so they "
                f"need likelihood in {COUNT_LIKELIHOODS}, not {likelihood!r} (the diffusion "
                "generator models continuous data only)."
            )
        log_mean, log_std = self._library_statistics(likelihood, n_batch)
        self.group_label_categories_: list[str] | None = None
        if self.group_label_key is not None:
            _, self.group_label_categories_ = self._group_label_codes(
                self.adata, group_label_categories
            )
        elif group_label_categories is not None:
            raise ValueError("`group_label_categories` needs a `group_label_key` in setup_anndata.")
        self._check_batch_correction(batch_correction)
        if batch_correction_weight is None:
            batch_correction_weight = DEFAULT_BATCH_CORRECTION_WEIGHTS.get(batch_correction, 0.0)
        for value, name in (
            (classification_ratio, "classification_ratio"),
            (generative_weight, "generative_weight"),
            (batch_correction_weight, "batch_correction_weight"),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        # continuous data: the encoder reads them standardised, and the generator receives the
        # training data's statistics (kept as buffers, so a loaded model uses the saved ones)
        feature_statistics = None
        if likelihood not in COUNT_LIKELIHOODS:
            feature_statistics = column_statistics(self.adata_manager.get_from_registry(X_KEY))
        self.encoder_name_, self.generator_name_ = encoder, generator
        self.module = self._module_cls(
            n_input=self.adata_manager.get_from_registry(X_KEY).shape[1],
            n_latent=n_latent,
            n_batch=n_batch,
            n_cats_per_cov=n_cats_per_cov,
            n_continuous_cov=n_cont,
            encoder=encoder,
            generator=generator,
            likelihood=likelihood,
            library_log_mean=log_mean,
            library_log_std=log_std,
            encoder_kwargs=encoder_kwargs,
            generator_kwargs=generator_kwargs,
            n_labels=len(self.group_label_categories_ or []),
            classification_ratio=classification_ratio,
            generative_weight=generative_weight,
            n_proteins=n_proteins,
            feature_statistics=feature_statistics,
            batch_correction=batch_correction,
            batch_correction_weight=batch_correction_weight,
            **self._module_kwargs(n_latent),
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {sets}, encoder={encoder!r}, generator={generator!r}, "
            f"likelihood={likelihood!r}, n_latent={n_latent}"
            + (f", {n_proteins} proteins" if n_proteins else "")
            + (f", batch_correction={batch_correction!r}" if batch_correction else "")
            + (
                f", group classifier over {self.group_label_categories_}"
                if self.group_label_categories_
                else ""
            )
        )
        self.init_params_ = self._get_init_params(locals())

    def _describe_sets(self) -> str:
        """How the training sets are defined, for the summary (e.g. ``"63 groups"``); an
        error if they cannot define a distribution embedding."""
        labels = self._group_labels(self.adata)
        if len(labels.categories) < 2:
            raise ValueError(
                f"Found {len(labels.categories)} group in adata.obs[{self.group_key!r}]; GDE "
                "needs at least 2 groups to learn a distribution embedding."
            )
        return f"{len(labels.categories)} groups"

    def _default_likelihood_and_generator(
        self, likelihood: str | None, generator: str | None
    ) -> tuple[str, str]:
        """Fill in what the user left out: counts get ``"nb"`` and the CVAE, continuous data
        ``"gaussian"`` and the flow generator; a continuous-only generator on raw counts
        without a likelihood is an error that says what to do."""
        if likelihood is not None and likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        if generator is not None and generator not in GENERATORS:
            raise ValueError(
                f"Unknown generator {generator!r}; choose one of {sorted(GENERATORS)}."
            )
        if likelihood is None:
            manager = self.adata_manager
            counts = not manager.registry[SETUP_ARGS_KEY].get("obsm_key") and looks_like_counts(
                manager.get_from_registry(X_KEY)
            )
            if generator in CONTINUOUS_GENERATORS and counts:
                raise ValueError(
                    f"generator={generator!r} models continuous data, but the registered data "
                    "are raw counts. Register log-normalised data (a layer, e.g. "
                    "`layer='log1p'`) or a representation (`obsm_key='X_pca'`), or keep the "
                    "counts with generator='cvae' (a count likelihood). To model these values "
                    "as continuous anyway, pass likelihood='gaussian'."
                )
            if PROTEIN_KEY in manager.data_registry:
                likelihood = "nb"  # RNA and protein counts; the value checks say if they are not
            else:
                likelihood = "nb" if counts else "gaussian"
        if generator is None:
            generator = "cvae" if likelihood in COUNT_LIKELIHOODS else "flow"
        logger.info("GDE: likelihood=%r, generator=%r.", likelihood, generator)
        return likelihood, generator

    def _module_kwargs(self, n_latent: int) -> dict:
        """Further module arguments of subclasses (called once the data are registered)."""
        return {}

    # ------------------------------------------------------------------------- properties
    @property
    def _setup_args(self) -> dict:
        """The arguments the data were registered with (``setup_anndata``/``setup_mudata``)."""
        return self.adata_manager.registry[SETUP_ARGS_KEY]

    @property
    def group_key(self) -> str | list[str] | None:
        """The obs column(s) defining the groups (``None`` for a :class:`~scgde.model.LabelGDE`)."""
        return self._setup_args.get("group_key")

    @property
    def group_label_key(self) -> str | None:
        """The obs column with the group labels of the classifier head, if registered."""
        return self._setup_args.get("group_label_key")

    @property
    def var_names(self) -> pd.Index:
        """Names of the modelled features (genes, or the columns of the representation)."""
        return pd.Index(self.adata_manager.get_state_registry(X_KEY).column_names)

    @property
    def protein_names(self) -> pd.Index:
        """Names of the modelled proteins (empty without a protein modality)."""
        if PROTEIN_KEY not in self.adata_manager.data_registry:
            return pd.Index([])
        return pd.Index(self.adata_manager.get_state_registry(PROTEIN_KEY).column_names)

    @property
    def _modalities(self) -> dict[str, str]:
        return dict(self._setup_args.get("modalities") or {})

    # --------------------------------------------------------------------------- checks
    def _group_labels(self, adata) -> pd.Categorical:
        """The group of every cell of ``adata``: from its registered group field where this
        model registered ``adata`` (the codes computed once, at registration), else from
        its group columns."""
        manager = self._manager_of(adata)
        if manager is not None and GROUP_REGISTRY_KEY in manager.data_registry:
            return registered_group_labels(manager, GROUP_REGISTRY_KEY)
        return group_labels(adata.obs, self.group_key)

    def _manager_of(self, adata):
        """The manager with which this model registered this very object, or ``None`` (unlike
        ``get_anndata_manager``, never registers a copy)."""
        uuid = adata.uns.get("_scvi_uuid")
        manager = self._per_instance_manager_store.get(self.id, {}).get(uuid)
        return manager if manager is not None and manager.adata is adata else None

    def _check_set_columns(self, adata) -> None:
        """A clear error if ``adata`` lacks what defines the sets (the group columns)."""
        group_labels(adata.obs, self.group_key)

    def _group_label_codes(
        self, adata, categories=None, labels: pd.Categorical | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Label code of every group of ``adata`` (-1: unlabelled) and the categories.

        ``labels``: the groups of ``adata``'s cells when already computed.
        """
        return group_level_labels(
            self._group_labels(adata) if labels is None else labels,
            adata.obs[self.group_label_key],
            categories,
            label_key=self.group_label_key,
        )

    @staticmethod
    def _check_data(adata_manager: AnnDataManager, likelihood: str) -> None:
        args = adata_manager.registry[SETUP_ARGS_KEY]
        if PROTEIN_KEY in adata_manager.data_registry:
            protein = args["modalities"]["protein_layer"]
            layer = args.get("protein_layer")
            check_values(
                adata_manager.get_from_registry(PROTEIN_KEY),
                name=f"modality {protein!r}" + (f", layer {layer!r}" if layer else ""),
                require_counts=likelihood in COUNT_LIKELIHOODS,
                likelihood=likelihood,
            )
        where = (
            f"adata.obsm[{args['obsm_key']!r}]"
            if args.get("obsm_key")
            else f"layer {args.get('layer') or args.get('rna_layer')!r}"
            if (args.get("layer") or args.get("rna_layer"))
            else "adata.X"
        )
        check_values(
            adata_manager.get_from_registry(X_KEY),
            name=where,
            require_counts=likelihood in COUNT_LIKELIHOODS,
            likelihood=likelihood,
        )

    def _check_batch_correction(self, batch_correction: str | None) -> None:
        """Errors and warnings for a batch penalty the registered batches cannot support.

        Every batch holding a single group (e.g. ``batch_key`` equal to ``group_key``): an
        error, since batch and group cannot be told apart. Some batches holding a single group:
        a warning that names them (the penalty pulls those groups towards the other batches).
        """
        check_batch_correction(batch_correction, self.summary_stats.n_batch)
        # label sets (no group key): every batch spans the label's range
        if batch_correction is None or self.group_key is None:
            return
        batch = np.asarray(self.adata_manager.get_from_registry(BATCH_KEY)).reshape(-1)
        groups = pd.Series(self._group_labels(self.adata).codes).groupby(batch).nunique()
        names = self.adata_manager.get_state_registry(BATCH_KEY).categorical_mapping
        single = [str(names[code]) for code in groups.index[groups.to_numpy() <= 1]]
        if len(single) == len(groups):
            raise ValueError(
                f"Every batch holds a single group of {self.group_key!r} (is batch_key the group "
                "column?): batch and group cannot be told apart, so a batch penalty would erase "
                "the differences between groups. Use batch_correction=None."
            )
        if single:
            warnings.warn(
                f"Batches {single} hold a single group each: the batch penalty pulls those "
                "groups' embeddings towards the groups of other batches, since what sets them "
                "apart cannot be told from their batch.",
                UserWarning,
                stacklevel=3,
            )

    # -------------------------------------------------------------------------- training
    def _library_statistics(self, likelihood: str, n_batch: int):
        """Mean and sd of log library size per batch and modality (count data only).

        Returns two ``(n_batch, n_blocks)`` arrays (blocks: RNA, then proteins if any), computed
        in chunks of cells.
        """
        if likelihood not in COUNT_LIKELIHOODS:
            return None, None
        keys = [X_KEY] + ([PROTEIN_KEY] if PROTEIN_KEY in self.adata_manager.data_registry else [])
        batch = np.asarray(self.adata_manager.get_from_registry(BATCH_KEY)).reshape(-1)
        means, stds = np.zeros((max(n_batch, 1), len(keys))), np.ones((max(n_batch, 1), len(keys)))
        for j, key in enumerate(keys):
            x = self.adata_manager.get_from_registry(key)
            x = x.to_numpy() if hasattr(x, "to_numpy") else x
            log_lib = np.concatenate(
                [
                    np.log(np.maximum(np.asarray(block.sum(1)).reshape(-1), 1.0))
                    for block in row_blocks(x)
                ]
            )
            for b in range(max(n_batch, 1)):
                values = log_lib[batch == b]
                if values.size:
                    means[b, j] = values.mean()
                    stds[b, j] = max(values.std(), 1e-3)
        return means, stds

"""The user-facing GDE model class."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager, fields
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from .._constants import (
    BATCH_KEY,
    CAT_COVS_KEY,
    CONT_COVS_KEY,
    COUNT_LIKELIHOODS,
    DEFAULT_KEY_ADDED,
    GROUP_LABEL_KEY,
    LIKELIHOODS,
    PROTEIN_KEY,
    UNS_SETTINGS_KEY,
    X_KEY,
)
from .._io import write_dir_atomic
from .._utils import check_int
from ..data import (
    GroupDataSplitter,
    RegisteredData,
    cells_of_groups,
    check_values,
    column_statistics,
    group_labels,
    group_level_labels,
    looks_like_counts,
    sets_per_epoch,
)
from ..data._groups import as_key_list
from ..module import GDEModule
from ..nn import GENERATORS
from ..nn._blocks import block_totals
from ..train import GDETrainingPlan
from ._gene_space import representation_to_genes

logger = logging.getLogger(__name__)

#: Generators that model continuous data only (they imply ``likelihood="gaussian"``).
CONTINUOUS_GENERATORS = ("diffusion", "flow")

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


def _check_group_label_column(obs: pd.DataFrame, labels, group_label_key: str | None) -> None:
    """Clear errors for a bad ``group_label_key`` at set-up rather than at training."""
    if group_label_key is None:
        return
    if group_label_key not in obs.columns:
        raise KeyError(
            f"`group_label_key` {group_label_key!r} is not a column of adata.obs; available: "
            f"{list(obs.columns)}."
        )
    group_level_labels(labels, obs[group_label_key], label_key=group_label_key)


def _check_feature_names(adata, modalities: dict, genes, proteins, whose: str = "model") -> None:
    """``ValueError`` when the genes (or proteins) of ``adata`` differ from the model's."""
    rna, protein = modalities.get("rna_layer"), modalities.get("protein_layer")
    checks = [
        ("var names", adata.mod[rna].var_names if rna is not None else adata.var_names, genes)
    ]
    if protein is not None:
        if protein not in adata.mod:
            raise KeyError(f"The MuData has no protein modality {protein!r}: {list(adata.mod)}.")
        checks.append(("protein names", adata.mod[protein].var_names, proteins))
    for what, new, expected in checks:
        if not np.array_equal(np.asarray(new), np.asarray(expected)):
            raise ValueError(
                f"The data's {len(new)} {what} do not match the {whose}'s {len(expected)}. "
                "Subset and order it like the training data, e.g. "
                "`adata = adata[:, model.var_names].copy()`."
            )


def _distinct_strings(column: pd.Series) -> set[str]:
    """The distinct values of an obs column as strings, without a string per cell."""
    return {str(value) for value in pd.unique(column)}


class GDE(BaseModelClass):
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
    ):
        super().__init__(adata)
        likelihood, generator = self._default_likelihood_and_generator(likelihood, generator)
        n_latent = check_int(n_latent, "n_latent")
        self._check_data(self.adata_manager, likelihood)
        labels = self._group_labels(self.adata)
        if len(labels.categories) < 2:
            raise ValueError(
                f"Found {len(labels.categories)} group in adata.obs[{self.group_key!r}]; GDE "
                "needs at least 2 groups to learn a distribution embedding."
            )
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
        for value, name in (
            (classification_ratio, "classification_ratio"),
            (generative_weight, "generative_weight"),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        # generators that standardise their data (diffusion) get the training data's
        # statistics; they keep them as buffers, so a loaded model uses the saved ones
        module_generator_kwargs = dict(generator_kwargs or {})
        input_statistics = {}
        if likelihood not in COUNT_LIKELIHOODS:
            stats = column_statistics(self.adata_manager.get_from_registry(X_KEY))
            # the set encoder reads continuous data standardised
            input_statistics = {"input_mean": stats["mean"], "input_std": stats["std"]}
            if getattr(GENERATORS.get(generator), "uses_feature_statistics", False):
                for name, value in stats.items():
                    module_generator_kwargs.setdefault(f"feature_{name}", value)
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
            generator_kwargs=module_generator_kwargs,
            n_labels=len(self.group_label_categories_ or []),
            classification_ratio=classification_ratio,
            generative_weight=generative_weight,
            n_proteins=n_proteins,
            **input_statistics,
            **self._module_kwargs(n_latent),
        )
        self._model_summary_string = (
            f"GDE: {len(labels.categories)} groups, encoder={encoder!r}, generator={generator!r}, "
            f"likelihood={likelihood!r}, n_latent={n_latent}"
            + (f", {n_proteins} proteins" if n_proteins else "")
            + (
                f", group classifier over {self.group_label_categories_}"
                if self.group_label_categories_
                else ""
            )
        )
        self.init_params_ = self._get_init_params(locals())

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
            counts = not manager.registry["setup_args"].get("obsm_key") and looks_like_counts(
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

    # ------------------------------------------------------------------------------ set-up
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        group_key: str | Sequence[str],
        layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        obsm_key: str | None = None,
        group_label_key: str | None = None,
        **kwargs,
    ):
        """Register an AnnData for GDE.

        Adds to ``adata`` only what scvi-tools registration adds: ``obs`` columns
        ``_scvi_batch`` (and ``_scvi_extra_*`` codes for covariates) and ``uns`` keys
        ``_scvi_uuid`` and ``_scvi_manager_uuid``.

        Parameters
        ----------
        adata
            AnnData with one row per cell.
        group_key
            obs column defining the sets (patient/sample, clone, perturbation), or a list of
            columns whose combination defines them (e.g. ``["donor", "time_point"]``). New
            groups are always accepted later: the encoder is amortized.
        layer
            Layer with the data (``None``: ``adata.X``). Raw counts for count likelihoods.
        batch_key
            obs column with technical batches; the generator is conditioned on it. Categories
            not seen in training raise an error later.
        categorical_covariate_keys, continuous_covariate_keys
            obs columns with further covariates of the generator.
        obsm_key
            Model a representation in ``adata.obsm`` (e.g. ``"X_pca"``) instead of genes;
            needs ``likelihood="gaussian"``. Exclusive with ``layer``.
        group_label_key
            obs column with a label of each cell's **group** (e.g. the sample's disease),
            constant within groups and missing (NaN) for groups whose label is unknown. The
            model then trains a classifier head on the embedding, semi-supervised: see
            :meth:`predict_group_labels`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        labels = group_labels(adata.obs, group_key)  # clear errors now rather than at training
        _check_group_label_column(adata.obs, labels, group_label_key)
        cls._register_anndata(
            adata,
            setup_method_args,
            layer,
            batch_key,
            categorical_covariate_keys,
            continuous_covariate_keys,
            obsm_key,
            **kwargs,
        )

    @classmethod
    def _register_anndata(
        cls,
        adata: AnnData,
        setup_method_args: dict,
        layer: str | None,
        batch_key: str | None,
        categorical_covariate_keys: list[str] | None,
        continuous_covariate_keys: list[str] | None,
        obsm_key: str | None,
        **kwargs,
    ) -> None:
        """Register the data, batch and covariate fields of ``adata`` (after checking keys)."""
        if obsm_key is not None and layer is not None:
            raise ValueError("Pass either `layer` or `obsm_key`, not both.")
        if obsm_key is not None and obsm_key not in adata.obsm:
            raise KeyError(f"adata.obsm has no {obsm_key!r}; available: {list(adata.obsm)}.")
        if layer is not None and layer not in adata.layers:
            raise KeyError(f"adata.layers has no {layer!r}; available: {list(adata.layers)}.")
        x_field = (
            fields.ObsmField(X_KEY, obsm_key)
            if obsm_key is not None
            else fields.LayerField(X_KEY, layer, is_count_data=False)
        )
        anndata_fields = [
            x_field,
            fields.CategoricalObsField(BATCH_KEY, batch_key),
            fields.CategoricalJointObsField(CAT_COVS_KEY, categorical_covariate_keys),
            fields.NumericalJointObsField(CONT_COVS_KEY, continuous_covariate_keys),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_mudata(
        cls,
        mdata,
        group_key: str | Sequence[str],
        rna_layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        modalities: dict[str, str] | None = None,
        group_label_key: str | None = None,
        protein_layer: str | None = None,
        **kwargs,
    ):
        """Register a MuData for GDE: its RNA modality, and optionally its protein modality.

        With a protein modality (CITE-seq ADTs) the set encoder reads RNA and proteins, each
        log-normalised by its own total, and the generator models both: proteins with the same
        count likelihood as the genes (negative binomial by default), their own library size
        and a dispersion per protein. ``group_key``, ``batch_key`` and covariates are columns
        of ``mdata.obs``. Adds to ``mdata`` only what scvi-tools registration adds.

        Parameters
        ----------
        mdata
            MuData with an RNA modality.
        group_key, batch_key, categorical_covariate_keys, continuous_covariate_keys, group_label_key
            As in :meth:`setup_anndata`, read from ``mdata.obs``.
        rna_layer
            Layer of the RNA modality with the counts (``None``: its ``X``).
        modalities
            Names of the modalities: ``{"rna_layer": "rna", "protein_layer": "prot"}`` models
            RNA and proteins; without a ``"protein_layer"`` entry only RNA is modelled.
            Default ``{"rna_layer": "rna"}``.
        protein_layer
            Layer of the protein modality with the counts (``None``: its ``X``).

        Examples
        --------
        >>> mdata = scgde.datasets.liu2021_covid(modality="both", as_mudata=True)
        >>> scgde.model.GDE.setup_mudata(
        ...     mdata, group_key="sample", modalities={"rna_layer": "rna", "protein_layer": "prot"}
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        labels = group_labels(mdata.obs, group_key)
        _check_group_label_column(mdata.obs, labels, group_label_key)
        modalities = {"rna_layer": "rna"} if modalities is None else dict(modalities)
        unknown = sorted(set(modalities) - {"rna_layer", "protein_layer"})
        if unknown:
            raise ValueError(
                f"Unknown `modalities` keys {unknown}; use 'rna_layer' and 'protein_layer'."
            )
        rna, protein = modalities.get("rna_layer"), modalities.get("protein_layer")
        for name in (rna, protein):
            if name is not None and name not in mdata.mod:
                raise KeyError(f"MuData has no modality {name!r}; it has {list(mdata.mod)}.")
        if rna is None:
            raise ValueError("`modalities` must name the RNA modality: {'rna_layer': ...}.")
        if protein_layer is not None and protein is None:
            raise ValueError("`protein_layer` needs `modalities={'protein_layer': ...}`.")
        for name, layer in ((rna, rna_layer), (protein, protein_layer)):
            if name is not None and layer is not None and layer not in mdata.mod[name].layers:
                raise KeyError(
                    f"Modality {name!r} has no layer {layer!r}; it has "
                    f"{list(mdata.mod[name].layers)}."
                )
        mudata_fields = [
            fields.MuDataLayerField(
                X_KEY, rna_layer, mod_key=rna, is_count_data=False, mod_required=True
            ),
            fields.MuDataCategoricalObsField(BATCH_KEY, batch_key, mod_key=None),
            fields.MuDataCategoricalJointObsField(
                CAT_COVS_KEY, categorical_covariate_keys, mod_key=None
            ),
            fields.MuDataNumericalJointObsField(
                CONT_COVS_KEY, continuous_covariate_keys, mod_key=None
            ),
        ]
        if protein is not None:
            mudata_fields.insert(
                1,
                fields.MuDataLayerField(
                    PROTEIN_KEY,
                    protein_layer,
                    mod_key=protein,
                    is_count_data=False,
                    mod_required=True,
                ),
            )
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    # ------------------------------------------------------------------------- properties
    @property
    def group_key(self) -> str | list[str]:
        """The obs column(s) defining the groups."""
        return self.adata_manager.registry["setup_args"]["group_key"]

    @property
    def group_label_key(self) -> str | None:
        """The obs column with the group labels of the classifier head, if registered."""
        return self.adata_manager.registry["setup_args"].get("group_label_key")

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
        return dict(self.adata_manager.registry["setup_args"].get("modalities") or {})

    # --------------------------------------------------------------------------- checks
    def _group_labels(self, adata) -> pd.Categorical:
        return group_labels(adata.obs, self.group_key)

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
        args = adata_manager.registry["setup_args"]
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

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        """Check a new AnnData against the model before transferring the registration.

        Unseen groups are fine (the encoder is amortized); unseen batch or covariate
        categories, different features, or invalid values raise a clear error.
        """
        if adata is None or adata is self.adata:
            return super()._validate_anndata(adata, copy_if_view)
        self._check_compatible(adata)
        adata = super()._validate_anndata(adata, copy_if_view)
        self._check_data(self.get_anndata_manager(adata, required=True), self.module.likelihood)
        return adata

    def _check_compatible(self, adata) -> None:
        args = self.adata_manager.registry["setup_args"]
        obsm_key = args.get("obsm_key")
        if obsm_key is None:
            _check_feature_names(adata, self._modalities, self.var_names, self.protein_names)
        self._group_labels(adata)
        batch_key = args.get("batch_key")
        if batch_key is not None:
            known = self.adata_manager.get_state_registry(BATCH_KEY).categorical_mapping
            unseen = sorted(_distinct_strings(adata.obs[batch_key]) - {str(c) for c in known})
            if unseen:
                raise ValueError(
                    f"Batch categories {unseen[:10]} in adata.obs[{batch_key!r}] were not seen in "
                    f"training (known: {list(known)[:10]}). The generator is conditioned on batch, "
                    "so it cannot handle a new one: map those cells to a known batch or retrain."
                )
        cat_keys = args.get("categorical_covariate_keys") or []
        if cat_keys:
            mappings = self.adata_manager.get_state_registry(CAT_COVS_KEY).mappings
            for key in cat_keys:
                unseen = sorted(_distinct_strings(adata.obs[key]) - {str(c) for c in mappings[key]})
                if unseen:
                    raise ValueError(
                        f"Categories {unseen[:10]} of covariate {key!r} were not seen in training."
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
                    np.log(np.maximum(np.asarray(x[i : i + 10_000].sum(1)).reshape(-1), 1.0))
                    for i in range(0, x.shape[0], 10_000)
                ]
            )
            for b in range(max(n_batch, 1)):
                values = log_lib[batch == b]
                if values.size:
                    means[b, j] = values.mean()
                    stds[b, j] = max(values.std(), 1e-3)
        return means, stds

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

    # ----------------------------------------------------------------------- embeddings
    def _registered(self, adata) -> RegisteredData:
        return RegisteredData(self.get_anndata_manager(adata, required=True))

    def _chunks(
        self,
        data: RegisteredData,
        cell_indices: np.ndarray,
        cell_group_ids: np.ndarray,
        batch_size: int,
    ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        device = self.device
        for start in range(0, len(cell_indices), batch_size):
            tensors = data.rows(cell_indices[start : start + batch_size])
            ids = torch.as_tensor(cell_group_ids[start : start + batch_size], device=device)
            yield {k: v.to(device) for k, v in tensors.items()}, ids

    def _embed(self, adata, groups, batch_size: int):
        """Embeddings of the selected groups from all their cells, streamed in chunks."""
        labels = self._group_labels(adata)
        names, cell_indices, cell_group_ids = cells_of_groups(labels, groups)
        batch_size = check_int(batch_size, "batch_size")
        module = self.module
        module.eval()
        data = self._registered(adata)

        def chunks():
            for tensors, ids in self._chunks(data, cell_indices, cell_group_ids, batch_size):
                yield module.encoder_input(module.modelled_data(tensors)), ids

        z = module.encoder.encode_streaming(chunks, len(names)).cpu().numpy()
        return names, z, labels, cell_indices, cell_group_ids

    def get_distribution_embedding(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        key_added: str | None = DEFAULT_KEY_ADDED,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """Embed every group from **all** its cells.

        The encoder pools by means, so the cells are streamed in chunks of ``batch_size``
        (memory does not grow with group size) and the result equals encoding each group at
        once. New groups (not seen in training) are embedded like any other.

        Parameters
        ----------
        adata
            AnnData with the model's features; default: the training data.
        groups
            Groups to embed; default: all groups with cells.
        key_added
            Where to write the result: ``adata.uns[key_added]`` (the table),
            ``adata.obsm[key_added]`` (each cell gets its group's embedding; NaN for cells of
            groups not embedded) and the settings in ``adata.uns["gde"]``. ``None`` writes
            nothing.
        batch_size
            Cells per chunk.

        Returns
        -------
        DataFrame of groups × ``n_latent``.
        """
        self._check_if_trained(warn=True)
        adata = self._validate_anndata(adata)
        names, z, labels, cell_indices, cell_group_ids = self._embed(adata, groups, batch_size)
        columns = [f"gde_{i}" for i in range(z.shape[1])]
        table = pd.DataFrame(z, index=pd.Index(names, name="group"), columns=columns)
        if key_added is not None:
            per_cell = np.full((adata.n_obs, z.shape[1]), np.nan, dtype=np.float32)
            per_cell[cell_indices] = z[cell_group_ids]
            settings = {
                "key_added": key_added,
                "group_key": self.group_key,
                "n_groups": len(names),
                "n_latent": int(z.shape[1]),
                "encoder": self.encoder_name_,
                "generator": self.generator_name_,
                "likelihood": self.module.likelihood,
            }
            # all results are computed: write them together so a failure writes nothing
            adata.uns[key_added] = table
            adata.obsm[key_added] = per_cell
            adata.uns[UNS_SETTINGS_KEY] = settings
        return table

    def get_group_adata(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        batch_size: int = 4096,
    ) -> AnnData:
        """An AnnData with one observation per group and the embedding as ``X``.

        ``obs`` carries ``n_cells`` and every obs column of ``adata`` that is constant within
        every group (e.g. disease, donor), ready for ``sc.pp.neighbors(use_rep="X")``,
        ``sc.tl.umap`` and ``sc.pl.umap(color=...)``. ``adata`` is not modified.
        """
        self._check_if_trained(warn=True)
        adata = self._validate_anndata(adata)
        names, z, labels, cell_indices, cell_group_ids = self._embed(adata, groups, batch_size)
        obs = adata.obs.iloc[cell_indices]
        grouped = obs.groupby(cell_group_ids, observed=True, sort=True)
        keys = set(as_key_list(self.group_key))
        constant = [
            c
            for c in obs.columns
            if not c.startswith("_scvi")
            and (c in keys or (grouped[c].nunique(dropna=False) <= 1).all())
        ]
        group_obs = grouped[constant].first() if constant else pd.DataFrame(index=range(len(names)))
        for column in constant:
            if isinstance(obs[column].dtype, pd.CategoricalDtype):
                group_obs[column] = pd.Categorical(
                    group_obs[column], categories=obs[column].cat.categories
                ).remove_unused_categories()
        group_obs["n_cells"] = np.bincount(cell_group_ids, minlength=len(names))
        group_obs.index = pd.Index(names, name=None)
        return AnnData(
            X=z.astype(np.float32),
            obs=group_obs,
            var=pd.DataFrame(index=[f"gde_{i}" for i in range(z.shape[1])]),
            uns={UNS_SETTINGS_KEY: {"group_key": self.group_key}},
        )

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Per-cell latent ``u`` (posterior mean of the CVAE), scvi-tools style.

        Each cell's distribution embedding is computed from all cells of its group.

        Returns
        -------
        ``(n_cells, n_latent_cell)`` array, rows in the order of ``indices`` (default: all).
        """
        self._check_if_trained(warn=True)
        if not hasattr(self.module.generator, "cell_latent"):
            raise NotImplementedError("This generator has no per-cell latent representation.")
        adata = self._validate_anndata(adata)
        names, z, labels, cell_indices, cell_group_ids = self._embed(adata, None, batch_size)
        group_of_cell = np.empty(adata.n_obs, dtype=np.int64)
        group_of_cell[cell_indices] = cell_group_ids
        wanted = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        z_t = torch.as_tensor(z, device=self.device)
        out = []
        data = self._registered(adata)
        for tensors, ids in self._chunks(data, wanted, group_of_cell[wanted], batch_size):
            x_in = self.module.encoder_input(self.module.modelled_data(tensors))
            out.append(self.module.generator.cell_latent(x_in, z_t[ids]).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.module.generator.n_latent_cell))

    # ------------------------------------------------------------------------ generation
    @torch.inference_mode()
    def predict_group_labels(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """Predict the group label (e.g. disease) of every group from its embedding.

        Needs a model set up with ``group_label_key``. Each group is embedded from all its
        cells (as in :meth:`get_distribution_embedding`) and classified by the head trained
        with the model; groups of a new AnnData work too.

        Parameters
        ----------
        adata
            AnnData with the model's features; default: the training data.
        groups
            Groups to classify; default: all groups with cells.
        batch_size
            Cells per chunk.

        Returns
        -------
        DataFrame indexed by group: ``prediction`` (categorical over the label categories), one
        probability column per category, and ``observed`` (the group's label in ``adata``, NaN
        where unknown) when ``adata`` has the label column. ``adata`` is not modified.
        """
        if not self.group_label_categories_:
            raise ValueError(
                "This model has no group classifier: register a `group_label_key` in "
                "GDE.setup_anndata (a label per group, NaN where unknown) and train a new model."
            )
        self._check_if_trained(warn=True)
        adata = self._validate_anndata(adata)
        names, z, labels, _, _ = self._embed(adata, groups, batch_size)
        with torch.inference_mode():
            probabilities = (
                self.module.classify(torch.as_tensor(z, device=self.device)).cpu().numpy()
            )
        categories = self.group_label_categories_
        index = pd.Index(names, name="group")
        table = pd.DataFrame(probabilities, index=index, columns=categories)
        table.insert(
            0,
            "prediction",
            pd.Categorical.from_codes(probabilities.argmax(1), categories=categories),
        )
        if self.group_label_key in adata.obs.columns:
            codes, _ = self._group_label_codes(adata, categories, labels)
            position = {str(name): i for i, name in enumerate(labels.categories)}
            observed = codes[[position[name] for name in names]]
            table["observed"] = pd.Categorical.from_codes(observed, categories=categories)
        return table

    def sample(
        self,
        groups: Sequence[str] | None = None,
        embedding: pd.DataFrame | np.ndarray | None = None,
        n_cells: int = 100,
        adata: AnnData | None = None,
        batch: str | None = None,
        seed: int | None = None,
        batch_size: int = 4096,
        sampler_kwargs: dict | None = None,
        loadings: str | None = None,
    ) -> AnnData:
        """Generate cells from groups or from arbitrary embeddings.

        Parameters
        ----------
        groups
            Groups of ``adata`` to generate from (their embeddings are computed from all their
            cells). Default when ``embedding`` is also ``None``: every group.
        embedding
            Embeddings to generate from instead, e.g. an interpolation between two groups:
            a groups × ``n_latent`` DataFrame (its index names the outputs) or array.
        n_cells
            Cells generated per group or embedding.
        adata
            Reference AnnData; default: the training data.
        batch
            Batch category to generate in. Default: each generated cell copies the batch,
            covariates and library size of a random cell of its group (of ``adata`` when
            generating from ``embedding``).
        seed
            Seed for reproducible samples.
        sampler_kwargs
            Passed to the generator's ``sample``. For ``generator="flow"``: the ODE solver,
            e.g. ``{"method": "heun", "n_sampling_steps": 20}`` (default: Euler, 10 steps).
            For ``generator="diffusion"``: ``{"method": "ddim", "n_sampling_steps": 50}`` for a
            fast deterministic sampler (default: ancestral DDPM over all training steps).
        loadings
            For a model of a linear representation (``setup_anndata(obsm_key=...)``): key of
            ``adata.varm`` with its gene loadings (``"PCs"`` after ``sc.pp.pca``). The cells are
            then returned in gene space, ``X = rep @ varm[loadings].T + mean(adata.X)``, with
            the representation kept in ``obsm[obsm_key]``.

        Returns
        -------
        AnnData of generated cells (raw counts, CSR, for count likelihoods; the representation,
        or genes with ``loadings``) with the source group or embedding name in
        ``obs["group"]``. For a model of RNA and proteins (:meth:`setup_mudata` with a
        ``"protein_layer"``): a MuData with both modalities, named as in the training data.
        """
        self._check_if_trained(warn=True)
        n_cells = check_int(n_cells, "n_cells")
        if groups is not None and embedding is not None:
            raise ValueError("Pass either `groups` or `embedding`, not both.")
        if sampler_kwargs is not None and not isinstance(sampler_kwargs, dict):
            raise ValueError(f"`sampler_kwargs` must be a dict, got {type(sampler_kwargs)}.")
        obsm_key = self.adata_manager.registry["setup_args"].get("obsm_key")
        if loadings is not None and obsm_key is None:
            raise ValueError(
                "`loadings` maps a representation back to genes, but this model was set up on "
                "genes (no `obsm_key`): its samples are already in gene space."
            )
        adata = self._validate_anndata(adata)
        if embedding is None:
            names, z, labels, cell_indices, cell_group_ids = self._embed(adata, groups, batch_size)
            donors = [cell_indices[cell_group_ids == g] for g in range(len(names))]
        else:
            names, z = self._embedding_input(embedding)
            donors = [np.arange(adata.n_obs)] * len(names)
        x = self._generate(
            adata, z, donors, n_cells, batch, seed, sampler_kwargs, embedding is None
        )
        obs = pd.DataFrame(
            {"group": pd.Categorical(np.repeat(names, n_cells), categories=names)},
            index=[f"gen_{i}" for i in range(x.shape[0])],
        )
        if self.module.n_proteins:
            return self._generated_mudata(x, obs)
        var = pd.DataFrame(index=self.var_names.astype(str))
        if loadings is not None:
            genes = representation_to_genes(x, adata, loadings)
            return AnnData(
                X=genes, obs=obs, var=pd.DataFrame(index=adata.var_names), obsm={obsm_key: x}
            )
        return AnnData(X=sparse.csr_matrix(x) if self.module.count_data else x, obs=obs, var=var)

    @torch.inference_mode()
    def _generate(
        self,
        adata,
        z: np.ndarray,
        donors: Sequence[np.ndarray],
        n_cells: int,
        batch: str | None,
        seed: int | None,
        sampler_kwargs: dict | None,
        copy_library: bool,
    ) -> np.ndarray:
        """``n_cells`` cells per row of ``z``; each copies the covariates of a random cell of
        ``donors[row]`` (and its library size if ``copy_library``, else a log-normal draw)."""
        self.module.eval()
        rng = np.random.default_rng(seed)
        if seed is not None:
            torch.manual_seed(seed)
        reference = self._registered(adata)
        if batch is not None:
            mapping = list(self.adata_manager.get_state_registry(BATCH_KEY).categorical_mapping)
            if str(batch) not in [str(m) for m in mapping]:
                raise ValueError(f"Unknown batch {batch!r}; known batches: {mapping}.")
            batch_code = [str(m) for m in mapping].index(str(batch))
        chunks = []
        for g in range(len(z)):
            cells = rng.choice(donors[g], n_cells, replace=True)
            tensors = {k: v.to(self.device) for k, v in reference.rows(cells).items()}
            if batch is not None:
                tensors[BATCH_KEY] = torch.full_like(tensors[BATCH_KEY], batch_code)
            library = self._library_for(tensors, copy_library) if self.module.count_data else None
            z_rows = torch.as_tensor(z[g], device=self.device, dtype=torch.float32).expand(
                n_cells, -1
            )
            generated = self.module.sample_cells(z_rows, tensors, library, sampler_kwargs)
            chunks.append(generated.cpu().numpy())
        return np.concatenate(chunks).astype(np.float32)

    def _generated_mudata(self, x: np.ndarray, obs: pd.DataFrame):
        """Generated RNA and protein counts as a MuData with the model's modality names."""
        from mudata import MuData

        n_genes = len(self.var_names)
        names = self._modalities
        mods = {
            names["rna_layer"]: AnnData(
                X=sparse.csr_matrix(x[:, :n_genes]),
                obs=obs.copy(),
                var=pd.DataFrame(index=self.var_names.astype(str)),
            ),
            names["protein_layer"]: AnnData(
                X=sparse.csr_matrix(x[:, n_genes:]),
                obs=obs.copy(),
                var=pd.DataFrame(index=self.protein_names.astype(str)),
            ),
        }
        mdata = MuData(mods)
        mdata.obs["group"] = obs["group"]
        return mdata

    def _library_for(self, tensors: dict[str, torch.Tensor], from_group: bool) -> torch.Tensor:
        """``(n_cells, n_blocks)`` library sizes per modality: the copied cells' own, or
        log-normal draws for their batch."""
        if from_group:
            data = self.module.modelled_data(tensors)
            return block_totals(data, self.module.block_sizes).clamp(min=1.0)
        batch = tensors[BATCH_KEY].long().view(-1)
        mean = self.module.library_log_mean[batch]
        std = self.module.library_log_std[batch]
        return torch.exp(mean + std * torch.randn_like(mean))

    def _embedding_input(self, embedding) -> tuple[list[str], np.ndarray]:
        if isinstance(embedding, pd.DataFrame):
            names, z = [str(i) for i in embedding.index], embedding.to_numpy(dtype=np.float32)
        else:
            z = np.atleast_2d(np.asarray(embedding, dtype=np.float32))
            names = [f"embedding_{i}" for i in range(z.shape[0])]
        if z.shape[1] != self.module.n_latent or not np.isfinite(z).all():
            raise ValueError(
                f"`embedding` must be finite with {self.module.n_latent} columns, "
                f"got shape {z.shape}."
            )
        return names, z

    # ------------------------------------------------------------------------ save / load
    def save(self, dir_path: str, overwrite: bool = False, **kwargs) -> None:
        """Save the model (scvi-tools format) atomically.

        The files are written to a temporary folder beside ``dir_path`` that replaces it only
        once complete, so a failed save leaves any previous model in ``dir_path`` intact.
        Other keyword arguments (``prefix``, ``save_anndata``, ...) go to
        :meth:`scvi.model.base.BaseModelClass.save`.
        """
        write_dir_atomic(
            dir_path,
            lambda tmp: BaseModelClass.save(self, str(tmp), overwrite=True, **kwargs),
            overwrite=overwrite,
        )

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, prefix: str | None = None, **kwargs):
        """Load a saved model; ``adata`` must have the same features in the same order.

        Raises a ``ValueError`` (scvi-tools only warns) when the var names differ.
        """
        if adata is not None:
            saved = torch.load(
                os.path.join(dir_path, f"{prefix or ''}model.pt"),
                map_location="cpu",
                weights_only=False,
            )
            registry = saved["attr_dict"]["registry_"]
            args = registry["setup_args"]
            if not args.get("obsm_key"):
                fields_ = registry["field_registries"]
                proteins = fields_.get(PROTEIN_KEY, {}).get("state_registry", {})
                _check_feature_names(
                    adata,
                    dict(args.get("modalities") or {}),
                    fields_[X_KEY]["state_registry"]["column_names"],
                    proteins.get("column_names", []),
                    whose="saved model",
                )
        return super().load(dir_path, adata=adata, prefix=prefix, **kwargs)

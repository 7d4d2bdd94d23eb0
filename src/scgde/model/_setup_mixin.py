"""Registration of AnnData and MuData for GDE models."""

from __future__ import annotations

from collections.abc import Sequence

from anndata import AnnData
from scvi.data import AnnDataManager, fields

from .._constants import (
    BATCH_KEY,
    CAT_COVS_KEY,
    CONT_COVS_KEY,
    GROUP_REGISTRY_KEY,
    PROTEIN_KEY,
    X_KEY,
)
from .._utils import layer_matrix
from ..data import GroupField, group_labels
from ..data._group_field import MuDataGroupField
from ._checks import (
    check_cells_and_features,
    check_covariate_columns,
    check_group_label_column,
)
from ._lazy_annotations import load_annotations


class SetupMixin:
    """``setup_anndata`` and ``setup_mudata`` of :class:`~scgde.model.GDE`."""

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

        Adds to ``adata`` only what scvi-tools registration adds: the ``obs`` columns
        ``_scvi_group`` (each cell's group code) and ``_scvi_batch`` (and
        ``obsm["_scvi_extra_*"]`` codes for covariates) and ``uns`` keys ``_scvi_uuid`` and
        ``_scvi_manager_uuid``. The group is a registered field (``"group"``), so
        ``model.view_anndata_setup()`` lists the groups; re-run ``setup_anndata`` after
        changing the group column. Bad input (no cells or genes, duplicated
        gene names, missing columns or values) raises before anything is added.

        Parameters
        ----------
        adata
            AnnData with one row per cell: in memory, backed (``read_h5ad(path, backed="r")``)
            or lazy (``anndata.experimental.read_lazy``: its ``obs`` and ``var`` are loaded
            into memory here, its matrix stays lazy and is read in blocks of rows).
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
        load_annotations(adata)
        check_cells_and_features(adata, features=obsm_key is None)
        labels = group_labels(adata.obs, group_key)  # clear errors now rather than at training
        check_group_label_column(adata.obs, labels, group_label_key)
        cls._register_anndata(
            adata,
            setup_method_args,
            layer,
            batch_key,
            categorical_covariate_keys,
            continuous_covariate_keys,
            obsm_key,
            group_key=group_key,
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
        group_key: str | Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        """Register the data, group (where there is a ``group_key``), batch and covariate
        fields of ``adata`` (after checking keys)."""
        if obsm_key is not None and layer is not None:
            raise ValueError("Pass either `layer` or `obsm_key`, not both.")
        if obsm_key is not None and obsm_key not in adata.obsm:
            raise KeyError(f"adata.obsm has no {obsm_key!r}; available: {list(adata.obsm)}.")
        if obsm_key is None:
            layer_matrix(adata, layer)  # a missing layer or an empty X: a clear error now
        check_covariate_columns(
            adata.obs, batch_key, categorical_covariate_keys, continuous_covariate_keys
        )
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
        if group_key is not None:
            anndata_fields.insert(1, GroupField(GROUP_REGISTRY_KEY, group_key))
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
        check_group_label_column(mdata.obs, labels, group_label_key)
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
        for name in (rna, protein):
            if name is not None:
                check_cells_and_features(mdata.mod[name], what=f"mdata.mod[{name!r}]")
        if protein_layer is not None and protein is None:
            raise ValueError("`protein_layer` needs `modalities={'protein_layer': ...}`.")
        for name, layer in ((rna, rna_layer), (protein, protein_layer)):
            if name is not None and layer is not None and layer not in mdata.mod[name].layers:
                raise KeyError(
                    f"Modality {name!r} has no layer {layer!r}; it has "
                    f"{list(mdata.mod[name].layers)}."
                )
        check_covariate_columns(
            mdata.obs, batch_key, categorical_covariate_keys, continuous_covariate_keys
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
            MuDataGroupField(GROUP_REGISTRY_KEY, group_key, mod_key=None),
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

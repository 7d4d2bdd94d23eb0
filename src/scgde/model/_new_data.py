"""New data for a trained model: checked against its registration, then registered on a
working copy, so that the user's AnnData, MuData or view is never modified."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .._constants import BATCH_KEY, CAT_COVS_KEY
from ._checks import (
    check_cells_and_features,
    check_covariate_columns,
    check_feature_names,
    distinct_strings,
)
from ._lazy_annotations import has_lazy_annotations, in_memory

#: Working copies whose scvi-tools registration a model keeps (older ones are deregistered,
#: so that repeated calls on new data do not accumulate them).
_MAX_WORKING_COPIES = 4


def working_copy(adata, categories: dict[str, list]):
    """A copy of ``adata`` for scvi-tools' registration, which writes into the object it gets.

    An AnnData's matrices are shared, not copied (only ``obs`` and ``var`` are); a view or a
    MuData is copied whole. The registration keys of an earlier set-up are dropped, and each
    column in ``categories`` (obs column -> the categories registered in training) is cast to
    those categories by the string form of its values, so that e.g. batches stored as integers
    in training and as strings now are the same batches.
    """
    if isinstance(adata, AnnData) and not adata.is_view:
        work = _sharing_matrices(adata, adata.obs.copy(), adata.var.copy())
    elif getattr(adata, "isbacked", False):
        raise ValueError(
            "This is a view of a backed AnnData, which cannot be registered without loading "
            "it: pass `adata[...].to_memory()` (loads only those cells) or the backed AnnData "
            "itself (its matrix is read in blocks)."
        )
    else:
        work = adata.copy()
        for key in [k for k in work.uns if k.startswith("_scvi")]:
            del work.uns[key]
    for column, known in categories.items():
        lookup = {str(category): category for category in known}
        values = work.obs[column].astype(str).map(lookup)
        work.obs[column] = pd.Categorical(values, categories=list(known))
    return work


def _sharing_matrices(adata: AnnData, obs: pd.DataFrame, var: pd.DataFrame) -> AnnData:
    """A new AnnData with these annotations that shares ``adata``'s matrices (not copied)."""
    return AnnData(
        X=adata.X,
        obs=obs,
        var=var,
        layers=dict(adata.layers.items()),
        obsm=dict(adata.obsm.items()),
    )


def with_annotations_loaded(adata):
    """``adata`` itself, or for a lazy AnnData a new one with its annotations in memory that
    shares its matrices (the user's object is not modified)."""
    if not has_lazy_annotations(adata):
        return adata
    return _sharing_matrices(adata, in_memory(adata.obs), in_memory(adata.var))


class NewDataMixin:
    """Checks and registration of new data for :class:`~scgde.model.GDE`."""

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        """The data to compute on: the training data, or a registered working copy of ``adata``.

        New data are checked first: unseen groups are fine (the encoder is amortized); no
        cells, different features, missing or unseen batch or covariate categories, or invalid
        values raise a clear error. ``adata`` itself is never modified; methods that write
        results write them into ``adata``, not into the returned copy.
        """
        if adata is None or adata is self.adata:
            return super()._validate_anndata(adata, copy_if_view)
        adata = with_annotations_loaded(adata)
        categories = self._check_compatible(adata)
        work = super()._validate_anndata(working_copy(adata, categories), copy_if_view=False)
        self._keep_working_copy(work)
        self._check_data(self.get_anndata_manager(work, required=True), self.module.likelihood)
        return work

    def _keep_working_copy(self, work) -> None:
        """Remember ``work``'s registration and deregister the oldest beyond the limit."""
        kept = self.__dict__.setdefault("_working_copies", [])
        kept.append(work)
        while len(kept) > _MAX_WORKING_COPIES:
            old = kept.pop(0)
            if old is self.adata:
                continue
            # a transferred registration lives in the model's own store only (scvi-tools'
            # deregister_manager looks it up in the class store and fails)
            uuid = old.uns.get("_scvi_uuid")
            self._per_instance_manager_store[self.id].pop(uuid, None)
            self._setup_adata_manager_store.pop(uuid, None)

    def _check_compatible(self, adata) -> dict[str, list]:
        """Clear errors for new data the model cannot read; returns the registered categories
        of its categorical obs columns (batch and covariates)."""
        args = self._setup_args
        if isinstance(adata, AnnData) == bool(self._modalities):
            kind, method = (
                ("a MuData", "setup_mudata")
                if self._modalities
                else ("an AnnData", "setup_anndata")
            )
            raise TypeError(f"The model was set up on {kind} ({method}); pass {kind}.")
        check_cells_and_features(adata, features=False)
        if args.get("obsm_key") is None:
            check_feature_names(adata, self._modalities, self.var_names, self.protein_names)
        elif args["obsm_key"] not in adata.obsm:
            raise KeyError(
                f"adata.obsm has no {args['obsm_key']!r}, the representation the model was "
                f"trained on; available: {list(adata.obsm)}."
            )
        self._check_set_columns(adata)
        categories = {}
        batch_key = args.get("batch_key")
        if batch_key is not None:
            mapping = self.adata_manager.get_state_registry(BATCH_KEY).categorical_mapping
            categories[batch_key] = list(mapping)
        cat_keys = args.get("categorical_covariate_keys") or []
        if cat_keys:
            mappings = self.adata_manager.get_state_registry(CAT_COVS_KEY).mappings
            categories.update({key: list(mappings[key]) for key in cat_keys})
        continuous_keys = args.get("continuous_covariate_keys")
        check_covariate_columns(adata.obs, batch_key, cat_keys, continuous_keys)
        for key, known in categories.items():
            unseen = sorted(distinct_strings(adata.obs[key]) - {str(c) for c in known})
            if unseen:
                what = "Batch categories" if key == batch_key else "Covariate categories"
                raise ValueError(
                    f"{what} {unseen[:10]} in adata.obs[{key!r}] were not seen in training "
                    f"(known: {known[:10]}). The generator is conditioned on them, so it cannot "
                    "handle a new one: map those cells to a known category or retrain."
                )
        return categories

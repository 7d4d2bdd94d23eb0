"""Checks of AnnData against a GDE model and its registration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._constants import FIELD_REGISTRIES_KEY, PROTEIN_KEY, STATE_REGISTRY_KEY, X_KEY
from ..data import group_level_labels


def check_group_label_column(obs: pd.DataFrame, labels, group_label_key: str | None) -> None:
    """Clear errors for a bad ``group_label_key`` at set-up rather than at training."""
    if group_label_key is None:
        return
    if group_label_key not in obs.columns:
        raise KeyError(
            f"`group_label_key` {group_label_key!r} is not a column of adata.obs; available: "
            f"{list(obs.columns)}."
        )
    group_level_labels(labels, obs[group_label_key], label_key=group_label_key)


def check_feature_names(adata, modalities: dict, genes, proteins, whose: str = "model") -> None:
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


def distinct_strings(column: pd.Series) -> set[str]:
    """The distinct values of an obs column as strings, without a string per cell."""
    return {str(value) for value in pd.unique(column)}


def registered_feature_names(registry: dict) -> tuple[list, list]:
    """Gene (or feature) and protein names recorded in a model's registry
    (:meth:`scvi.model.base.BaseModelClass.load_registry`)."""
    fields = registry[FIELD_REGISTRIES_KEY]
    genes = fields[X_KEY][STATE_REGISTRY_KEY]["column_names"]
    proteins = fields.get(PROTEIN_KEY, {}).get(STATE_REGISTRY_KEY, {}).get("column_names", [])
    return list(genes), list(proteins)


def check_cells_and_features(adata, what: str = "adata", features: bool = True) -> None:
    """Clear errors for data no model can be set up on: no cells, no genes, or duplicated
    gene names (genes are matched by name).

    ``features=False`` skips the gene checks (a representation in ``obsm`` is modelled).
    """
    if adata.n_obs == 0:
        raise ValueError(
            f"{what} has 0 cells (check the filtering or subsetting that produced it)."
        )
    if not features:
        return
    if adata.n_vars == 0:
        raise ValueError(f"{what} has 0 genes (var): there are no features to model.")
    duplicated = adata.var_names[adata.var_names.duplicated()]
    if len(duplicated):
        raise ValueError(
            f"{what}.var_names has {len(duplicated)} duplicated names (e.g. "
            f"{list(duplicated.unique()[:5])}); scgde matches genes by name. Call "
            f"`{what}.var_names_make_unique()` first."
        )


def check_covariate_columns(
    obs: pd.DataFrame,
    batch_key: str | None,
    categorical_keys: list[str] | None,
    continuous_keys: list[str] | None,
) -> None:
    """Clear errors for batch and covariate columns that registration cannot use: missing
    columns, missing values, non-numeric or non-finite continuous covariates."""
    categorical = ([batch_key] if batch_key is not None else []) + list(categorical_keys or [])
    continuous = list(continuous_keys or [])
    for key in [*categorical, *continuous]:
        if key not in obs.columns:
            raise KeyError(
                f"adata.obs has no column {key!r} (batch or covariate); available: "
                f"{list(obs.columns)}."
            )
    for key in categorical:
        n_missing = int(obs[key].isna().sum())
        if n_missing:
            raise ValueError(
                f"adata.obs[{key!r}] has {n_missing} missing values; every cell needs a "
                f"{'batch' if key == batch_key else 'category'}. Fill them (e.g. 'unknown') or "
                "drop those cells."
            )
    for key in continuous:
        column = obs[key]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            raise ValueError(
                f"Continuous covariate adata.obs[{key!r}] has dtype {column.dtype}; it must be "
                "numeric (pass categories as `categorical_covariate_keys`)."
            )
        if not np.isfinite(column.to_numpy(dtype=np.float64)).all():
            raise ValueError(
                f"Continuous covariate adata.obs[{key!r}] has missing or infinite values."
            )

"""Features of perturbations, so that a model can predict perturbations it has not seen.

A perturbation (a condition such as ``"KLF1"`` or the combination ``"KLF1+MAP2K6"``) is
described by the sum of the feature vectors of its parts. Genetic perturbations get data-derived
features (the co-expression of the target gene with every gene in control cells, reduced by
PCA); other conditions get identity (one-hot) features, which carry no information about unseen
conditions but let the same model code handle them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._utils import distinct_names
from ._coexpression import coexpression_features, genes_varying_in
from ._perturbation_names import control_parts, perturbation_parts, split_combination, unique_names

_SPLIT_KEYS = {"index", "columns", "data", "index_names", "column_names"}


def one_hot_features(parts: Sequence[str]) -> pd.DataFrame:
    """Identity features: each part (a categorical condition) is its own direction.

    These let conditions without a data-derived description share the code path of
    :func:`perturbation_feature_matrix`, but say nothing about conditions not listed.

    Parameters
    ----------
    parts
        Unique single parts, e.g. from :func:`perturbation_parts`.

    Returns
    -------
    Identity matrix as a float DataFrame: index ``parts``, columns ``"onehot_<part>"``.

    Raises
    ------
    ValueError
        If ``parts`` is empty or has repeats.
    """
    parts = distinct_names(parts, "parts", "there are no perturbations to describe.")
    return pd.DataFrame(
        np.eye(len(parts)), index=pd.Index(parts), columns=[f"onehot_{p}" for p in parts]
    )


def default_perturbation_features(
    adata: AnnData,
    perturbation_key: str,
    control: str,
    separator: str = "+",
    n_components: int = 16,
    layer: str | None = None,
    *,
    max_cells: int = 20000,
    seed: int = 0,
) -> tuple[pd.DataFrame, str]:
    """Co-expression features when every perturbed part is a measured gene, else one-hot.

    The one rule of :class:`~scgde.model.PerturbationGDE`'s default features. Co-expression
    features are computed for every gene that varies across the control cells, so that any
    of them, seen perturbed or not, can be described.

    Parameters
    ----------
    adata
        Cells by genes with raw counts.
    perturbation_key
        obs column with the perturbation of every cell.
    control
        Name of the control condition in that column.
    separator
        String between the parts of a combination.
    n_components, layer, max_cells, seed
        Passed to :func:`coexpression_features`.

    Returns
    -------
    features
        One row per part of the non-control perturbations.
    kind
        ``"coexpression"`` (:func:`coexpression_features` of the genes that vary across the
        control cells) when every part is in ``adata.var_names`` and at least 2 genes vary,
        else ``"one_hot"`` (:func:`one_hot_features` of the parts).

    Raises
    ------
    KeyError
        If ``perturbation_key`` is not in ``adata.obs``.
    ValueError
        If ``control`` is not among the perturbations, there is no other perturbation, or
        :func:`coexpression_features` fails (e.g. a target gene is not expressed in controls).
    """
    if perturbation_key not in adata.obs:
        raise KeyError(
            f"adata.obs has no column {perturbation_key!r}; available: {list(adata.obs)}."
        )
    column = adata.obs[perturbation_key]
    if column.isna().any():
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] has {int(column.isna().sum())} missing value(s); "
            "every cell needs a perturbation (the control condition included)."
        )
    names = column.astype(str).to_numpy()
    control_mask = names == str(control)
    if not control_mask.any():
        shown = sorted(set(names))[:10]
        raise ValueError(
            f"The control {control!r} is not among the values of adata.obs"
            f"[{perturbation_key!r}] (e.g. {shown})."
        )
    parts = perturbation_parts(pd.unique(names), str(control), separator)
    if not parts:
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] holds only the control {control!r}; there are no "
            "perturbations to describe."
        )
    var_names = set(adata.var_names.astype(str))
    if all(p in var_names for p in parts):
        genes = genes_varying_in(adata, control_mask, layer)
        if len(genes) >= 2:
            features = coexpression_features(
                adata, genes, control_mask, n_components=n_components, layer=layer,
                max_cells=max_cells, seed=seed,
            )  # fmt: skip
            return features, "coexpression"
    return one_hot_features(parts), "one_hot"


# --------------------------------------------------------------------------------------------
# Using feature tables
# --------------------------------------------------------------------------------------------
def _check_features(features: pd.DataFrame, name: str = "features") -> pd.DataFrame:
    """A feature table with string index, checked to be unique, numeric and finite."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame (one row per part), got {type(features).__name__}."
        )
    non_numeric = [
        str(c) for c, t in features.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
    ]
    if non_numeric:
        raise ValueError(f"{name} has non-numeric column(s) {non_numeric[:10]}.")
    features = features.copy()
    features.index = features.index.astype(str)
    if not features.index.is_unique:
        repeated = sorted(set(features.index[features.index.duplicated()]))
        raise ValueError(f"{name} has repeated row(s) {repeated[:10]}; parts must be unique.")
    values = features.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has NaN or infinite values in the row(s) of {list(features.index[bad])[:10]}."
        )
    return features


def perturbation_feature_matrix(
    perturbations: Sequence[str], features: pd.DataFrame, control: str, separator: str = "+"
) -> np.ndarray:
    """Features of every perturbation: the sum of the feature rows of its parts.

    Parameters
    ----------
    perturbations
        Perturbation names (repeats are fine).
    features
        One row per single part (index: part names), e.g. from
        :func:`default_perturbation_features`.
    control
        Name of the control condition, which gets a row of zeros; it is also dropped as a part
        of combinations (as are ``"ctrl"`` and ``"control"``).
    separator
        String between the parts of a combination.

    Returns
    -------
    Float64 array of shape ``(len(perturbations), n_features)``.

    Raises
    ------
    KeyError
        Naming every perturbation with parts that have no row in ``features`` (and the parts).
    ValueError
        If ``features`` has non-finite or non-numeric values or repeated rows, or a name is
        missing or has no parts.
    """
    features = _check_features(features)
    values = features.to_numpy(dtype=np.float64)
    position = pd.Series(np.arange(len(features)), index=features.index)
    dropped = control_parts(control)
    names = np.asarray(perturbations, dtype=object).reshape(-1)
    unique = unique_names(names)
    out = np.zeros((len(unique), values.shape[1]))
    missing: dict[str, list[str]] = {}
    for i, name in enumerate(unique):
        if name == control:
            continue
        parts = split_combination(name, separator, control_parts=dropped)
        lacking = [p for p in parts if p not in position.index]
        if lacking:
            missing[str(name)] = lacking
            continue
        out[i] = values[position[parts].to_numpy()].sum(axis=0)
    if missing:
        listed = "; ".join(f"{n!r} (missing {parts})" for n, parts in missing.items())
        raise KeyError(
            f"No features for the parts of {len(missing)} perturbation(s): {listed}. The "
            f"feature table has {len(features)} rows; add rows for these parts."
        )
    inverse = pd.Index(unique).get_indexer(names)
    return out[inverse]


def features_from_uns(adata: AnnData, key: str) -> pd.DataFrame:
    """A user-provided feature table stored in ``adata.uns[key]``.

    Parameters
    ----------
    adata
        AnnData with the table in ``uns``.
    key
        Key in ``adata.uns``. The value may be

        - a :class:`pandas.DataFrame` with one row per part;
        - a dict with ``"index"`` (parts), ``"data"`` (2-D array) and optionally ``"columns"``,
          as written by ``DataFrame.to_dict(orient="split")``;
        - a dict mapping every part to its 1-D feature vector (columns ``"feature_0"``, ...).

    Returns
    -------
    pandas.DataFrame
        The table, with a string index and float values.

    Raises
    ------
    KeyError
        If ``key`` is not in ``adata.uns``.
    TypeError
        If the value has another type.
    ValueError
        If shapes disagree, or values are non-numeric or non-finite, or rows repeat.
    """
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no {key!r}; available: {list(adata.uns)}.")
    value = adata.uns[key]
    name = f"adata.uns[{key!r}]"
    if isinstance(value, pd.DataFrame):
        table = value
    elif isinstance(value, Mapping) and {"index", "data"} <= set(value) <= _SPLIT_KEYS:
        table = _split_table(value, name)
    elif isinstance(value, Mapping):
        table = _vectors_table(value, name)
    else:
        raise TypeError(
            f"{name} is a {type(value).__name__}; expected a DataFrame, a dict with 'index', "
            "'columns' and 'data', or a dict mapping every part to its feature vector."
        )
    if table.shape[0] == 0:
        raise ValueError(f"{name} has no rows.")
    return _check_features(table, name).astype(np.float64)


def _split_table(value: Mapping, name: str) -> pd.DataFrame:
    """DataFrame from the ``orient="split"`` dict format."""
    index = [str(i) for i in np.asarray(value["index"], dtype=object).reshape(-1)]
    try:
        data = np.asarray(value["data"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}['data'] must be a numeric 2-D array ({err}).") from None
    if data.ndim == 1 and len(index) == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[0] != len(index):
        raise ValueError(
            f"{name}['data'] has shape {data.shape}, but {name}['index'] has {len(index)} "
            "entries; expected a 2-D array with one row per index entry."
        )
    if "columns" in value:
        columns = [str(c) for c in np.asarray(value["columns"], dtype=object).reshape(-1)]
        if len(columns) != data.shape[1]:
            raise ValueError(
                f"{name}['columns'] has {len(columns)} entries, but {name}['data'] has "
                f"{data.shape[1]} columns."
            )
    else:
        columns = [f"feature_{j}" for j in range(data.shape[1])]
    return pd.DataFrame(data, index=pd.Index(index), columns=columns)


def _vectors_table(value: Mapping, name: str) -> pd.DataFrame:
    """DataFrame from a dict mapping every part to its feature vector."""
    rows, lengths = {}, {}
    for part, vector in value.items():
        try:
            row = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}[{part!r}] is not a numeric vector ({type(vector).__name__})."
            ) from None
        if row.ndim != 1:
            raise ValueError(f"{name}[{part!r}] has shape {row.shape}; expected a 1-D vector.")
        rows[str(part)] = row
        lengths.setdefault(row.size, []).append(str(part))
    if len(lengths) > 1:
        summary = {n: parts[:3] for n, parts in lengths.items()}
        raise ValueError(
            f"The feature vectors in {name} have different lengths (length: parts) {summary}."
        )
    if not rows:
        raise ValueError(f"{name} is an empty dict.")
    data = np.stack(list(rows.values()))
    return pd.DataFrame(
        data, index=pd.Index(list(rows)), columns=[f"feature_{j}" for j in range(data.shape[1])]
    )

"""Group labels: which set each cell belongs to."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._constants import COMBINED_GROUP_SEPARATOR


def as_key_list(group_key: str | Sequence[str]) -> list[str]:
    """``group_key`` as a non-empty list of obs column names."""
    keys = [group_key] if isinstance(group_key, str) else group_key
    if not isinstance(keys, list | tuple) or not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            f"`group_key` must be an obs column name or a list of them, got {group_key!r}."
        )
    return list(keys)


def group_labels(obs: pd.DataFrame, group_key: str | Sequence[str]) -> pd.Categorical:
    """The group of every cell as a categorical without unused categories.

    Parameters
    ----------
    obs
        ``adata.obs``.
    group_key
        An obs column, or a list of columns whose combination defines the groups (labels are
        joined with ``" | "``, e.g. ``"donor1 | T0"``).

    Raises
    ------
    KeyError
        If a column is missing.
    ValueError
        If a cell has a missing group label, or two combinations join to the same name.
    """
    keys = as_key_list(group_key)
    missing = [k for k in keys if k not in obs.columns]
    if missing:
        raise KeyError(
            f"Group column(s) {missing} not found in adata.obs. Available columns: "
            f"{list(obs.columns)}. Pass the obs column that names each cell's patient, clone or "
            "perturbation as `group_key`."
        )
    codes, names = [], []
    for key in keys:
        column = obs[key]
        n_missing = int(column.isna().sum())
        if n_missing:
            raise ValueError(
                f"adata.obs[{key!r}] has {n_missing} missing values; every cell needs a group. "
                "Drop or label those cells before calling scgde."
            )
        if isinstance(column.dtype, pd.CategoricalDtype):
            # int64: category codes can be int8, which would overflow when combined below
            codes.append(np.asarray(column.cat.codes, dtype=np.int64))
            names.append(np.asarray(column.cat.categories.astype(str), dtype=object))
        else:
            key_codes, uniques = pd.factorize(column, sort=True)
            codes.append(key_codes.astype(np.int64))
            names.append(np.asarray(pd.Index(uniques).astype(str), dtype=object))
    if len(keys) == 1:
        categorical = pd.Categorical.from_codes(codes[0], categories=pd.Index(names[0]))
        return categorical.remove_unused_categories()
    # combine per-column codes into one integer per cell (mixed radix); strings are built only
    # for the combinations that occur, so memory per cell stays a few bytes
    combined = codes[0]
    for key_codes, key_names in zip(codes[1:], names[1:], strict=True):
        combined = combined * len(key_names) + key_codes
    present, cell_codes = np.unique(combined, return_inverse=True)
    labels = np.empty(len(present), dtype=object)
    remainder = present
    parts = []
    for key_names in reversed(names):
        remainder, digit = np.divmod(remainder, len(key_names))
        parts.append(key_names[digit])
    labels[:] = parts[-1]
    for part in reversed(parts[:-1]):
        labels = labels + COMBINED_GROUP_SEPARATOR + part
    names_index = pd.Index(labels)
    if names_index.has_duplicates:
        clash = names_index[names_index.duplicated()][0]
        raise ValueError(
            f"Different combinations of {keys} give the same group name {clash!r}: values that "
            f"contain the separator {COMBINED_GROUP_SEPARATOR!r} make the joined names ambiguous. "
            "Replace it in those columns' values."
        )
    return pd.Categorical.from_codes(cell_codes.reshape(-1), categories=names_index)


def cells_of_groups(
    labels: pd.Categorical, groups: Sequence[str] | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Select groups and return their names, their cells, and each cell's position in the list.

    Parameters
    ----------
    labels
        Output of :func:`group_labels`.
    groups
        Groups to keep, in the order wanted; ``None`` keeps every group that has cells.

    Returns
    -------
    names
        Group names.
    cell_indices
        Indices (into ``labels``) of the cells of those groups, in increasing order.
    cell_group_ids
        For each selected cell, the position of its group in ``names``.
    """
    if groups is None:
        names = [str(c) for c in labels.categories]
    else:
        names = [str(g) for g in ([groups] if isinstance(groups, str) else groups)]
        if not names:
            raise ValueError("`groups` is empty; pass None to use every group.")
        if len(set(names)) != len(names):
            raise ValueError("`groups` contains duplicates.")
        present = set(labels.categories)
        empty = [g for g in names if g not in present]
        if empty:
            raise ValueError(
                f"Group(s) {empty[:10]} have no cells in this AnnData (after any subsetting). "
                "Check the names or drop them from `groups`."
            )
    if not names:
        raise ValueError("The AnnData has no cells, so there are no groups to embed.")
    position = pd.Series(np.arange(len(names)), index=names)
    position_of_code = position.reindex(labels.categories.astype(str)).fillna(-1).to_numpy()
    per_cell = position_of_code.astype(np.int64)[np.asarray(labels.codes)]
    cell_indices = np.flatnonzero(per_cell >= 0)
    return names, cell_indices, per_cell[cell_indices]

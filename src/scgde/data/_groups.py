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
        If a cell has a missing group label.
    """
    keys = as_key_list(group_key)
    missing = [k for k in keys if k not in obs.columns]
    if missing:
        raise KeyError(
            f"Group column(s) {missing} not found in adata.obs. Available columns: "
            f"{list(obs.columns)}. Pass the obs column that names each cell's patient, clone or "
            "perturbation as `group_key`."
        )
    columns = [obs[k] for k in keys]
    for key, column in zip(keys, columns, strict=True):
        n_missing = int(column.isna().sum())
        if n_missing:
            raise ValueError(
                f"adata.obs[{key!r}] has {n_missing} missing values; every cell needs a group. "
                "Drop or label those cells before calling scgde."
            )
    if len(columns) == 1:
        labels = columns[0].astype(str).to_numpy()
    else:
        labels = columns[0].astype(str).to_numpy(dtype=object)
        for column in columns[1:]:
            labels = labels + COMBINED_GROUP_SEPARATOR + column.astype(str).to_numpy(dtype=object)
    categorical = pd.Categorical(labels)
    return categorical.remove_unused_categories()


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
    per_cell = position.reindex(np.asarray(labels, dtype=object)).to_numpy()
    cell_indices = np.flatnonzero(~np.isnan(per_cell))
    return names, cell_indices, per_cell[cell_indices].astype(np.int64)

"""Group-level labels (e.g. disease of a sample), observed for some groups only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._constants import UNLABELED_CODE


def group_level_labels(
    labels: pd.Categorical,
    values: pd.Series,
    categories: Sequence[str] | None = None,
    label_key: str = "group_label_key",
) -> tuple[np.ndarray, list[str]]:
    """The label of every group, from a per-cell obs column that is constant within groups.

    Cells with a missing value (NaN / None) carry no information; a group is labelled when its
    non-missing cells agree on one label, and unlabelled when all its cells are missing.

    Parameters
    ----------
    labels
        Group of every cell (:func:`scgde.data.group_labels`).
    values
        The obs column with the label of each cell's group.
    categories
        Label categories in the order of the classifier's outputs; default: the sorted
        labels found. A label outside ``categories`` raises an error.
    label_key
        Name of the column, for error messages.

    Returns
    -------
    codes
        Shape ``(n_groups,)``: the index of each group's label in ``categories``, or
        ``UNLABELED_CODE`` (-1).
    categories
        The label categories as strings.

    Raises
    ------
    ValueError
        If the cells of a group have different labels, a label is not in ``categories``, or
        fewer than two categories remain.
    """
    observed = values.notna().to_numpy()
    group_codes = np.asarray(labels.codes)[observed]
    strings = values[observed].astype(str).to_numpy()
    pairs = pd.DataFrame({"group": group_codes, "label": strings}).drop_duplicates()
    conflicting = pairs["group"][pairs["group"].duplicated()].unique()
    if conflicting.size:
        names = [str(labels.categories[g]) for g in conflicting[:5]]
        raise ValueError(
            f"adata.obs[{label_key!r}] must be constant within each group (it is a label of "
            f"the group, such as a sample's disease), but group(s) {names} have several values."
        )
    if categories is None:
        categories = sorted(pairs["label"].unique())
    categories = [str(c) for c in categories]
    unknown = sorted(set(pairs["label"]) - set(categories))
    if unknown:
        raise ValueError(
            f"Labels {unknown[:10]} in adata.obs[{label_key!r}] are not among the model's label "
            f"categories {categories}."
        )
    if len(categories) < 2:
        raise ValueError(
            f"adata.obs[{label_key!r}] has {len(categories)} distinct label(s) among labelled "
            "groups; a group classifier needs at least 2."
        )
    position = {c: i for i, c in enumerate(categories)}
    codes = np.full(len(labels.categories), UNLABELED_CODE, dtype=np.int64)
    codes[pairs["group"].to_numpy()] = [position[v] for v in pairs["label"]]
    return codes, categories

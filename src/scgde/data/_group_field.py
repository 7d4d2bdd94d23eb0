"""The group of every cell as a registered scvi-tools field."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401  (scvi-tools' view_anndata_setup uses it without importing it)
import rich.table
from scvi.data.fields import BaseAnnDataField
from scvi.data.fields._mudata import MuDataWrapper

from ._groups import as_key_list, group_labels

#: Categories shown by ``view_anndata_setup`` before the rest is summarised.
_SHOWN_GROUPS = 10


class GroupField(BaseAnnDataField):
    """The group (set) of every cell, from one obs column or the combination of several.

    Registration stores each cell's group code in ``obs["_scvi_<registry_key>"]`` and the
    group names (the same as :func:`~scgde.data.group_labels`) in the state registry, so
    that scvi-tools' ``view_anndata_setup`` and ``transfer_fields`` know the groups. Groups
    are open-ended, unlike batches: a transfer to new data keeps the codes of the registered
    groups and appends the new ones (the encoder is amortized), whatever
    ``extend_categories`` says.

    Parameters
    ----------
    registry_key
        Key of the field in the data registry.
    group_key
        The obs column, or a list of columns whose combination defines the groups.
    """

    CATEGORICAL_MAPPING_KEY = "categorical_mapping"
    ORIGINAL_KEYS = "original_keys"

    def __init__(self, registry_key: str, group_key: str | Sequence[str]):
        super().__init__()
        self._registry_key = registry_key
        self._keys = as_key_list(group_key)
        self._attr_key = f"_scvi_{registry_key}"
        self.count_stat_key = f"n_{registry_key}s"

    @property
    def registry_key(self) -> str:
        """Key of the field in the data registry."""
        return self._registry_key

    @property
    def attr_name(self) -> str:
        """The AnnData attribute the codes are written to, ``"obs"``."""
        return "obs"

    @property
    def attr_key(self) -> str:
        """The obs column of the codes, ``"_scvi_<registry_key>"``."""
        return self._attr_key

    @property
    def is_empty(self) -> bool:
        """``False``, as every cell has a group."""
        return False

    def validate_field(self, adata) -> None:
        """Raise the KeyError of :func:`~scgde.data.group_labels` for missing columns."""
        group_labels(adata.obs.iloc[:0], self._keys)

    def register_field(self, adata) -> dict:
        """Write each cell's group code and return the group names (``group_labels`` raises
        the KeyError of :meth:`validate_field` for missing columns)."""
        labels = group_labels(adata.obs, self._keys)
        return self._write(adata, labels.categories, labels)

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        """Codes of ``adata_target``'s cells, the registered groups first (same codes), then
        its new groups."""
        labels = group_labels(adata_target.obs, self._keys)
        known = pd.Index(state_registry[self.CATEGORICAL_MAPPING_KEY])
        mapping = known.append(labels.categories.difference(known, sort=False))
        return self._write(adata_target, mapping, labels)

    def _write(self, adata, mapping: pd.Index, labels: pd.Categorical) -> dict:
        position = mapping.get_indexer(labels.categories)
        adata.obs[self.attr_key] = position.astype(np.int32)[np.asarray(labels.codes)]
        return {
            self.CATEGORICAL_MAPPING_KEY: np.asarray(mapping, dtype=object),
            self.ORIGINAL_KEYS: list(self._keys),
        }

    def get_summary_stats(self, state_registry: dict) -> dict:
        """The number of groups, ``{"n_<registry_key>s": n}``."""
        return {self.count_stat_key: len(state_registry[self.CATEGORICAL_MAPPING_KEY])}

    def view_state_registry(self, state_registry: dict):
        """A rich table of the source columns and the first group names with their codes."""
        keys = state_registry[self.ORIGINAL_KEYS]
        mapping = state_registry[self.CATEGORICAL_MAPPING_KEY]
        table = rich.table.Table(title=f"{self.registry_key} State Registry")
        table.add_column("Source Location", justify="center", style="dodger_blue1")
        table.add_column("Groups", justify="center", style="green")
        table.add_column("scvi-tools Encoding", justify="center", style="dark_violet")
        source = f"adata.obs[{keys[0]!r}]" if len(keys) == 1 else f"adata.obs[{keys}]"
        for code, name in enumerate(mapping[:_SHOWN_GROUPS]):
            table.add_row(source if code == 0 else "", str(name), str(code))
        if len(mapping) > _SHOWN_GROUPS:
            table.add_row("", f"... {len(mapping) - _SHOWN_GROUPS:,} more", "")
        return table


#: The group field of a MuData's ``obs``.
MuDataGroupField = MuDataWrapper(GroupField)


def registered_group_labels(adata_manager, registry_key: str) -> pd.Categorical:
    """The group of every cell of a registered AnnData, as :func:`~scgde.data.group_labels`
    gives it, from the codes and names that :class:`~scgde.data.GroupField` registered."""
    codes = np.asarray(adata_manager.get_from_registry(registry_key)).reshape(-1)
    mapping = adata_manager.get_state_registry(registry_key)[GroupField.CATEGORICAL_MAPPING_KEY]
    labels = pd.Categorical.from_codes(codes, categories=pd.Index(mapping, dtype=object))
    return labels.remove_unused_categories()

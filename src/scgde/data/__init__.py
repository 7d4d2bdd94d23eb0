"""Sets of cells: group labels, data checks, set sampling and group-wise splitting."""

from ._group_labels import group_level_labels
from ._groups import cells_of_groups, group_labels
from ._registered import RegisteredData
from ._set_sampler import GroupSetSampler
from ._splitter import GroupDataSplitter, sets_per_epoch
from ._statistics import column_statistics
from ._validation import check_values

__all__ = [
    "GroupDataSplitter",
    "GroupSetSampler",
    "RegisteredData",
    "cells_of_groups",
    "check_values",
    "column_statistics",
    "group_labels",
    "group_level_labels",
    "sets_per_epoch",
]

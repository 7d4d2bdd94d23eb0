"""Sets of cells: group labels, sets around label values, data checks, set sampling and
splitting, and the features of perturbations (parsing ``"A+B"``, data-derived co-expression
features, one-hot features, user feature tables)."""

from ._coexpression import coexpression_features
from ._group_field import GroupField, registered_group_labels
from ._group_labels import group_level_labels
from ._groups import cells_of_groups, group_labels
from ._label_sets import ContinuousLabelSets, LabelSets, ProbabilityLabelSets
from ._perturbation_features import (
    default_perturbation_features,
    features_from_uns,
    one_hot_features,
    perturbation_feature_matrix,
)
from ._perturbation_names import perturbation_parts, split_combination
from ._registered import RegisteredData
from ._set_sampler import GroupSetSampler, LabelSetSampler
from ._splitter import GroupDataSplitter, LabelDataSplitter, sets_per_epoch
from ._statistics import column_statistics
from ._validation import check_values, looks_like_counts

__all__ = [
    "ContinuousLabelSets",
    "GroupDataSplitter",
    "GroupField",
    "GroupSetSampler",
    "LabelDataSplitter",
    "LabelSetSampler",
    "LabelSets",
    "ProbabilityLabelSets",
    "RegisteredData",
    "cells_of_groups",
    "check_values",
    "looks_like_counts",
    "coexpression_features",
    "column_statistics",
    "default_perturbation_features",
    "features_from_uns",
    "group_labels",
    "group_level_labels",
    "one_hot_features",
    "perturbation_feature_matrix",
    "perturbation_parts",
    "registered_group_labels",
    "sets_per_epoch",
    "split_combination",
]

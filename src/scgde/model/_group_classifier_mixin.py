"""The group classifier head: labels of groups predicted from their embedding."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from anndata import AnnData


class GroupClassifierMixin:
    """``predict_group_labels`` of :class:`~scgde.model.GDE`."""

    @torch.inference_mode()
    def predict_group_labels(
        self,
        adata: AnnData | None = None,
        groups: Sequence[str] | None = None,
        batch_size: int = 4096,
    ) -> pd.DataFrame:
        """Predict the group label (e.g. disease) of every group from its embedding.

        Needs a model set up with ``group_label_key``. Each group is embedded from all its
        cells (as in :meth:`get_distribution_embedding`) and classified by the head trained
        with the model; groups of a new AnnData work too.

        Parameters
        ----------
        adata
            AnnData with the model's features; default: the training data.
        groups
            Groups to classify; default: all groups with cells.
        batch_size
            Cells per chunk.

        Returns
        -------
        DataFrame indexed by group: ``prediction`` (categorical over the label categories), one
        probability column per category, and ``observed`` (the group's label in ``adata``, NaN
        where unknown) when ``adata`` has the label column. ``adata`` is not modified.
        """
        if not self.group_label_categories_:
            raise ValueError(
                "This model has no group classifier: register a `group_label_key` in "
                "GDE.setup_anndata (a label per group, NaN where unknown) and train a new model."
            )
        self._check_if_trained(warn=True)
        adata = self._validate_anndata(adata)
        names, z, labels, *_ = self._embed(adata, groups, batch_size)
        with torch.inference_mode():
            probabilities = (
                self.module.classify(torch.as_tensor(z, device=self.device)).cpu().numpy()
            )
        categories = self.group_label_categories_
        index = pd.Index(names, name="group")
        table = pd.DataFrame(probabilities, index=index, columns=categories)
        table.insert(
            0,
            "prediction",
            pd.Categorical.from_codes(probabilities.argmax(1), categories=categories),
        )
        if self.group_label_key in adata.obs.columns:
            codes, _ = self._group_label_codes(adata, categories, labels)
            position = {str(name): i for i, name in enumerate(labels.categories)}
            observed = codes[[position[name] for name in names]]
            table["observed"] = pd.Categorical.from_codes(observed, categories=categories)
        return table

"""GDE of distributions indexed by a continuous or a noisy label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .._constants import DEFAULT_KEY_ADDED, SETUP_ARGS_KEY, UNS_SETTINGS_KEY
from .._utils import check_int, check_key_added
from ..data import LabelDataSplitter
from ..data._label_sets import (
    KERNEL_CUTOFF,
    ContinuousLabelSets,
    LabelSets,
    ProbabilityLabelSets,
    continuous_labels,
    default_bandwidth,
    label_probabilities,
)
from ._checks import check_cells_and_features
from ._embedding_mixin import GroupChunks, embedding_columns
from ._gde import GDE
from ._lazy_annotations import load_annotations

#: Label values embedded by default for a continuous label: evenly spaced over its central 98%.
DEFAULT_N_VALUES = 50


class LabelGDE(GDE):
    """GDE of distributions indexed by a continuous or a noisy label.

    Where cells do not come in groups, the GDE paper builds sets from a label: for a
    **continuous label** (donor age, pseudotime, dose, time after stimulation) the set at a
    value ``y0`` weights each cell by a Gaussian kernel ``exp(-(y - y0)^2 / (2 h^2))``; for a
    **noisy label** (per-cell probabilities of a clone, a guide or a cell type) the set of
    category ``k`` weights each cell by its probability of ``k``. Training draws label values
    from their empirical distribution and sets of cells around them (with replacement, by
    weight); :meth:`get_label_embedding` then gives ``z(y)`` at any label value, exactly and
    in streaming (weighted means decompose like means), and :meth:`sample` generates cells at
    any value, including values between the observed ones.

    Register the data with :meth:`setup_anndata` (``label_key`` or
    ``label_probabilities_key``); the model's parameters are those of
    :class:`~scgde.model.GDE`. Methods of :class:`~scgde.model.GDE` that work on groups
    (:meth:`~scgde.model.GDE.get_distribution_embedding`, per-cell latents)
    raise a ``TypeError`` that points here;
    :meth:`~scgde.model.GDE.get_embedding_uncertainty` takes label values as ``groups`` and
    gives the standard errors of ``z(y)`` (large where the label is sparse).

    Examples
    --------
    >>> scgde.model.LabelGDE.setup_anndata(adata, label_key="dpt_pseudotime")
    >>> model = scgde.model.LabelGDE(adata)
    >>> model.train()
    >>> grid = model.get_label_embedding()  # one row per label value, the label in obs
    >>> cells = model.sample(label_values=[0.25, 0.5], n_cells=500)
    """

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        label_key: str | None = None,
        label_probabilities_key: str | None = None,
        label_bandwidth: float | None = None,
        layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        obsm_key: str | None = None,
        **kwargs,
    ):
        """Register an AnnData whose sets are defined by a label.

        Adds to ``adata`` only what scvi-tools registration adds (see
        :meth:`scgde.model.GDE.setup_anndata`).

        Parameters
        ----------
        adata
            AnnData with one row per cell.
        label_key
            Numeric obs column with a continuous label (age, pseudotime, dose, time).
        label_probabilities_key
            Instead: key of ``adata.obsm`` with per-cell label probabilities (a DataFrame
            whose columns name the categories, or a cells × categories array), e.g. the
            posterior of a clone or guide assignment.
        label_bandwidth
            Bandwidth ``h`` of the Gaussian kernel of a continuous label, in its units.
            Default: a twentieth of the range of the central 98% of the labels. Smaller than
            a quarter of the gap between distinct values, each set holds one value's cells
            (the discrete case). The value used is recorded with the registration.
        layer, batch_key, categorical_covariate_keys, continuous_covariate_keys, obsm_key
            As in :meth:`scgde.model.GDE.setup_anndata`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        load_annotations(adata)
        check_cells_and_features(adata, features=obsm_key is None)
        if (label_key is None) == (label_probabilities_key is None):
            raise ValueError("Pass exactly one of `label_key` and `label_probabilities_key`.")
        if label_key is not None:
            labels = continuous_labels(adata.obs, label_key)
            if label_bandwidth is None:
                label_bandwidth = default_bandwidth(labels)
            elif (
                isinstance(label_bandwidth, bool)
                or not np.isfinite(label_bandwidth)
                or (label_bandwidth <= 0)
            ):
                raise ValueError(f"`label_bandwidth` must be > 0, got {label_bandwidth!r}.")
            if np.unique(labels).size < 2:
                raise ValueError(
                    f"adata.obs[{label_key!r}] has a single value: a label model needs at "
                    "least two."
                )
            setup_method_args[SETUP_ARGS_KEY]["label_bandwidth"] = float(label_bandwidth)
        else:
            if label_bandwidth is not None:
                raise ValueError("`label_bandwidth` is the kernel of `label_key` only.")
            label_probabilities(adata.obsm, label_probabilities_key, adata.n_obs)
        cls._register_anndata(
            adata,
            setup_method_args,
            layer,
            batch_key,
            categorical_covariate_keys,
            continuous_covariate_keys,
            obsm_key,
            **kwargs,
        )

    @classmethod
    def setup_mudata(cls, *args, **kwargs):
        """Not available: a label model registers an AnnData (:meth:`setup_anndata`)."""
        raise NotImplementedError("LabelGDE registers an AnnData: use LabelGDE.setup_anndata.")

    # ------------------------------------------------------------------------ the label
    @property
    def label_key(self) -> str | None:
        """The obs column of the continuous label (``None`` for label probabilities)."""
        return self._setup_args.get("label_key")

    @property
    def label_bandwidth(self) -> float | None:
        """The kernel bandwidth of the continuous label (``None`` for label probabilities)."""
        return self._setup_args.get("label_bandwidth")

    def get_label_sets(self, adata: AnnData | None = None) -> LabelSets:
        """The weights of the sets at each label value, for the cells of ``adata``.

        Use it to compare generated cells with the real cells of a set:
        ``adata[sets.draw_cells(rng, value, n)]`` are ``n`` real cells drawn by their weight at
        ``value`` (see :class:`~scgde.data.LabelSets`).

        Parameters
        ----------
        adata
            AnnData with the label; default: the training data.
        """
        adata = self.adata if adata is None else adata
        if self.label_key is not None:
            return ContinuousLabelSets(
                continuous_labels(adata.obs, self.label_key), self.label_bandwidth
            )
        key = self._setup_args["label_probabilities_key"]
        return ProbabilityLabelSets(*label_probabilities(adata.obsm, key, adata.n_obs))

    def _check_set_columns(self, adata) -> None:
        self.get_label_sets(adata)

    def _group_labels(self, adata) -> pd.Categorical:
        raise TypeError(
            "A LabelGDE defines its sets by the values of a label, not by groups, so this "
            "method (which works on groups) does not apply. Use "
            "`get_label_embedding(values=...)` and `sample(label_values=...)`."
        )

    def _describe_sets(self) -> str:
        if self.label_key is not None:
            return f"sets around {self.label_key!r} (bandwidth {self.label_bandwidth:.3g})"
        sets = self.get_label_sets(self.adata)
        return f"{len(sets.categories)} probability-weighted label sets"

    def train(self, max_epochs: int | None = None, label_prior=None, **kwargs):
        """Train the encoder and generator on random sets around label values.

        Each step draws ``groups_per_batch`` label values from the label prior and, around
        each, between ``min_set_size`` and ``set_size`` cells by their weight (with
        replacement). Validation holds out **cells** (a fraction ``1 - train_size``): its sets
        are drawn around validation cells' labels, from validation cells.

        Parameters
        ----------
        max_epochs
            As in :meth:`scgde.model.GDE.train`.
        label_prior
            The label values the training sets are centred on. Default: the labels of the
            training cells (the empirical prior, so dense stretches of the label train more
            often). A list of values is drawn uniformly, e.g. ``np.linspace(0, 1, 101)`` for a
            uniform prior over a pseudotime; a :class:`~pandas.Series` of weights indexed by
            values (or category names) sets their probabilities. Each value needs training
            cells within reach.
        **kwargs
            As in :meth:`scgde.model.GDE.train` (``set_size``, ``groups_per_batch``: sets
            per step, ``train_size``, ``lr``, trainer arguments, ...).
        """
        self._label_prior = self._check_prior(label_prior)
        try:
            return super().train(max_epochs=max_epochs, **kwargs)
        finally:
            del self._label_prior

    def _check_prior(self, label_prior) -> pd.Series | None:
        """``label_prior`` as weights indexed by label values, or a clear error."""
        if label_prior is None:
            return None
        if isinstance(label_prior, pd.Series):
            prior = label_prior.astype(np.float64)
        else:
            values = list(np.atleast_1d(np.asarray(label_prior, dtype=object)))
            prior = pd.Series(np.ones(len(values)), index=values)
        if prior.empty or not np.isfinite(prior.to_numpy()).all() or (prior < 0).any():
            raise ValueError("`label_prior` needs values with finite weights >= 0.")
        if prior.sum() <= 0:
            raise ValueError("`label_prior` has weights that sum to 0.")
        sets = self.get_label_sets()
        values = self._label_values(sets, list(prior.index))
        return pd.Series(prior.to_numpy(), index=pd.Index(values))

    def _make_splitter(self, **kwargs) -> LabelDataSplitter:
        """Cells (not groups) split into training and validation."""
        return LabelDataSplitter(
            self.adata_manager,
            self.get_label_sets(self.adata),
            prior=getattr(self, "_label_prior", None),
            **kwargs,
        )

    def _record_split(self, splitter) -> None:
        self.n_train_cells_, self.n_validation_cells_ = splitter.n_train, splitter.n_val

    def _label_values(self, sets: LabelSets, values) -> list:
        """The label values asked for (checked), or the default grid."""
        if isinstance(sets, ProbabilityLabelSets):
            names = sets.categories if values is None else [str(v) for v in np.atleast_1d(values)]
            unknown = [v for v in names if v not in sets.categories]
            if len(set(names)) < len(names):
                raise ValueError("`values` contains duplicates.")
            if unknown:
                raise ValueError(
                    f"Unknown labels {unknown[:10]}; the labels are {sets.categories[:20]}."
                )
            return names
        if values is None:
            lo, hi = np.percentile(sets.labels, [1, 99])
            return list(np.linspace(lo, hi, DEFAULT_N_VALUES))
        grid = np.atleast_1d(np.asarray(values))
        if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.number):
            raise ValueError(f"`values` must be a non-empty 1-d list of numbers, got {values!r}.")
        if not np.isfinite(grid).all():
            raise ValueError("`values` must be finite.")
        if np.unique(grid).size < grid.size:
            raise ValueError("`values` contains duplicates.")
        return list(grid.astype(np.float64))

    def _value_names(self, values: list) -> list[str]:
        if self.label_key is None:
            return [str(v) for v in values]
        names = [f"{self.label_key}={v:.6g}" for v in values]
        if len(set(names)) < len(names):  # values closer than 6 significant digits
            names = [f"{self.label_key}={float(v)!r}" for v in values]
        return names

    # ------------------------------------------------------------------------ embedding
    def _label_chunks(self, adata, values, batch_size: int):
        """The label values asked for (checked), their weights, each set's effective number of
        cells, and a factory of ``(encoder input, value position, weight)`` chunks of every
        (cell, value) pair of positive weight, for the streaming encoder."""
        batch_size = check_int(batch_size, "batch_size")
        sets = self.get_label_sets(adata)
        values = self._label_values(sets, values)
        effective = sets.effective_cells(values)
        # (a probability category without cells is refused when the table is read)
        empty = [v for v, n in zip(values, effective, strict=True) if n == 0]
        if empty:
            raise ValueError(
                f"No cell lies within reach of label value(s) {empty[:5]} (the kernel is cut "
                f"off at {KERNEL_CUTOFF:g} bandwidths of {self.label_bandwidth:.4g}): embed "
                "values nearer the data."
            )
        self.module.eval()
        data = self._registered(adata)
        device = self.device

        def chunks():
            for start in range(0, adata.n_obs, batch_size):
                block = np.arange(start, min(start + batch_size, adata.n_obs))
                cell_pos, value_pos, weights = sets.pairs(block, values)
                if cell_pos.size == 0:
                    continue
                x = self._encoder_input_rows(data, block)  # projected once for all its pairs
                for s in range(0, cell_pos.size, batch_size):
                    part = slice(s, s + batch_size)
                    yield (
                        x,
                        torch.as_tensor(value_pos[part], device=device),
                        torch.as_tensor(weights[part], device=device),
                        torch.as_tensor(cell_pos[part], device=device),
                    )

        return values, sets, effective, chunks

    def _embed_labels(
        self, adata, values, batch_size: int
    ) -> tuple[list, np.ndarray, LabelSets, np.ndarray]:
        """``z`` at each label value from the weighted cells of ``adata``, streamed; also the
        values, their weights and each set's effective number of cells."""
        values, sets, effective, chunks = self._label_chunks(adata, values, batch_size)
        z = self.module.encoder.encode_streaming(chunks, len(values)).cpu().numpy()
        return values, z, sets, effective

    def _encoder_chunks(self, adata, values, batch_size: int) -> GroupChunks:
        """The weighted sets at label ``values`` as the streaming encoder reads them (what
        :meth:`~scgde.model.GDE.get_embedding_uncertainty` bootstraps)."""
        values, _, _, chunks = self._label_chunks(adata, values, batch_size)
        cells = np.arange(adata.n_obs)
        return GroupChunks(None, self._value_names(values), cells, None, chunks)

    def _embed(self, adata, groups, batch_size: int, cache_bytes=None, disk_cache=None):
        self._group_labels(adata)  # a TypeError that points to get_label_embedding

    def get_label_embedding(
        self,
        values: Sequence | None = None,
        adata: AnnData | None = None,
        key_added: str | None = DEFAULT_KEY_ADDED,
        batch_size: int = 4096,
    ) -> AnnData:
        """Embed the set at each label value, ``z(y)``, from all weighted cells.

        Parameters
        ----------
        values
            Label values: numbers for a continuous label (default: 50 values evenly spaced
            over the central 98% of the labels), category names for label probabilities
            (default: every category).
        adata
            AnnData with the model's features and the label; default: the training data.
        key_added
            Where to write the result in ``adata``: the table in ``uns[key_added]`` and the
            settings (label, bandwidth, encoder, ...) in ``uns["gde"][key_added]``. ``None``
            writes nothing.
        batch_size
            Cells per chunk.

        Returns
        -------
        AnnData with one observation per label value: ``X`` the embedding, ``obs`` the label
        value (under the label's name, or ``"label"`` for label probabilities) and
        ``n_cells_effective``, Kish's effective number of cells ``(sum w)^2 / sum w^2`` of
        the set (small where the label is sparse: the embedding is less certain there).
        """
        self._check_if_trained(warn=True)
        if key_added is not None:
            check_key_added(key_added, reserved=(UNS_SETTINGS_KEY,))
        target = self.adata if adata is None else adata
        data = self._validate_anndata(adata)
        values, z, _, effective = self._embed_labels(data, values, batch_size)
        names = self._value_names(values)
        label_column = self.label_key or "label"
        columns = embedding_columns(z.shape[1])
        obs = pd.DataFrame(
            {label_column: values, "n_cells_effective": effective},
            index=pd.Index(names),
        )
        settings = {
            "label_key": self.label_key,
            "label_probabilities_key": self._setup_args.get("label_probabilities_key"),
            "label_bandwidth": self.label_bandwidth,
            "n_values": len(values),
            **self._model_settings(),
        }
        settings = {k: v for k, v in settings.items() if v is not None}
        result = AnnData(
            X=z.astype(np.float32),
            obs=obs,
            var=pd.DataFrame(index=columns),
            uns={UNS_SETTINGS_KEY: settings},
        )
        if key_added is not None:
            table = pd.DataFrame(z, index=pd.Index(names), columns=columns)
            self._write_embedding(target, key_added, table, settings)
        return result

    # ----------------------------------------------------------------------- generation
    _selection_name = "label_values"

    def sample(
        self,
        label_values: Sequence | None = None,
        embedding: pd.DataFrame | np.ndarray | None = None,
        n_cells: int = 100,
        adata: AnnData | None = None,
        batch: str | None = None,
        seed: int | None = 0,
        batch_size: int = 4096,
        sampler_kwargs: dict | None = None,
        loadings: str | None = None,
    ) -> AnnData:
        """Generate cells at label values, or from arbitrary embeddings.

        Parameters
        ----------
        label_values
            Label values to generate at (any value within reach of the data, including
            values between the observed ones): each is embedded from its weighted cells
            (:meth:`get_label_embedding`). Default when ``embedding`` is also ``None``: the
            default values of :meth:`get_label_embedding`.
        embedding, n_cells, adata, batch, seed, batch_size, sampler_kwargs, loadings
            As in :meth:`scgde.model.GDE.sample`. Cells generated at a label value copy the
            covariates and library size of cells drawn by their weight at that value.

        Returns
        -------
        AnnData of generated cells with the label value's name (e.g. ``"age=42"``) or the
        embedding's row name in ``obs["group"]``; at label values of a continuous label, the
        value in ``obs[label_key]`` too.
        """
        args = (adata, batch, seed, batch_size, sampler_kwargs, loadings)
        return self._sample(label_values, embedding, n_cells, *args)

    def _sources(self, adata, label_values, n_cells: int, batch_size: int, seed):
        values, z, sets, _ = self._embed_labels(adata, label_values, batch_size)
        rng = np.random.default_rng(seed)
        donors = [sets.draw_cells(rng, value, n_cells) for value in values]
        columns = {self.label_key: values} if self.label_key is not None else {}
        return self._value_names(values), z, donors, columns

"""The GDE torch module: a set encoder and a conditional generator trained together."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from .._constants import (
    BATCH_KEY,
    CAT_COVS_KEY,
    CONT_COVS_KEY,
    COUNT_LIKELIHOODS,
    ENCODER_TARGET_SUM,
    GROUP_LABEL_KEY,
    PROTEIN_ENCODER_TARGET_SUM,
    PROTEIN_KEY,
    SET_IDS_KEY,
    UNLABELED_CODE,
    X_KEY,
)
from ..nn import make_encoder, make_generator
from ..nn._batch_penalty import make_batch_penalty, set_batch_composition
from ..nn._blocks import block_slices, block_totals
from ..nn._conditional_mlp import MIN_FEATURE_STD
from ..nn._mlp import mlp


class GDEModule(BaseModuleClass):
    """Generative distribution embedding: ``z = encoder(set)``, ``cells ~ generator(z)``.

    Minibatches are flat: ``tensors[X_KEY]`` holds the cells of several sets and
    ``tensors[SET_IDS_KEY]`` the set index of each cell. The loss is the generator's per-cell
    loss (reconstruction plus ``kl_weight`` times KL), averaged over cells.

    With ``n_proteins > 0`` the cells also carry protein counts (``tensors[PROTEIN_KEY]``): the
    modelled data are then the genes followed by the proteins; the encoder reads both (each
    log-normalised by its own total) and the generator models both with the count likelihood,
    each block with its own library size and per-feature dispersion.

    With ``n_labels > 0`` a classifier head on ``z`` predicts a label of each set's group
    (semi-supervised: sets of unlabelled groups, whose cells carry ``UNLABELED_CODE`` in
    ``tensors[GROUP_LABEL_KEY]``, only train the generative part); its cross-entropy, averaged
    over the labelled sets of the minibatch, is added with weight ``classification_ratio``.

    Parameters
    ----------
    n_input
        Number of features (genes).
    n_latent
        Dimension of the distribution embedding.
    n_batch
        Number of batch categories (0 or 1 means no batch conditioning).
    n_cats_per_cov
        Number of categories of each extra categorical covariate.
    n_continuous_cov
        Number of continuous covariates.
    encoder, generator
        Names registered in :data:`scgde.nn.ENCODERS` and :data:`scgde.nn.GENERATORS`.
    likelihood
        ``"nb"``, ``"zinb"``, ``"poisson"`` (counts) or ``"gaussian"`` (continuous data).
    library_log_mean, library_log_std
        ``(n_batch, n_blocks)`` mean and standard deviation of log library size per batch and
        feature block (count likelihoods), used to draw library sizes when generating from an
        embedding alone.
    encoder_kwargs, generator_kwargs
        Passed to the encoder and generator constructors.
    n_labels
        Number of group label categories (0: no classifier head).
    classification_ratio
        Weight of the classification loss.
    generative_weight
        Weight of the generator loss; ``0`` trains a purely supervised set classifier (a
        baseline for the semi-supervised model).
    n_proteins
        Number of protein features (0: RNA only). Needs a count likelihood.
    feature_statistics
        Continuous data only: per-feature ``"mean"``, ``"std"``, ``"min"`` and ``"max"`` of the
        training data (arrays of length ``n_input``). The set encoder reads
        ``(x - mean) / std`` (``std`` floored at 1e-3); the generator receives all four
        (:meth:`scgde.nn.Generator.set_feature_statistics`). Default: the data as they are.
    batch_correction
        ``"hsic"``: a penalty that keeps the batch out of ``z``
        (:class:`~scgde.nn.BatchHSIC`), computed on the sets of each minibatch from their batch
        compositions; needs ``n_batch > 1``. ``None``: no penalty.
    batch_correction_weight
        Weight of that penalty.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 32,
        n_batch: int = 0,
        n_cats_per_cov: list[int] | None = None,
        n_continuous_cov: int = 0,
        encoder: str = "deepset",
        generator: str = "cvae",
        likelihood: str = "nb",
        library_log_mean: np.ndarray | None = None,
        library_log_std: np.ndarray | None = None,
        encoder_kwargs: dict | None = None,
        generator_kwargs: dict | None = None,
        n_labels: int = 0,
        classification_ratio: float = 50.0,
        generative_weight: float = 1.0,
        n_proteins: int = 0,
        feature_statistics: Mapping[str, np.ndarray] | None = None,
        batch_correction: str | None = None,
        batch_correction_weight: float = 1.0,
    ):
        super().__init__()
        self.n_latent = n_latent
        self.likelihood = likelihood
        self.count_data = likelihood in COUNT_LIKELIHOODS
        if n_proteins and not self.count_data:
            raise ValueError("Protein counts need a count likelihood ('nb', 'zinb', 'poisson').")
        self.n_proteins = int(n_proteins)
        self.block_sizes = (n_input, self.n_proteins) if self.n_proteins else (n_input,)
        n_features = sum(self.block_sizes)
        generator_kwargs = dict(generator_kwargs or {})
        if self.n_proteins:
            generator_kwargs["block_sizes"] = self.block_sizes
        self.n_batch = n_batch if n_batch > 1 else 0
        self.n_cats_per_cov = list(n_cats_per_cov or [])
        self.n_continuous_cov = n_continuous_cov
        n_covariates = self.n_batch + sum(self.n_cats_per_cov) + n_continuous_cov
        self.encoder = make_encoder(encoder, n_features, n_latent, **(encoder_kwargs or {}))
        self.generator = make_generator(
            generator, n_features, n_latent, n_covariates, likelihood, **generator_kwargs
        )
        self.n_labels = n_labels
        self.classification_ratio = classification_ratio
        self.generative_weight = generative_weight
        self.classifier = mlp(n_latent, n_labels, n_hidden=64, n_layers=1) if n_labels else None
        self.batch_penalty = make_batch_penalty(batch_correction, self.n_batch)
        self.batch_correction_weight = batch_correction_weight
        shape = (max(n_batch, 1), len(self.block_sizes))
        mean = np.zeros(shape) if library_log_mean is None else np.asarray(library_log_mean)
        std = np.ones(shape) if library_log_std is None else np.asarray(library_log_std)
        self.register_buffer("library_log_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("library_log_std", torch.as_tensor(std, dtype=torch.float32))
        if feature_statistics is not None and self.count_data:
            raise ValueError("`feature_statistics` standardise continuous data only.")
        statistics = dict(feature_statistics or {})
        mean = statistics.get("mean", np.zeros(n_features))
        std = statistics.get("std", np.ones(n_features))
        self.register_buffer("input_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer(
            "input_std", torch.as_tensor(std, dtype=torch.float32).clamp(min=MIN_FEATURE_STD)
        )
        if statistics:
            self.generator.set_feature_statistics(**statistics)

    # ----------------------------------------------------------------------------- helpers
    def modelled_data(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """The data the generator models: ``X``, followed by the protein counts if any."""
        x = tensors[X_KEY].float()
        if self.n_proteins:
            x = torch.cat([x, tensors[PROTEIN_KEY].float().to(x.device)], dim=-1)
        return x

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the set encoder reads: counts log1p-normalised per block, or continuous data
        standardised with the training data's statistics."""
        if not self.count_data:
            return (x - self.input_mean) / self.input_std
        library = block_totals(x, self.block_sizes).clamp(min=1.0)
        targets = (ENCODER_TARGET_SUM, PROTEIN_ENCODER_TARGET_SUM)
        return torch.cat(
            [
                torch.log1p(x[:, block] / library[:, j : j + 1] * targets[j])
                for j, block in enumerate(block_slices(self.block_sizes))
            ],
            dim=-1,
        )

    def sparse_encoder_input(self, x: sparse.csr_matrix) -> torch.Tensor | None:
        """:meth:`encoder_input` of raw counts given as a CSR matrix, computed on the non-zeros
        only, as a torch sparse CSR tensor (the encoder projects it without densifying);
        ``None`` where the encoder reads something else (continuous data, proteins)."""
        if not self.count_data or self.n_proteins:
            return None
        # as encoder_input: log1p(x / max(total, 1) * target), on the non-zeros
        library = np.maximum(np.asarray(x.sum(axis=1), dtype=np.float32).reshape(-1), 1.0)
        values = x.data / np.repeat(library, np.diff(x.indptr))
        values = np.log1p(values * np.float32(ENCODER_TARGET_SUM), dtype=np.float32)
        # one index type for both arrays (torch needs it), without copying where they agree
        index_dtype = np.promote_types(x.indptr.dtype, x.indices.dtype)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.from_numpy(x.indptr.astype(index_dtype, copy=False)),
                torch.from_numpy(x.indices.astype(index_dtype, copy=False)),
                torch.from_numpy(values),
                size=x.shape,
                check_invariants=False,
            ).to(self.library_log_mean.device)

    def covariate_vector(self, tensors: dict[str, torch.Tensor], n_cells: int) -> torch.Tensor:
        """One-hot batch and categorical covariates and the continuous covariates, concatenated."""
        device = self.library_log_mean.device
        parts = [torch.zeros((n_cells, 0), device=device)]
        if self.n_batch:
            batch = tensors[BATCH_KEY].to(device).long().view(-1)
            parts.append(F.one_hot(batch, self.n_batch).float())
        if self.n_cats_per_cov:
            cats = tensors[CAT_COVS_KEY].to(device).long()
            for j, n_cat in enumerate(self.n_cats_per_cov):
                parts.append(F.one_hot(cats[:, j], n_cat).float())
        if self.n_continuous_cov:
            parts.append(tensors[CONT_COVS_KEY].to(device).float())
        return torch.cat(parts, dim=-1)

    # ----------------------------------------------------------------- scvi-tools protocol
    def _get_inference_input(self, tensors, **kwargs):
        return {"x": self.modelled_data(tensors), "set_ids": tensors[SET_IDS_KEY].long().view(-1)}

    @auto_move_data
    def inference(self, x: torch.Tensor, set_ids: torch.Tensor) -> dict:
        """Encode each set of the minibatch (``z_sets``; ``z`` is broadcast back to its cells)
        and draw each cell's latent variables from the generator's inference part
        (``latent``, see :meth:`scgde.nn.Generator.inference`)."""
        x_in = self.encoder_input(x)
        z_sets = self.encoder(x_in, set_ids, int(set_ids.max()) + 1)
        z = z_sets[set_ids]
        return {"z_sets": z_sets, "z": z, "latent": self.generator.inference(x, x_in, z)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {
            "z": inference_outputs["z"],
            "cov": self.covariate_vector(tensors, tensors[X_KEY].shape[0]),
            "latent": inference_outputs["latent"],
        }

    @auto_move_data
    def generative(self, z: torch.Tensor, cov: torch.Tensor, latent: dict) -> dict:
        """The generator's predictions for each cell given ``z``, covariates and latents."""
        return self.generator.generative(z, cov, latent)

    def loss(self, tensors, inference_outputs, generative_outputs, kl_weight: float = 1.0):
        """Generator loss per cell averaged over cells, plus the weighted classification loss."""
        x = self.modelled_data(tensors)
        reconstruction, kl = self.generator.loss(x, inference_outputs["latent"], generative_outputs)
        loss = self.generative_weight * torch.mean(reconstruction + kl_weight * kl)
        extra = {}
        if self.classifier is not None and GROUP_LABEL_KEY in tensors:
            z_sets = inference_outputs["z_sets"]
            set_ids = tensors[SET_IDS_KEY].long().view(-1).to(z_sets.device)
            codes = tensors[GROUP_LABEL_KEY].long().view(-1).to(z_sets.device)
            set_codes = torch.full(
                (z_sets.shape[0],), UNLABELED_CODE, dtype=torch.long, device=z_sets.device
            ).scatter_reduce(0, set_ids, codes, reduce="amax")
            labelled = set_codes != UNLABELED_CODE
            classification = z_sets.new_zeros(())
            if labelled.any():
                logits = self.classifier(z_sets[labelled])
                classification = F.cross_entropy(logits, set_codes[labelled])
                accuracy = (logits.argmax(-1) == set_codes[labelled]).float().mean()
                extra["group_label_accuracy"] = accuracy.detach()
            loss = loss + self.classification_ratio * classification
            extra["classification_loss"] = classification.detach()
        if self.batch_penalty is not None:
            z_sets = inference_outputs["z_sets"]
            composition = set_batch_composition(
                tensors[BATCH_KEY].long().view(-1).to(z_sets.device),
                tensors[SET_IDS_KEY].long().view(-1).to(z_sets.device),
                z_sets.shape[0],
                self.n_batch,
            )
            penalty = self.batch_penalty(z_sets, composition)
            loss = loss + self.batch_correction_weight * penalty
            extra["batch_penalty"] = penalty.detach()
        return LossOutput(
            loss=loss, reconstruction_loss=reconstruction, kl_local=kl, extra_metrics=extra
        )

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Label probabilities of embeddings ``z`` from the classifier head."""
        if self.classifier is None:
            raise ValueError("This module has no classifier head (n_labels=0).")
        return torch.softmax(self.classifier(z), dim=-1)

    @torch.inference_mode()
    def sample(
        self,
        z: torch.Tensor,
        tensors: dict[str, torch.Tensor],
        library: torch.Tensor | None,
        sampler_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """Generate one cell per row of ``z`` with the covariates in ``tensors``.

        ``library``: ``(n_cells, n_blocks)`` library sizes (count likelihoods).
        ``sampler_kwargs`` are passed to the generator's ``sample`` (e.g. the flow's
        ``method`` and ``n_sampling_steps``).
        """
        cov = self.covariate_vector(tensors, z.shape[0])
        return self.generator.sample(z, cov, library, **(sampler_kwargs or {}))

    @torch.inference_mode()
    def counterfactual(
        self,
        tensors: dict[str, torch.Tensor],
        z_from: torch.Tensor,
        z_to: torch.Tensor,
        sampler_kwargs: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cells in ``tensors``, of sets embedded as ``z_from``, moved to sets embedded as
        ``z_to`` (one row of each per cell), with their own covariates and library sizes; see
        :meth:`scgde.nn.Generator.counterfactual`. Returns the moved cells and the cells
        themselves (the modelled data)."""
        x = self.modelled_data(tensors)
        cov = self.covariate_vector(tensors, x.shape[0])
        library = block_totals(x, self.block_sizes).clamp(min=1.0) if self.count_data else None
        moved = self.generator.counterfactual(
            x, self.encoder_input(x), z_from, z_to, cov, library, **(sampler_kwargs or {})
        )
        return moved, x

    @torch.inference_mode()
    def cell_latent(self, tensors: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Per-cell latent representation of the cells in ``tensors`` given their set's ``z``
        (generators with ``has_cell_latent``, e.g. the CVAE's posterior mean of ``u``)."""
        return self.generator.cell_latent(self.encoder_input(self.modelled_data(tensors)), z)

"""The interface of conditional generators: models of cells given their set's embedding ``z``."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn


class Generator(nn.Module, metaclass=ABCMeta):
    """Base class of the generators of :class:`scgde.module.GDEModule`.

    A generator follows scvi-tools' split of a model into inference and generative parts:

    :meth:`inference`
        draws each cell's latent variables from their inference distribution: ``q(u | x, z)``
        for a conditional VAE; the forward (noising) process for diffusion and flow matching,
        whose latent variables are the noise, the time and the noised cell;
    :meth:`generative`
        everything the model predicts from those latents, ``z`` and the covariates (the
        likelihood ``p(x | u, z, cov)``, a predicted noise or velocity);
    :meth:`loss`
        ``(reconstruction, kl)`` per cell;
    :meth:`sample`
        new cells given embeddings and covariates.

    Adding a generator means subclassing this class and registering it in
    :data:`scgde.nn.GENERATORS`; nothing else in scgde changes. The constructor takes
    ``(n_input, n_latent_dist, n_covariates, likelihood, **kwargs)``; ``kwargs`` come from
    ``GDE(generator_kwargs=...)``. Extra keyword arguments of :meth:`sample` are passed through
    by ``GDE.sample(sampler_kwargs=...)``.
    """

    #: Whether :meth:`cell_latent` gives a per-cell latent representation.
    has_cell_latent: bool = False

    @abstractmethod
    def inference(
        self, x: torch.Tensor, x_in: torch.Tensor, z: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Latent variables of each cell.

        Parameters
        ----------
        x
            The cells as modelled (counts or continuous values), one row per cell.
        x_in
            The same cells as the set encoder reads them (normalised).
        z
            The embedding of each cell's set, one row per cell.
        """

    @abstractmethod
    def generative(
        self, z: torch.Tensor, cov: torch.Tensor, latent: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor | torch.distributions.Distribution]:
        """What the model predicts for each cell from ``z``, the covariates ``cov`` and the
        outputs of :meth:`inference` (``latent``)."""

    @abstractmethod
    def loss(
        self, x: torch.Tensor, latent: dict, generative_outputs: dict
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction loss and KL divergence of each cell."""

    @abstractmethod
    def sample(
        self, z: torch.Tensor, cov: torch.Tensor, library: torch.Tensor | None, **sampler_kwargs
    ) -> torch.Tensor:
        """One new cell per row of ``z`` with the covariates ``cov``; ``library`` holds the
        ``(n_cells, n_blocks)`` library sizes of count models (``None`` for continuous data)."""

    def forward(
        self, x: torch.Tensor, x_in: torch.Tensor, z: torch.Tensor, cov: torch.Tensor
    ) -> tuple[dict, dict]:
        """:meth:`inference`, then :meth:`generative`: ``(latent, generative_outputs)``, the
        arguments of :meth:`loss` after ``x``."""
        latent = self.inference(x, x_in, z)
        return latent, self.generative(z, cov, latent)

    def counterfactual(
        self,
        x: torch.Tensor,
        x_in: torch.Tensor,
        z_from: torch.Tensor,
        z_to: torch.Tensor,
        cov: torch.Tensor,
        library: torch.Tensor | None = None,
        **sampler_kwargs,
    ) -> torch.Tensor:
        """Each cell ``x`` of a set embedded as ``z_from``, moved to the set embedded as ``z_to``.

        The default, for continuous data: ``x + sample(z_to) - sample(z_from)`` with the same
        noise for both samples (common random numbers), so that a cell moves by what the
        change of embedding alone changes, keeps its own position within its set, and does not
        move at all when ``z_to == z_from``. Generators that can recover a cell's own latent
        variables (the CVAE's posterior, the flow's inverse ODE) override it.

        Parameters
        ----------
        x, x_in
            The cells as modelled and as the set encoder reads them (as in :meth:`inference`).
        z_from, z_to
            Embedding of each cell's set, and the embedding to move it to; one row per cell.
        cov
            Covariates of each cell (kept).
        library
            ``(n_cells, n_blocks)`` library sizes of count models (kept).
        **sampler_kwargs
            Passed to :meth:`sample`.
        """
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            to = self.sample(z_to, cov, library, **sampler_kwargs)
        source = self.sample(z_from, cov, library, **sampler_kwargs)
        return x + (to - source)

    def cell_latent(self, x_in: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-cell latent representation (generators with :attr:`has_cell_latent`)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-cell latent representation.")

    def set_feature_statistics(self, **statistics: torch.Tensor) -> None:
        """Receive per-feature ``mean``, ``std``, ``min`` and ``max`` of the training data
        (continuous data). Generators that do not use them ignore them."""

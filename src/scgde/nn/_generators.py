"""The conditional VAE generator and the registry of generators by name.

Generators subclass :class:`scgde.nn.Generator` (its docstring describes the interface).
Registered: ``"cvae"`` (:class:`CVAEGenerator`, counts or continuous data), ``"diffusion"``
(:class:`~scgde.nn.DiffusionGenerator`) and ``"flow"`` (:class:`~scgde.nn.FlowGenerator`),
both for continuous data.
"""

from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    Poisson,
    kl_divergence,
)

from .._constants import COUNT_LIKELIHOODS, LIKELIHOODS
from .._docs import GENERATOR_ARGS, doc_params
from ._blocks import block_slices, block_totals
from ._diffusion import DiffusionGenerator
from ._flow import FlowGenerator
from ._generator import Generator
from ._mlp import mlp
from ._negative_binomial import negative_binomial_log_likelihood


@doc_params(generator_args=GENERATOR_ARGS)
class CVAEGenerator(Generator):
    """Conditional VAE with a per-cell latent ``u`` and a count or Gaussian likelihood.

    ``q(u | x, z)`` reads the normalised expression and the set embedding; the decoder
    ``p(x | u, z, covariates)`` gives, as in scVI, a negative binomial (``"nb"``), zero-inflated
    NB (``"zinb"``) or Poisson (``"poisson"``) distribution with the observed library size, or a
    Gaussian (``"gaussian"``) for continuous data.

    Parameters
    ----------
    {generator_args}
    likelihood
        One of ``"nb"``, ``"zinb"``, ``"poisson"``, ``"gaussian"``.
    n_latent_cell
        Dimension of the per-cell latent ``u``.
    n_hidden, n_layers, dropout
        Sizes of the encoder, decoder and prior MLPs. The width 256 (128 before) generated
        real cells closer to held-out samples on ``benchmarks/fidelity.py`` (3 seeds); two
        layers did worse.
    block_sizes
        Count models only: sizes of consecutive feature blocks that each have their own library
        size, e.g. ``(n_genes, n_proteins)`` for RNA and protein counts of CITE-seq; the decoder
        normalises its rates within each block (a softmax per block) and scales them by the
        block's library. Default: one block of all features.
    conditional_prior
        ``True`` (default): the prior of ``u`` is ``p(u | z, cov)``, a Gaussian whose mean and
        scale an MLP predicts from the set embedding and covariates (the prior network of a
        conditional VAE), and cells are generated with ``u`` drawn from it. Whatever ``u``
        learns about the set is then regenerated from ``z``. ``False``: ``p(u) = N(0, I)``.
    prior_components
        Conditional prior only: number of Gaussian components of ``p(u | z, cov)``. With more
        than one, the prior network also predicts the components' weights, so that a set made
        of distinct populations can put each in its own region of ``u``; the KL divergence is
        then estimated from the drawn ``u`` (one sample), as it has no closed form.
    """

    has_cell_latent = True

    def __init__(
        self,
        n_input: int,
        n_latent_dist: int,
        n_covariates: int,
        likelihood: str = "nb",
        n_latent_cell: int = 10,
        n_hidden: int = 256,
        n_layers: int = 1,
        dropout: float = 0.1,
        block_sizes: tuple[int, ...] | None = None,
        conditional_prior: bool = True,
        prior_components: int = 1,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
        block_sizes = (n_input,) if block_sizes is None else tuple(int(b) for b in block_sizes)
        if sum(block_sizes) != n_input or min(block_sizes) < 1:
            raise ValueError(f"`block_sizes` {block_sizes} must be positive and sum to {n_input}.")
        if len(block_sizes) > 1 and likelihood not in COUNT_LIKELIHOODS:
            raise ValueError("Several feature blocks need a count likelihood.")
        if (
            isinstance(prior_components, bool)
            or not isinstance(prior_components, Integral)
            or prior_components < 1
            or (prior_components > 1 and not conditional_prior)
        ):
            raise ValueError(
                f"`prior_components` must be an integer >= 1 (more than 1 needs "
                f"`conditional_prior=True`), got {prior_components!r}."
            )
        self.block_sizes = block_sizes
        self.prior_components = int(prior_components)
        self.likelihood = likelihood
        self.n_latent_cell = n_latent_cell
        self.cell_encoder = mlp(
            n_input + n_latent_dist, 2 * n_latent_cell, n_hidden, n_layers, dropout
        )
        self.decoder_body = mlp(
            n_latent_cell + n_latent_dist + n_covariates, n_hidden, n_hidden, n_layers, dropout
        )
        self.decoder_mean = nn.Linear(n_hidden, n_input)
        # a mean and log variance per component, and the components' logits if several
        n_prior_out = (
            2 * n_latent_cell
            if prior_components == 1
            else prior_components * (2 * n_latent_cell + 1)
        )
        self.prior_network = (
            mlp(n_latent_dist + n_covariates, n_prior_out, n_hidden, n_layers=1)
            if conditional_prior
            else None
        )
        if likelihood == "zinb":
            self.decoder_dropout = nn.Linear(n_hidden, n_input)
        # gene-wise log inverse dispersion (NB/ZINB) or log standard deviation (Gaussian)
        self.log_gene_param = nn.Parameter(torch.zeros(n_input))

    def posterior(self, x_in: torch.Tensor, z: torch.Tensor) -> Normal:
        """``q(u | x, z)``."""
        mean, log_var = self.cell_encoder(torch.cat([x_in, z], dim=-1)).chunk(2, dim=-1)
        return _gaussian(mean, log_var)

    def prior(self, z: torch.Tensor, cov: torch.Tensor) -> Distribution:
        """``p(u | z, cov)`` (conditional prior; a Gaussian, or a mixture of
        ``prior_components`` Gaussians over the whole vector ``u``), or ``N(0, I)``."""
        if self.prior_network is None:
            zeros = z.new_zeros(z.shape[0], self.n_latent_cell)
            return Normal(zeros, torch.ones_like(zeros))
        out = self.prior_network(torch.cat([z, cov], dim=-1))
        if self.prior_components == 1:
            mean, log_var = out.chunk(2, dim=-1)
            return _gaussian(mean, log_var)
        k, d = self.prior_components, self.n_latent_cell
        logits, params = out[:, :k], out[:, k:].reshape(-1, k, 2 * d)
        mean, log_var = params.chunk(2, dim=-1)
        components = Independent(_gaussian(mean, log_var), 1)
        return MixtureSameFamily(Categorical(logits=logits), components)

    def likelihood_distribution(
        self, u: torch.Tensor, z: torch.Tensor, cov: torch.Tensor, library: torch.Tensor | None
    ) -> torch.distributions.Distribution:
        """``p(x | u, z, cov)``.

        ``library``: ``(n_cells, n_blocks)`` total counts of each feature block (count models).
        """
        hidden = F.gelu(self.decoder_body(torch.cat([u, z, cov], dim=-1)))
        raw = self.decoder_mean(hidden)
        if self.likelihood == "gaussian":
            return Normal(raw, torch.exp(self.log_gene_param.clamp(-10, 10)))
        mu = torch.cat(
            [
                torch.softmax(raw[:, block], dim=-1) * library[:, j : j + 1]
                for j, block in enumerate(block_slices(self.block_sizes))
            ],
            dim=-1,
        )
        if self.likelihood == "poisson":
            return Poisson(mu)
        if self.likelihood == "nb":
            return NegativeBinomial(mu=mu, theta=self.inverse_dispersion())
        return ZeroInflatedNegativeBinomial(
            mu=mu, theta=self.inverse_dispersion(), zi_logits=self.decoder_dropout(hidden)
        )

    def inverse_dispersion(self) -> torch.Tensor:
        """``(n_input,)`` gene-wise inverse dispersion ``theta`` of the (ZI)NB likelihood."""
        return torch.exp(self.log_gene_param.clamp(-10, 15))

    def inference(self, x, x_in, z) -> dict:
        """``q(u | x, z)``, a draw ``u`` from it, and the library size of each feature block
        (count models; ``None`` for continuous data)."""
        qu = self.posterior(x_in, z)
        library = (
            block_totals(x, self.block_sizes) if self.likelihood in COUNT_LIKELIHOODS else None
        )
        return {"qu": qu, "u": qu.rsample(), "library": library}

    def generative(self, z, cov, latent) -> dict[str, torch.distributions.Distribution]:
        """The prior ``p(u | z, cov)`` and the likelihood ``p(x | u, z, cov)``."""
        return {
            "pu": self.prior(z, cov),
            "px": self.likelihood_distribution(latent["u"], z, cov, latent["library"]),
        }

    def loss(self, x, latent, generative_outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative log-likelihood of each cell and the KL divergence of its ``u``."""
        px = generative_outputs["px"]
        if self.likelihood == "nb":
            # the gamma functions on the non-zero counts only (same values as px.log_prob)
            log_likelihood = negative_binomial_log_likelihood(x, px.mu, self.inverse_dispersion())
        else:
            log_likelihood = px.log_prob(x).sum(-1)
        reconstruction = -log_likelihood
        qu, pu = latent["qu"], generative_outputs["pu"]
        if isinstance(pu, Normal):
            kl = kl_divergence(qu, pu).sum(-1)
        else:  # a mixture prior: one-sample estimate at the drawn u
            kl = qu.log_prob(latent["u"]).sum(-1) - pu.log_prob(latent["u"])
        return reconstruction, kl

    def cell_latent(self, x_in, z) -> torch.Tensor:
        """Posterior mean of the per-cell latent ``u``."""
        return self.posterior(x_in, z).loc

    def sample(self, z, cov, library, **sampler_kwargs) -> torch.Tensor:
        """Draw one cell per row of ``z`` (``u`` from the prior); takes no sampler options."""
        _no_sampler_options(sampler_kwargs)
        u = self.prior(z, cov).sample()
        return self.likelihood_distribution(u, z, cov, library).sample()

    def counterfactual(self, x, x_in, z_from, z_to, cov, library=None, **sampler_kwargs):
        """Each cell ``x`` moved from the set ``z_from`` to the set ``z_to`` through its own
        ``u`` (posterior mean given ``z_from``): its decoded means ``m_from`` and ``m_to``
        under both embeddings tell how each feature changes. Continuous data:
        ``x + m_to - m_from``. Counts (``transport_counts``): each count is thinned
        to ``m_to / m_from`` where the mean falls and gains Poisson counts of mean
        ``m_to - m_from`` where it rises, so the cell keeps its own counts, library and
        sparsity, and is unchanged when ``z_to == z_from``. Takes no sampler options."""
        _no_sampler_options(sampler_kwargs)
        u = self.cell_latent(x_in, z_from)
        source = self.likelihood_distribution(u, z_from, cov, library).mean
        target = self.likelihood_distribution(u, z_to, cov, library).mean
        if self.likelihood == "gaussian":
            return x + (target - source)
        return transport_counts(x, source, target)


def _gaussian(mean: torch.Tensor, log_var: torch.Tensor) -> Normal:
    """A Gaussian from a predicted mean and log variance (clamped, with a floor on the scale)."""
    return Normal(mean, torch.exp(0.5 * log_var.clamp(-15, 15)) + 1e-4)


def _no_sampler_options(sampler_kwargs: dict) -> None:
    """The CVAE samples in one step: a clear error for any sampler option."""
    if sampler_kwargs:
        raise ValueError(
            f"The CVAE generator takes no sampler options, got {sorted(sampler_kwargs)}."
        )


def transport_counts(x: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Counts ``x`` moved from expected counts ``source`` to expected counts ``target``.

    Where the mean falls, each count keeps a binomial fraction ``target / source`` of itself;
    where it rises, it gains a Poisson draw of mean ``target - source`` (so a feature the cell
    does not express can appear). The expected result is ``x * target / source`` where the
    mean falls and ``x + target - source`` where it rises: both equal ``target`` when ``x``
    is at its mean ``source``.
    """
    keep = torch.where(source > 0, target / source.clamp(min=1e-12), 1.0).clamp(0.0, 1.0)
    counts = torch.round(x).clamp(min=0.0)
    kept = torch.distributions.Binomial(total_count=counts, probs=keep).sample()
    return kept + torch.poisson((target - source).clamp(min=0.0))


#: Generators by name; add one by subclassing :class:`Generator` and registering it here.
GENERATORS: dict[str, type[Generator]] = {
    "cvae": CVAEGenerator,
    "diffusion": DiffusionGenerator,
    "flow": FlowGenerator,
}


def make_generator(
    name: str, n_input: int, n_latent_dist: int, n_covariates: int, likelihood: str, **kwargs
) -> Generator:
    """Instantiate the generator registered under ``name``."""
    if name not in GENERATORS:
        raise ValueError(f"Unknown generator {name!r}; choose one of {sorted(GENERATORS)}.")
    return GENERATORS[name](n_input, n_latent_dist, n_covariates, likelihood, **kwargs)

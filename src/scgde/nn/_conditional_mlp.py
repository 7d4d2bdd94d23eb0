"""What the continuous generators share: an MLP conditioned on time, ``z`` and
covariates, and the per-feature standardisation they work in."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._constants import COUNT_LIKELIHOODS, LIKELIHOODS

#: Smallest per-feature standard deviation used for standardisation (constant features).
MIN_FEATURE_STD = 1e-3


def check_continuous_likelihood(likelihood: str, generator: str) -> str:
    """``likelihood`` if it is continuous; a ``ValueError`` that says what to do otherwise."""
    if likelihood in COUNT_LIKELIHOODS:
        raise ValueError(
            f"The {generator} generator models continuous data, not counts "
            f"(likelihood={likelihood!r}). Register log-normalised data (a layer, e.g. "
            "`layer='log1p'`) or a representation (`obsm_key='X_pca'`) with "
            "`GDE.setup_anndata` and use likelihood='gaussian', or keep the counts and use "
            "generator='cvae'."
        )
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}.")
    return likelihood


def sinusoidal_embedding(fraction: torch.Tensor, n_features: int) -> torch.Tensor:
    """Sine and cosine features ``(n, n_features)`` of times ``fraction`` in [0, 1].

    Frequencies are geometric between 1 and 1/10000 as in transformers, applied to
    ``1000 * fraction`` so that the embedding does not depend on the number of steps.
    """
    half = n_features // 2
    freqs = torch.exp(
        -math.log(10_000.0)
        * torch.arange(half, device=fraction.device, dtype=fraction.dtype)
        / max(half, 1)
    )
    angles = 1000.0 * fraction[:, None] * freqs[None, :]
    out = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if n_features % 2:
        out = F.pad(out, (0, 1))
    return out


class _ResidualBlock(nn.Module):
    """``h + MLP(FiLM(LayerNorm(h), c))``: the conditioning ``c`` scales and shifts each layer."""

    def __init__(self, n_hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(n_hidden, elementwise_affine=False)
        self.film = nn.Linear(n_hidden, 2 * n_hidden)
        self.mlp = nn.Sequential(
            nn.Linear(n_hidden, n_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden),
        )

    def forward(
        self, h: torch.Tensor, c: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``index`` (optional) maps each row of ``h`` to its row of ``c``."""
        scale, shift = self.film(F.gelu(c)).chunk(2, dim=-1)
        if index is not None:
            scale, shift = scale[index], shift[index]
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


def distinct_conditions(z: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``[z, cov]`` and the index of each cell's row.

    While sampling, the cells of a set share ``z`` and usually their covariates, so the
    conditioning of :class:`TimeConditionedMLP` is computed once per distinct row.
    """
    return torch.unique(torch.cat([z, cov], dim=-1), dim=0, return_inverse=True)


class TimeConditionedMLP(nn.Module):
    """``f(x, t, c)``: a residual MLP whose every block is scaled and shifted (FiLM) by an
    embedding of the time ``t`` in [0, 1] and of the condition ``c`` (``z`` and covariates).

    Parameters
    ----------
    n_input
        Width of ``x`` and of the output.
    n_condition
        Width of the condition ``c``.
    n_hidden, n_layers, dropout
        Width, number of residual blocks and dropout.
    n_time_embedding
        Number of sinusoidal features of the time.
    """

    def __init__(
        self,
        n_input: int,
        n_condition: int,
        n_hidden: int = 256,
        n_layers: int = 3,
        dropout: float = 0.0,
        n_time_embedding: int = 64,
    ):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"`n_layers` must be >= 0, got {n_layers!r}.")
        self.n_time_embedding = n_time_embedding
        self.input_layer = nn.Linear(n_input, n_hidden)
        self.time_embedding = nn.Sequential(
            nn.Linear(n_time_embedding, n_hidden), nn.GELU(), nn.Linear(n_hidden, n_hidden)
        )
        self.condition_embedding = nn.Sequential(
            nn.Linear(n_condition, n_hidden), nn.GELU(), nn.Linear(n_hidden, n_hidden)
        )
        self.blocks = nn.ModuleList(_ResidualBlock(n_hidden, dropout) for _ in range(n_layers))
        self.output_layer = nn.Sequential(
            nn.LayerNorm(n_hidden), nn.GELU(), nn.Linear(n_hidden, n_input)
        )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        c: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The output for ``x`` ``(n, n_input)`` at times ``t`` in [0, 1] given conditions ``c``.

        ``t`` ``(m,)`` and ``c`` ``(m, n_condition)`` have one row per cell (``m = n``), or, with
        ``index`` ``(n,)``, one row per distinct (time, condition) pair that ``index`` maps the
        cells to: while sampling, the cells of a set share both, and the conditioning is then
        computed once per set instead of once per cell.
        """
        time = sinusoidal_embedding(t.to(x.dtype), self.n_time_embedding)
        cond = self.time_embedding(time) + self.condition_embedding(c)
        h = self.input_layer(x) + (cond if index is None else cond[index])
        for block in self.blocks:
            h = block(h, cond, index)
        return self.output_layer(h)


class FeatureStandardization:
    """Mixin of generators that work on standardised data: per-feature statistics of the
    training data, saved with the model as buffers ``feature_mean``, ``feature_std``,
    ``feature_min`` and ``feature_max`` (0, 1, -inf and inf until
    :meth:`set_feature_statistics` sets them: no standardisation, no clipping).
    """

    _STATISTICS = {"mean": 0.0, "std": 1.0, "min": -math.inf, "max": math.inf}

    def _register_feature_statistics(self, n_input: int) -> None:
        """Register the four buffers with their neutral values."""
        for name, default in self._STATISTICS.items():
            self.register_buffer(f"feature_{name}", torch.full((n_input,), default))

    def set_feature_statistics(self, **statistics) -> None:
        """Set the per-feature ``mean``, ``std``, ``min`` and/or ``max`` of the training data
        (arrays of shape ``(n_input,)``); ``std`` is floored at 1e-3."""
        unknown = sorted(set(statistics) - set(self._STATISTICS))
        if unknown:
            raise ValueError(f"Unknown feature statistics {unknown}; use {list(self._STATISTICS)}.")
        for name, value in statistics.items():
            buffer = getattr(self, f"feature_{name}")
            value = torch.as_tensor(value, dtype=torch.float32)
            if value.shape != buffer.shape:
                raise ValueError(
                    f"`{name}` must have shape {tuple(buffer.shape)}, got {tuple(value.shape)}."
                )
            if name == "std":
                value = value.clamp(min=MIN_FEATURE_STD)
            buffer.copy_(value)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Data to the generator's unit scale."""
        return (x - self.feature_mean) / self.feature_std

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """Generator scale back to data."""
        return x * self.feature_std + self.feature_mean

    def clip_standardized(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised values clipped to the standardised range of the training data."""
        low, high = self.standardize(self.feature_min), self.standardize(self.feature_max)
        return torch.maximum(torch.minimum(x, high), low)

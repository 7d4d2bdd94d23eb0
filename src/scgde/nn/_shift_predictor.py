"""Prediction of a perturbation's shift in distribution-embedding space."""

from __future__ import annotations

import torch
from torch import nn

from ._mlp import mlp


class ShiftPredictor(nn.Module):
    """``Δz = mean_shift + f([z_control, standardised features])``.

    Maps the embedding of a context's control cells and the features of a perturbation to the
    shift of the perturbed cells' embedding. The MLP ``f`` learns a residual over the mean shift
    of the training perturbations: its output layer starts at zero, so an untrained predictor
    is exactly the mean-shift baseline in embedding space.

    Parameters
    ----------
    n_latent
        Dimension of the distribution embedding.
    n_features
        Number of perturbation features.
    n_hidden, n_layers, dropout
        Size of the MLP.
    """

    def __init__(
        self,
        n_latent: int,
        n_features: int,
        n_hidden: int = 128,
        n_layers: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.body = mlp(n_latent + n_features, n_latent, n_hidden, n_layers, dropout)
        self._zero_output()
        self.register_buffer("mean_shift", torch.zeros(n_latent))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))

    def reset_parameters(self) -> None:
        """Fresh random weights (from torch's global generator), with the output layer at zero."""
        for module in self.body.modules():
            if module is not self.body and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self._zero_output()

    def _zero_output(self) -> None:
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def set_statistics(self, mean_shift: torch.Tensor, features: torch.Tensor) -> None:
        """Store the training mean shift and the features' mean and scale."""
        self.mean_shift.copy_(mean_shift)
        if features.shape[0] > 1:
            self.feature_mean.copy_(features.mean(0))
            self.feature_scale.copy_(features.std(0).clamp(min=1e-6))

    def forward(self, z_control: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Predicted shifts ``(n, n_latent)`` for controls ``(n, n_latent)`` and features."""
        scaled = (features - self.feature_mean) / self.feature_scale
        return self.mean_shift + self.body(torch.cat([z_control, scaled], dim=-1))

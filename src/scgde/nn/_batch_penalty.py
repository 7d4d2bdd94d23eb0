"""Penalties that keep the technical batch out of the set embeddings ``z``.

Both read the embeddings of the sets of a minibatch and each set's batch composition (the
fraction of its cells from each batch, so groups sequenced in several batches are covered):

- ``"adversarial"`` (:class:`BatchAdversary`): a classifier predicts the composition from
  ``z``; it learns to predict it, while a gradient reversal layer makes the encoder remove what
  it uses.
- ``"hsic"`` (:func:`normalized_hsic`): the normalised Hilbert-Schmidt independence criterion
  between ``z`` (Gaussian kernel) and the compositions (linear kernel), 0 when no function of
  ``z`` in the kernel's space correlates with the batch in the minibatch.

The generator is still conditioned on the batch, so what the batch changes in the cells is
explained by the batch covariate rather than by ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._mlp import mlp

#: The ``batch_correction=`` values of :class:`~scgde.model.GDE` (``None``: no penalty).
BATCH_CORRECTIONS = ("adversarial", "hsic")
#: Default weight of each penalty against the generator loss per cell (benchmarks/batch.py).
DEFAULT_BATCH_CORRECTION_WEIGHTS = {"adversarial": 3.0, "hsic": 1.0}


def set_batch_composition(batch: torch.Tensor, set_ids: torch.Tensor, n_sets: int, n_batch: int):
    """``(n_sets, n_batch)`` fraction of each set's cells from each batch."""
    counts = torch.zeros(n_sets, n_batch, device=batch.device)
    counts.index_add_(0, set_ids, F.one_hot(batch, n_batch).float())
    return counts / counts.sum(-1, keepdim=True).clamp(min=1.0)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-scale`` backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x`` in the forward pass; ``-scale`` times the gradient in the backward pass."""
    return _ReverseGradient.apply(x, scale)


class BatchAdversary(nn.Module):
    """A classifier of each set's batch composition from ``z`` behind a gradient reversal.

    Its loss, the cross-entropy between the composition and the predicted batch
    probabilities, trains the classifier to predict the batch and, reversed, the encoder to
    make the batch unpredictable.

    Parameters
    ----------
    n_latent
        Width of ``z``.
    n_batch
        Number of batches.
    n_hidden
        Width of the classifier's hidden layer.
    """

    def __init__(self, n_latent: int, n_batch: int, n_hidden: int = 64):
        super().__init__()
        self.classifier = mlp(n_latent, n_batch, n_hidden, n_layers=1)

    def forward(self, z_sets: torch.Tensor, composition: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss (to add to the training loss) and the classifier's accuracy."""
        logits = self.classifier(reverse_gradient(z_sets))
        loss = -(composition * F.log_softmax(logits, dim=-1)).sum(-1).mean()
        accuracy = (logits.argmax(-1) == composition.argmax(-1)).float().mean()
        return {"loss": loss, "batch_accuracy": accuracy.detach()}


def normalized_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalised HSIC (kernel alignment of the centred Gram matrices) between the rows of
    ``x`` (Gaussian kernel, bandwidth the median distance) and of ``y`` (linear kernel).

    In [0, 1]; 0 when the centred Gram matrices are orthogonal. Needs at least 2 rows.
    """
    n = x.shape[0]
    distances = torch.cdist(x, x).pow(2)
    off_diagonal = distances[~torch.eye(n, dtype=torch.bool, device=x.device)]
    bandwidth = off_diagonal.detach().median().clamp(min=1e-8)
    k = torch.exp(-distances / bandwidth)
    l_gram = y @ y.T
    centre = torch.eye(n, device=x.device) - 1.0 / n
    k, l_gram = centre @ k @ centre, centre @ l_gram @ centre
    cross = (k * l_gram).sum()
    return cross / ((k * k).sum().sqrt() * (l_gram * l_gram).sum().sqrt()).clamp(min=1e-12)


class BatchHSIC(nn.Module):
    """The normalised HSIC between the sets' ``z`` and their batch compositions as a loss."""

    def forward(self, z_sets: torch.Tensor, composition: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss (0 for fewer than 3 sets, where the criterion is not defined)."""
        if z_sets.shape[0] < 3:
            return {"loss": z_sets.new_zeros(())}
        return {"loss": normalized_hsic(z_sets, composition)}


def make_batch_penalty(name: str | None, n_latent: int, n_batch: int) -> nn.Module | None:
    """The penalty registered under ``name`` (``None``: no penalty)."""
    if name is None:
        return None
    if name not in BATCH_CORRECTIONS:
        raise ValueError(
            f"Unknown batch_correction {name!r}; choose one of {BATCH_CORRECTIONS} or None."
        )
    return BatchAdversary(n_latent, n_batch) if name == "adversarial" else BatchHSIC()

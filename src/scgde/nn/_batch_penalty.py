"""A penalty that keeps the technical batch out of the set embeddings ``z``.

``"hsic"`` (:class:`BatchHSIC`) reads the embeddings of the sets of a minibatch and each set's
batch composition (the fraction of its cells from each batch, so groups sequenced in several
batches are covered), and penalises the normalised Hilbert-Schmidt independence criterion
between them (:func:`normalized_hsic`): 0 when no function of ``z`` in the kernel's space
correlates with the batch in the minibatch. The generator is still conditioned on the batch,
so what the batch changes in the cells is explained by the batch covariate rather than by
``z``. (An adversarial batch classifier behind a gradient reversal was measured as well and
left the batch in ``z``: ``benchmarks/results/batch_ablation.md``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The ``batch_correction=`` values of :class:`~scgde.model.GDE` (``None``: no penalty).
BATCH_CORRECTIONS = ("hsic",)
#: Default weight of each penalty against the generator loss per cell (benchmarks/batch.py).
DEFAULT_BATCH_CORRECTION_WEIGHTS = {"hsic": 1.0}


def set_batch_composition(batch: torch.Tensor, set_ids: torch.Tensor, n_sets: int, n_batch: int):
    """``(n_sets, n_batch)`` fraction of each set's cells from each batch."""
    counts = torch.zeros(n_sets, n_batch, device=batch.device)
    counts.index_add_(0, set_ids, F.one_hot(batch, n_batch).float())
    return counts / counts.sum(-1, keepdim=True).clamp(min=1.0)


def normalized_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalised HSIC (kernel alignment of the centred Gram matrices) between the rows of
    ``x`` (Gaussian kernel ``exp(-d^2 / median(d^2))`` over the pairs of distinct rows) and of
    ``y`` (linear kernel).

    In [0, 1]; 0 when the centred Gram matrices are orthogonal (e.g. when ``y`` is the same in
    every row). Needs at least 2 rows.
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

    def forward(self, z_sets: torch.Tensor, composition: torch.Tensor) -> torch.Tensor:
        """The penalty (0 for fewer than 3 sets, too few to measure a dependence)."""
        if z_sets.shape[0] < 3:
            return z_sets.new_zeros(())
        return normalized_hsic(z_sets, composition)


def check_batch_correction(name: str | None, n_batch: int) -> None:
    """A clear error for a ``batch_correction`` that is neither registered nor ``None``, or
    that has fewer than 2 batches to work on."""
    if name is None:
        return
    if name not in BATCH_CORRECTIONS:
        raise ValueError(
            f"Unknown batch_correction {name!r}; choose one of {BATCH_CORRECTIONS} or None."
        )
    if n_batch < 2:
        raise ValueError(
            f"batch_correction={name!r} needs at least 2 batches; register the batch with "
            "setup_anndata(..., batch_key=...)."
        )


def make_batch_penalty(name: str | None, n_batch: int) -> nn.Module | None:
    """The penalty registered under ``name`` for ``n_batch`` batches (``None``: no penalty)."""
    check_batch_correction(name, n_batch)
    return None if name is None else BatchHSIC()

"""Fitting the shift predictor of perturbation models: full-batch Adam on a few hundred
examples (one per perturbed set), where a Lightning loop's per-epoch overhead would dominate."""

from __future__ import annotations

import pandas as pd
import torch

from ..nn import ShiftPredictor


def fit_shift_predictor(
    predictor: ShiftPredictor,
    z_control: torch.Tensor,
    features: torch.Tensor,
    targets: torch.Tensor,
    train: torch.Tensor,
    validation: torch.Tensor,
    n_epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> pd.DataFrame:
    """Refit ``predictor`` from fresh weights on the ``train`` examples; returns the history.

    Parameters
    ----------
    predictor
        The predictor; its weights are reset (seeded) and its statistics set from ``train``.
    z_control, features, targets
        Per example: the control embedding, the perturbation features, the shift ``Δz``.
    train, validation
        Boolean masks of the examples to fit and to score (may be empty).
    n_epochs, lr, weight_decay
        Full-batch Adam steps, learning rate and weight decay.
    seed
        Seed of the weights and of dropout.

    Returns
    -------
    ``train_mse`` and ``validation_mse`` (NaN without validation examples) per epoch.
    """
    torch.manual_seed(seed)
    predictor.reset_parameters()
    predictor.set_statistics(targets[train].mean(0), features[train])
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr, weight_decay=weight_decay)

    def mse(mask: torch.Tensor) -> torch.Tensor:
        return torch.mean((predictor(z_control[mask], features[mask]) - targets[mask]) ** 2)

    records = []
    for _ in range(n_epochs):
        predictor.train()
        optimizer.zero_grad()
        loss = mse(train)
        loss.backward()
        optimizer.step()
        predictor.eval()
        with torch.no_grad():
            val = float(mse(validation)) if validation.any() else float("nan")
        records.append({"train_mse": float(loss.detach()), "validation_mse": val})
    predictor.eval()
    return pd.DataFrame(records, index=pd.RangeIndex(1, n_epochs + 1, name="epoch"))

"""Expression values for plots: dense rows, count detection, library-size normalisation."""

from __future__ import annotations

import numpy as np

from .._constants import ENCODER_TARGET_SUM


def is_counts(x: np.ndarray) -> bool:
    """Whether all values are non-negative integers."""
    return bool((x >= 0).all() and np.array_equal(x, np.round(x)))


def normalize_total(x: np.ndarray, target_sum: float = ENCODER_TARGET_SUM) -> np.ndarray:
    """Counts scaled to ``target_sum`` per cell (cells without counts stay zero)."""
    totals = x.sum(axis=1, keepdims=True)
    return x * (target_sum / np.where(totals > 0, totals, 1.0))

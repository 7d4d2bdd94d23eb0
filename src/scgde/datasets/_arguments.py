"""Checks of the numeric arguments of the simulators (errors name the argument)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

#: What the simulators accept as ``seed``.
Seed = int | np.integer | np.random.SeedSequence | np.random.Generator | None


def finite_real(name: str, value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    return value


def nonneg_real(name: str, value: object) -> float:
    value = finite_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    return value


def unit_interval(name: str, value: object, *, open_low: bool = False) -> float:
    value = finite_real(name, value)
    if (value <= 0.0 if open_low else value < 0.0) or value > 1.0:
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}.")
    return value


def interval(name: str, value: Sequence[float], *, low_min: float | None = None) -> tuple:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}.") from None
    low, high = finite_real(f"{name}[0]", low), finite_real(f"{name}[1]", high)
    if low > high:
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}.")
    if low_min is not None and low < low_min:
        raise ValueError(f"{name} must satisfy low >= {low_min}, got {value!r}.")
    return low, high

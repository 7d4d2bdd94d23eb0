"""Names of perturbations: the parts of a combination such as ``"KLF1+MAP2K6"``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Parts that GEARS-style names use for "no perturbation", e.g. ``"KLF1+ctrl"`` (case-sensitive:
#: ``CTRL`` is a human gene).
CONTROL_PARTS = ("ctrl", "control")


def split_combination(
    name: str, separator: str = "+", *, control_parts: Sequence[str] = CONTROL_PARTS
) -> list[str]:
    """The single perturbations that make up a (possibly combined) perturbation name.

    Parameters
    ----------
    name
        A perturbation name such as ``"KLF1"``, ``"KLF1+MAP2K6"`` or ``"KLF1+ctrl"``.
    separator
        String between the parts of a combination.
    control_parts
        Parts that stand for "no perturbation" and are dropped (GEARS writes ``"A+ctrl"`` for
        the single perturbation ``A``). Compared case-sensitively.

    Returns
    -------
    The parts in their order of appearance, stripped of surrounding whitespace; empty parts
    (``"A++B"``) and control parts are dropped, repeated parts are kept.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``separator`` is empty, or no part remains (e.g. ``""`` or ``"ctrl"``).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"A perturbation name must be a string, got {name!r} of type {type(name).__name__}."
        )
    if not separator:
        raise ValueError("separator must be a non-empty string.")
    dropped = set(control_parts)
    parts = [p.strip() for p in name.split(separator)]
    parts = [p for p in parts if p and p not in dropped]
    if not parts:
        raise ValueError(
            f"Perturbation {name!r} has no parts once empty parts and control parts "
            f"{sorted(dropped)} are removed (separator {separator!r}). If it is the control "
            "condition, pass it as `control`."
        )
    return parts


def control_parts(control: str) -> tuple[str, ...]:
    """Control parts dropped from combinations: the GEARS names and ``control`` itself."""
    return (*CONTROL_PARTS, str(control))


def unique_names(perturbations: Sequence[str], what: str = "perturbations") -> np.ndarray:
    """Unique perturbation names in order of appearance (error on missing values)."""
    values = pd.Series(np.asarray(perturbations, dtype=object).reshape(-1), dtype=object)
    if values.isna().any():
        raise ValueError(
            f"The {what} contain {int(values.isna().sum())} missing value(s) (NaN/None); every "
            "cell needs a perturbation name (the control condition included)."
        )
    return pd.unique(values)


def perturbation_parts(
    perturbations: Sequence[str], control: str, separator: str = "+"
) -> list[str]:
    """The sorted unique single parts of all non-control perturbations.

    Parameters
    ----------
    perturbations
        Perturbation names, e.g. an obs column (repeats are fine).
    control
        Name of the control condition; it is skipped, and dropped as a part of combinations
        (as are ``"ctrl"`` and ``"control"``).
    separator
        String between the parts of a combination.

    Returns
    -------
    Sorted unique parts, e.g. ``["A", "B", "C"]`` for ``["ctrl", "A+B", "C", "A"]``.

    Raises
    ------
    ValueError
        If a name is missing (NaN) or has no parts (:func:`split_combination`).
    """
    dropped = control_parts(control)
    parts: set[str] = set()
    for name in unique_names(perturbations):
        if name == control:
            continue
        parts.update(split_combination(name, separator, control_parts=dropped))
    return sorted(parts)

"""Argument checks shared by the whole package."""

from __future__ import annotations

import numbers


def check_int(value, name: str, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` of at least ``minimum``.

    Parameters
    ----------
    value
        The argument to check.
    name
        The argument's name, for the error message.
    minimum
        Smallest allowed value.
    allow_none
        Accept ``None`` (and return it).

    Raises
    ------
    TypeError
        If ``value`` is not an integer (booleans and floats with integer values included).
    ValueError
        If ``value`` is below ``minimum``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer{' or None' if allow_none else ''}, got {value!r} "
            f"({type(value).__name__})."
        )
    if value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"`{name}` must be {what}, got {value!r}.")
    return int(value)

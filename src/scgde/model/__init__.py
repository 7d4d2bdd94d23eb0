"""User-facing model classes."""

from ._gde import GDE

__all__ = ["GDE"]

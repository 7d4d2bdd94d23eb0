"""User-facing model classes."""

from ._gde import GDE
from ._perturbation import PerturbationGDE

__all__ = ["GDE", "PerturbationGDE"]

"""User-facing model classes."""

from ._gde import GDE
from ._label import LabelGDE
from ._perturbation import PerturbationGDE

__all__ = ["GDE", "LabelGDE", "PerturbationGDE"]

"""Torch modules (scvi-tools ``BaseModuleClass``) that implement GDE."""

from ._gde import GDEModule
from ._perturbation import PerturbationGDEModule

__all__ = ["GDEModule", "PerturbationGDEModule"]

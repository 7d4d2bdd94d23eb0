"""Torch modules (scvi-tools ``BaseModuleClass``) that implement GDE."""

from ._gde import GDEModule

__all__ = ["GDEModule"]

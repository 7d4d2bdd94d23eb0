"""Datasets bundled with scgde."""

from ._demo import demo

__all__ = ["demo"]

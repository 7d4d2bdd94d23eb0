"""Datasets bundled with scgde."""

from ._demo import demo
from ._synthetic import gaussian_mixture_sets, gaussian_sets, mixed_gaussian_sets, poisson_sets

__all__ = ["demo", "gaussian_mixture_sets", "gaussian_sets", "mixed_gaussian_sets", "poisson_sets"]

"""Datasets: bundled real data, loaders for public data, and documented simulators."""

from ._demo import demo
from ._dose_response import dose_response, dose_response_truth
from ._grn import grn_perturbations
from ._larry import larry
from ._lineage import lineage_sets
from ._liu2021 import liu2021_covid
from ._perturbseq import norman2019, replogle2022
from ._poisson import poisson_sets
from ._synthetic import gaussian_mixture_sets, gaussian_sets, mixed_gaussian_sets

__all__ = [
    "demo",
    "dose_response",
    "dose_response_truth",
    "gaussian_mixture_sets",
    "gaussian_sets",
    "grn_perturbations",
    "larry",
    "lineage_sets",
    "liu2021_covid",
    "mixed_gaussian_sets",
    "norman2019",
    "poisson_sets",
    "replogle2022",
]

"""scgde: generative distribution embeddings of groups of cells for the scverse."""

from importlib.metadata import PackageNotFoundError, version

from . import data, datasets, metrics, model, module, nn, pl, tl, train

try:
    __version__ = version("scgde")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "data",
    "datasets",
    "metrics",
    "model",
    "module",
    "nn",
    "pl",
    "tl",
    "train",
    "__version__",
]

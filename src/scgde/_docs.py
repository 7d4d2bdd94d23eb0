"""Numpydoc parameter blocks shared by several docstrings, and :func:`doc_params` to fill them.

A docstring holds a placeholder line ``{name}`` where a block goes; :func:`doc_params`
replaces it by the block, indented like the placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: ``show`` and ``save`` of the plotting functions.
SHOW_SAVE = """\
show
    Show the figure; default: unless ``ax`` is given (never with a non-interactive backend).
save
    File to save the figure to (the extension sets the format); written atomically."""

#: The first four constructor arguments of every generator.
GENERATOR_ARGS = """\
n_input
    Number of features.
n_latent_dist
    Dimension of the distribution embedding ``z``.
n_covariates
    Width of the covariate vector (one-hot batch and categorical covariates, continuous
    ones)."""

#: ``likelihood`` of the generators of continuous data.
CONTINUOUS_LIKELIHOOD = """\
likelihood
    Must be ``"gaussian"`` (continuous data); count likelihoods raise a ``ValueError``."""

#: The first arguments of the continuous generators' ``sample``.
SAMPLE_ARGS = """\
z, cov
    Embeddings and covariates, one row per cell.
library
    Ignored (continuous data)."""


def _indented(block: str, indent: str) -> str:
    return "\n".join(indent + line if line else line for line in block.split("\n"))


def doc_params(**blocks: str) -> Callable[[T], T]:
    """Decorator: replace each placeholder line ``{name}`` of the docstring by ``blocks[name]``.

    Raises a ``ValueError`` at import if a block has no placeholder, so a block cannot be
    dropped silently.
    """

    def fill(obj: T) -> T:
        doc = obj.__doc__ or ""
        for name, block in blocks.items():
            pattern = re.compile(rf"^([ \t]*)\{{{name}\}}$", flags=re.MULTILINE)
            if not pattern.search(doc):
                raise ValueError(f"{obj.__qualname__} has no {{{name}}} line in its docstring.")
            doc = pattern.sub(lambda match, block=block: _indented(block, match.group(1)), doc)
        obj.__doc__ = doc
        return obj

    return fill

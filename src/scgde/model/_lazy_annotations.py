"""AnnData read lazily (:func:`anndata.experimental.read_lazy`): their annotations are loaded
into memory, which scvi-tools' registration needs; their matrices stay lazy (dask arrays,
read in blocks of rows)."""

from __future__ import annotations

import logging

import pandas as pd
from anndata import AnnData

logger = logging.getLogger(__name__)


def has_lazy_annotations(adata) -> bool:
    """Whether ``adata`` is an AnnData whose ``obs`` or ``var`` is not in memory."""
    return isinstance(adata, AnnData) and not (
        isinstance(adata.obs, pd.DataFrame) and isinstance(adata.var, pd.DataFrame)
    )


def in_memory(frame) -> pd.DataFrame:
    """A pandas DataFrame as it is; a lazy (xarray-backed) one read into memory."""
    return frame if isinstance(frame, pd.DataFrame) else frame.to_memory()


def load_annotations(adata) -> None:
    """Load a lazy AnnData's ``obs`` and ``var`` into memory, in place (set-up: scvi-tools
    writes its registration columns into ``obs``). The matrices are not read."""
    if has_lazy_annotations(adata):
        logger.info("Loading the lazy AnnData's obs and var into memory; X stays lazy.")
        adata.obs, adata.var = in_memory(adata.obs), in_memory(adata.var)

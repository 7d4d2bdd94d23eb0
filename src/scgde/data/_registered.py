"""Row access to the registered fields of an AnnData, as torch tensors, on scvi-tools'
:class:`~scvi.data.AnnTorchDataset`."""

from __future__ import annotations

import numpy as np
import torch
from anndata.abc import CSCDataset, CSRDataset
from scipy import sparse
from scvi.data import AnnDataManager, AnnTorchDataset

from .._constants import BATCH_KEY, CAT_COVS_KEY, CONT_COVS_KEY, PROTEIN_KEY, SET_IDS_KEY, X_KEY
from .._utils import computed, is_dask

#: The registered fields a GDE model reads, in this order.
_FIELDS = (X_KEY, PROTEIN_KEY, BATCH_KEY, CAT_COVS_KEY, CONT_COVS_KEY)


class RegisteredData(AnnTorchDataset):
    """The registered data of an :class:`~scvi.data.AnnDataManager`, indexed by cells.

    scvi-tools' :class:`~scvi.data.AnnTorchDataset` reads the fields (in memory or backed by
    an h5ad file; sparse rows densified); this class serves them as float32 tensors in the
    order of the requested rows. ``dataset[(indices, set_ids)]`` also returns ``set_ids``,
    which is how the set sampler hands minibatches of sets to a
    :class:`~torch.utils.data.DataLoader`. An in-memory CSC matrix is read through a CSR copy
    made once, because row access on CSC is slow.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    extra
        Further per-cell arrays to serve under their keys (e.g. group label codes).
    """

    def __init__(self, adata_manager: AnnDataManager, extra: dict[str, np.ndarray] | None = None):
        keys = {key: np.float32 for key in _FIELDS if key in adata_manager.data_registry}
        super().__init__(adata_manager, getitem_tensors=keys)
        self.n_obs = adata_manager.adata.n_obs
        self.extra = {}
        for key, values in (extra or {}).items():
            if len(values) != self.n_obs:
                raise ValueError(f"Extra array {key!r} has {len(values)} rows, not {self.n_obs}.")
            self.extra[key] = np.asarray(values)

    @property
    def data(self) -> dict:
        """The registered arrays (an in-memory CSC matrix as CSR), read once."""
        if not hasattr(self, "_rows_data"):
            self._rows_data = {}
            for key in self.keys_and_dtypes:
                values = self.adata_manager.get_from_registry(key)
                if sparse.issparse(values) and values.format == "csc":
                    values = values.tocsr()
                self._rows_data[key] = values
        return self._rows_data

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        if isinstance(item, tuple):
            indices, set_ids = item
            out = self.rows(indices)
            out[SET_IDS_KEY] = torch.as_tensor(set_ids, dtype=torch.long)
            return out
        return self.rows(item)

    def rows(self, indices) -> dict[str, torch.Tensor]:
        """Tensors for the cells at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size < 2 or (np.diff(indices) > 0).all():
            arrays = super().__getitem__(indices)
        else:  # read in increasing order (as backed files need), then restore the order asked
            order = np.argsort(indices, kind="stable")
            restore = np.empty_like(order)
            restore[order] = np.arange(order.size)
            arrays = {k: v[restore] for k, v in super().__getitem__(indices[order]).items()}
        out = {key: torch.as_tensor(_dense_float32(v)) for key, v in arrays.items()}
        for key, values in self.extra.items():
            out[key] = torch.as_tensor(np.asarray(values[indices], dtype=np.float32))
        return out

    def sparse_rows(self, indices) -> sparse.csr_matrix | None:
        """The registered ``X`` of the cells at ``indices`` (increasing) as a float32 CSR
        matrix, without densifying; ``None`` where ``X`` is dense. A contiguous run of rows is
        read as a slice."""
        values = self.data[X_KEY]
        sparse_dask = is_dask(values) and sparse.issparse(values._meta)
        if not (
            sparse.issparse(values) or isinstance(values, CSRDataset | CSCDataset) or sparse_dask
        ):
            return None
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and indices[-1] - indices[0] + 1 == indices.size:
            rows = values[int(indices[0]) : int(indices[-1]) + 1]
        else:
            rows = values[indices]
        return sparse.csr_matrix(computed(rows), dtype=np.float32)


def _dense_float32(values) -> np.ndarray:
    """Rows read by :class:`~scvi.data.AnnTorchDataset` as a dense float32 array (the rows of
    a dask array of sparse blocks arrive sparse)."""
    if sparse.issparse(values):
        values = values.toarray()
    return np.asarray(values, dtype=np.float32)

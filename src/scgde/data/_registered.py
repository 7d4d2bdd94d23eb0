"""Row access to the registered fields of an AnnData, as torch tensors."""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scvi.data import AnnDataManager

from .._constants import (
    BATCH_KEY,
    CAT_COVS_KEY,
    CONT_COVS_KEY,
    PROTEIN_KEY,
    SET_IDS_KEY,
    X_KEY,
)


class RegisteredData(torch.utils.data.Dataset):
    """The registered data of an :class:`~scvi.data.AnnDataManager`, indexed by cells.

    ``dataset[indices]`` returns a dict of float tensors (``X`` and protein counts densified,
    batch and covariate codes). ``dataset[(indices, set_ids)]`` also returns ``set_ids``, which
    is how the set sampler hands minibatches of sets to a :class:`~torch.utils.data.DataLoader`.
    CSC matrices are read through a CSR copy made once, because row access on CSC is slow.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    extra
        Further per-cell arrays to serve under their keys (e.g. group label codes).
    """

    def __init__(self, adata_manager: AnnDataManager, extra: dict[str, np.ndarray] | None = None):
        self.arrays = {}
        for key in (X_KEY, PROTEIN_KEY, BATCH_KEY, CAT_COVS_KEY, CONT_COVS_KEY):
            if key not in adata_manager.data_registry:
                continue
            data = adata_manager.get_from_registry(key)
            if sparse.issparse(data) and data.format == "csc":
                data = data.tocsr()
            elif hasattr(data, "to_numpy"):
                data = data.to_numpy()
            self.arrays[key] = data
        self.n_obs = self.arrays[X_KEY].shape[0]
        for key, data in (extra or {}).items():
            if len(data) != self.n_obs:
                raise ValueError(f"Extra array {key!r} has {len(data)} rows, not {self.n_obs}.")
            self.arrays[key] = np.asarray(data)

    def __len__(self) -> int:
        return self.n_obs

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        if isinstance(item, tuple):
            indices, set_ids = item
            out = self.rows(indices)
            out[SET_IDS_KEY] = torch.as_tensor(set_ids, dtype=torch.long)
            return out
        return self.rows(item)

    def rows(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors for the cells at ``indices``."""
        out = {}
        for key, data in self.arrays.items():
            block = data[indices]
            if sparse.issparse(block):
                block = block.toarray()
            out[key] = torch.as_tensor(np.asarray(block, dtype=np.float32))
        return out

"""Pooling over sets stored as a flat array of cells with a set index per cell."""

import torch


def segment_sum(values: torch.Tensor, set_ids: torch.Tensor, n_sets: int) -> torch.Tensor:
    """Sum the rows of ``values`` that belong to each set.

    Parameters
    ----------
    values
        ``(n_cells, d)`` per-cell values.
    set_ids
        ``(n_cells,)`` integer set index of each cell, in ``[0, n_sets)``.
    n_sets
        Number of sets.

    Returns
    -------
    ``(n_sets, d)`` per-set sums, in the dtype of ``values``.
    """
    out = values.new_zeros((n_sets, values.shape[-1]))
    return out.index_add_(0, set_ids, values)


def segment_counts(set_ids: torch.Tensor, n_sets: int, dtype: torch.dtype) -> torch.Tensor:
    """Number of cells of each set as a ``(n_sets, 1)`` tensor of ``dtype``."""
    return torch.bincount(set_ids, minlength=n_sets).to(dtype).unsqueeze(-1)


def segment_mean(values: torch.Tensor, set_ids: torch.Tensor, n_sets: int) -> torch.Tensor:
    """Mean of the rows of ``values`` within each set (``(n_sets, d)``).

    Every set must contain at least one cell.
    """
    return segment_sum(values, set_ids, n_sets) / segment_counts(set_ids, n_sets, values.dtype)

"""Feature blocks: modalities (RNA, proteins) modelled side by side, each with its own library."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def block_slices(block_sizes: Sequence[int]) -> list[slice]:
    """Column slices of consecutive blocks of the given sizes."""
    slices, start = [], 0
    for size in block_sizes:
        slices.append(slice(start, start + int(size)))
        start += int(size)
    return slices


def block_totals(x: torch.Tensor, block_sizes: Sequence[int]) -> torch.Tensor:
    """``(n_cells, n_blocks)`` totals of ``x`` within each block (library sizes)."""
    return torch.stack([x[:, s].sum(-1) for s in block_slices(block_sizes)], dim=-1)

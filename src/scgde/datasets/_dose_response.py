"""A simulated dose–response: cells whose distribution moves smoothly with a continuous label."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd

from .._utils import check_int
from ._arguments import Seed, interval

__all__ = ["dose_response", "dose_response_truth"]


def dose_response_truth(dose, dim: int = 5) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and standard deviation of the simulated dose–response cells at each dose.

    At dose :math:`y`, the cells of :func:`~scgde.datasets.dose_response` are
    :math:`\mathcal{N}(\mu(y), \sigma(y)^2 I_{dim})` with
    :math:`\mu(y) = (3y, 2\sin 3y, 0, \dots, 0)` (a curved path of the mean) and
    :math:`\sigma(y) = 0.5 + y` (a growing spread), so the Wasserstein-2 distance between the
    cells at two doses is
    :math:`\sqrt{\lVert\mu(y_1) - \mu(y_2)\rVert^2 + dim\,(\sigma(y_1) - \sigma(y_2))^2}`.

    Returns
    -------
    mean
        ``(*dose.shape, dim)``.
    sd
        ``dose.shape``.
    """
    y = np.asarray(dose, dtype=np.float64)
    dim = check_int(dim, "dim")
    if dim < 2:
        raise ValueError(f"`dim` must be at least 2, got {dim}.")
    mean = np.zeros((*y.shape, dim))
    mean[..., 0] = 3 * y
    mean[..., 1] = 2 * np.sin(3 * y)
    return mean, 0.5 + y


def dose_response(
    n_cells: int = 20_000,
    dim: int = 5,
    held_out: tuple[float, float] | None = None,
    seed: Seed = 0,
) -> anndata.AnnData:
    """Cells at doses drawn uniformly from [0, 1], with the distribution of
    :func:`~scgde.datasets.dose_response_truth` at each dose.

    Parameters
    ----------
    n_cells
        Cells drawn before any are held out.
    dim
        Number of features (at least 2).
    held_out
        ``(low, high)``: drop the cells with a dose in this open interval (a dose range never
        observed, to test generation between observed doses).
    seed
        Anything :func:`numpy.random.default_rng` accepts.

    Returns
    -------
    AnnData with ``X`` (float32, cells × ``dim``), the dose in ``obs["dose"]`` and the
    settings in ``uns["synthetic"]``.

    Examples
    --------
    >>> adata = scgde.datasets.dose_response(10_000, held_out=(0.4, 0.6))
    >>> scgde.model.LabelGDE.setup_anndata(adata, label_key="dose")
    """
    n_cells = check_int(n_cells, "n_cells")
    rng = np.random.default_rng(seed)
    dose = rng.uniform(0, 1, n_cells)
    mean, sd = dose_response_truth(dose, dim)
    x = mean + rng.normal(size=mean.shape) * sd[:, None]
    if held_out is not None:
        low, high = interval("held_out", held_out)
        keep = (dose <= low) | (dose >= high)
        dose, x = dose[keep], x[keep]
    adata = anndata.AnnData(
        x.astype(np.float32),
        obs=pd.DataFrame({"dose": dose}, index=[str(i) for i in range(dose.size)]),
        var=pd.DataFrame(index=[f"dim_{i}" for i in range(dim)]),
    )
    adata.uns["synthetic"] = {
        "family": "dose_response",
        "n_cells": n_cells,
        "dim": dim,
        "held_out": list(held_out) if held_out is not None else "none",
        **({"seed": seed} if isinstance(seed, int) else {}),
    }
    return adata

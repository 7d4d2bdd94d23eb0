"""Training curves from ``model.history``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .._docs import SHOW_SAVE, doc_params
from ._figure import check_axes, check_save, finish

#: Panels drawn when ``keys`` is not given (those present in the history).
DEFAULT_KEYS = ("elbo", "reconstruction_loss", "kl_local")
_SPLITS = {"train": "training", "validation": "validation"}


def split_key(name: str) -> tuple[str, str | None]:
    """``"elbo_train"`` → ``("elbo", "train")``, ``"validation_loss"`` → ``("loss",
    "validation")``, ``"kl_weight"`` → ``("kl_weight", None)``."""
    for split in _SPLITS:
        if name.endswith(f"_{split}"):
            return name[: -len(split) - 1], split
        if name.startswith(f"{split}_"):
            return name[len(split) + 1 :], split
    return name, None


@doc_params(show_save=SHOW_SAVE)
def training_history(
    model,
    keys: str | Sequence[str] | None = None,
    *,
    log_y: bool = False,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | None = None,
) -> Axes | dict[str, Axes]:
    """Training and validation curves per epoch, one panel per quantity.

    scvi-tools logs every quantity per epoch under ``model.history[f"{name}_train"]`` and
    ``[f"{name}_validation"]`` (and the total loss as ``"train_loss"`` /
    ``"validation_loss"``); a panel draws both curves of a name.

    Parameters
    ----------
    model
        A trained model (with ``history``), or the ``history`` mapping itself.
    keys
        Names to plot: a name such as ``"elbo"`` (both curves) or a full history key such as
        ``"elbo_validation"`` (that curve). Default: ``"elbo"``, ``"reconstruction_loss"``,
        ``"kl_local"`` where logged, else every name.
    log_y
        Logarithmic y axis.
    ax
        Axes to draw in, one per key.
    {show_save}

    Returns
    -------
    The Axes when ``keys`` is a string, else a dict key → Axes.

    Examples
    --------
    >>> model.train(max_epochs=100)
    >>> scgde.pl.training_history(model)  # ELBO, reconstruction and KL, train and validation
    >>> scgde.pl.training_history(model, "elbo", log_y=True)
    """
    save_path = check_save(save)
    history = model if isinstance(model, Mapping) else getattr(model, "history", None)
    if not history:
        raise ValueError("The model has no training history: train it first (`model.train()`).")
    series = {name: _as_series(name, values) for name, values in history.items()}
    names: dict[str, list[str]] = {}
    for name in series:
        names.setdefault(split_key(name)[0], []).append(name)
    if keys is None:
        panels = [k for k in DEFAULT_KEYS if k in names] or list(names)
    else:
        panels = [keys] if isinstance(keys, str) else list(keys)
        if not panels:
            raise ValueError("`keys` is empty.")
        unknown = [k for k in panels if k not in names and k not in series]
        if unknown:
            raise KeyError(f"No history for {unknown}; names: {list(names)}, keys: {list(series)}.")
    axes = check_axes(ax, len(panels), f"{len(panels)} history panel(s)")
    if axes is None:
        _, grid = plt.subplots(
            1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False, layout="constrained"
        )
        axes = list(grid[0])
    for panel, key in zip(axes, panels, strict=True):
        curves = names[key] if key in names else [key]
        for name in sorted(curves, key=lambda n: (split_key(n)[1] != "train", n)):
            values = series[name].dropna()
            split = split_key(name)[1]
            label = _SPLITS.get(split, name) if key in names else name
            panel.plot(values.index.to_numpy(), values.to_numpy(), label=label)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.set_xlabel("epoch")
        panel.set_ylabel(key)
        panel.set_title(key)
        if log_y:
            panel.set_yscale("log")
        panel.legend(frameon=False)
    finish(axes[0].figure, ax is not None, show, save_path)
    if isinstance(keys, str):
        return axes[0]
    return dict(zip(panels, axes, strict=True))


def _as_series(name: str, values) -> pd.Series:
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise ValueError(f"history[{name!r}] must have one column, got {values.shape[1]}.")
        values = values.iloc[:, 0]
    values = pd.Series(values) if not isinstance(values, pd.Series) else values
    return pd.to_numeric(values, errors="coerce").astype(np.float64)

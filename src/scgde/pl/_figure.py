"""Figure plumbing shared by the plots: new axes, ``show=`` and atomic ``save=``."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from .._io import write_atomic

#: Resolution of saved raster images.
SAVE_DPI = 150
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _non_interactive_backends() -> set[str]:
    try:  # matplotlib >= 3.9
        from matplotlib.backends import BackendFilter, backend_registry

        return {b.lower() for b in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)}
    except ImportError:  # pragma: no cover - older matplotlib
        return set(_NON_INTERACTIVE)


def interactive_backend() -> bool:
    """Whether ``plt.show()`` can display anything with the current backend."""
    return matplotlib.get_backend().lower() not in _non_interactive_backends()


def check_axes(ax, n: int, what: str) -> list[Axes] | None:
    """``ax`` as a list of ``n`` Axes (``None`` stays ``None``), or a clear error."""
    if ax is None:
        return None
    if isinstance(ax, Axes):
        axes = [ax]
    elif isinstance(ax, dict):
        axes = list(ax.values())
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(f"`ax` must be {n} matplotlib Axes for {what}, got {ax!r}.")
    return axes


def check_save(save) -> Path | None:
    """Validate ``save=`` early (before any work): ``None``/``False`` or a path with a known
    image extension."""
    if save is None or save is False:
        return None
    if not isinstance(save, str | os.PathLike):
        raise TypeError(f"`save` must be a file path, got {save!r}.")
    path = Path(save)
    extension = path.suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if extension not in supported:
        raise ValueError(
            f"Cannot tell the image format of `save={str(save)!r}`: give a file name ending in "
            f"one of {sorted('.' + e for e in supported)}."
        )
    return path


def save_figure(fig: Figure, path: Path, dpi: int = SAVE_DPI) -> None:
    """Save ``fig`` to ``path`` atomically: to a temporary file beside it, then renamed."""
    extension = path.suffix.lower().lstrip(".")
    write_atomic(path, lambda tmp: fig.savefig(tmp, format=extension, dpi=dpi, bbox_inches="tight"))


def finish(fig: Figure, ax_given: bool, show: bool | None, save: Path | None) -> None:
    """Save, then show as scanpy does: ``show=None`` shows unless the caller passed ``ax``.

    Nothing is shown with a non-interactive backend (e.g. Agg), where it would only warn.
    """
    if save is not None:
        save_figure(fig, save)
    if show is None:
        show = not ax_given
    if show and interactive_backend():
        plt.show()

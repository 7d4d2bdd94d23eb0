"""Colours of categories as scanpy draws them (palettes, legend) for the heatmap's label strip;
:func:`~scgde.pl.group_embedding` draws with ``sc.pl.embedding`` itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, is_color_like, to_hex
from matplotlib.lines import Line2D
from scanpy.plotting import palettes

#: Colour of missing values.
NA_COLOR = "lightgray"


def is_categorical(values: pd.Series) -> bool:
    """Categorical, string, object or boolean columns are drawn with a legend; numbers with a
    colour bar."""
    dtype = values.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def as_categorical(values: pd.Series) -> pd.Categorical:
    """``values`` as a categorical of strings; missing values stay missing.

    Categories keep their order for a categorical column and are sorted otherwise.
    """
    missing = values.isna().to_numpy()
    strings = np.where(missing, None, values.astype(str).to_numpy(dtype=object))
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in values.cat.categories]
    else:
        categories = sorted(set(strings[~missing]))
    return pd.Categorical(strings, categories=categories)


def default_palette(n: int) -> list[str]:
    """scanpy's default colours for ``n`` categories."""
    cycle = mpl.rcParams["axes.prop_cycle"].by_key().get("color", [])
    if len(cycle) >= n:
        colors = list(cycle[:n])
    elif n <= 20:
        colors = palettes.default_20[:n]
    elif n <= 28:
        colors = palettes.default_28[:n]
    elif n <= len(palettes.default_102):
        colors = palettes.default_102[:n]
    else:
        colors = ["grey"] * n
    return [to_hex(c) for c in colors]


def category_colors(
    categories: Sequence[str], palette: str | Colormap | Sequence | Mapping | None = None
) -> dict[str, str]:
    """Colour of every category.

    Parameters
    ----------
    categories
        All categories, in order.
    palette
        A colormap (or its name), a list of colours (cycled), or a mapping category → colour.
        Default: scanpy's default palette.
    """
    categories = [str(c) for c in categories]
    n = len(categories)
    if palette is None:
        return dict(zip(categories, default_palette(n), strict=True))
    if isinstance(palette, Mapping):
        mapping = {str(k): v for k, v in palette.items()}
        missing = [c for c in categories if c not in mapping]
        if missing:
            raise ValueError(f"`palette` has no colour for categories {missing[:10]}.")
        return {c: to_hex(mapping[c]) for c in categories}
    if isinstance(palette, str | Colormap) and not is_color_like(palette):
        cmap = mpl.colormaps[palette] if isinstance(palette, str) else palette
        points = np.linspace(0, 1, n) if n > 1 else np.array([0.0])
        return {c: to_hex(cmap(p)) for c, p in zip(categories, points, strict=True)}
    colors = [palette] if isinstance(palette, str) else list(palette)
    if not colors or not all(is_color_like(c) for c in colors):
        raise ValueError(f"`palette` must be colours, a colormap or a mapping, got {palette!r}.")
    return {c: to_hex(colors[i % len(colors)]) for i, c in enumerate(categories)}


def categorical_legend(ax: Axes, colors: Mapping[str, str], title: str | None = None) -> None:
    """Legend of categories in the right margin, scanpy style."""
    if not colors:
        return
    handles = [
        Line2D([], [], marker="o", linestyle="", color=color, markersize=7, label=name)
        for name, color in colors.items()
    ]
    ax.legend(
        handles=handles,
        frameon=False,
        title=title,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        ncol=1 + len(handles) // 15,
    )
